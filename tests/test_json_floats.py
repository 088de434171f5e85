"""Floats in metadata come back as floats of the same value on both dialects, whatever their size.

PostgreSQL keeps a JSONB number as `numeric`, which prints an integral value without a decimal
point: a float JSON wrote in exponent form (`1e+16`, any float of magnitude 1e16 or more) used to
come back as an int there. SQLite keeps the JSON text and never lost the type; the tests run on
both dialects all the same, since both must agree.
"""

from __future__ import annotations

import io
import itertools
import json
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoric.db.models import dump_json
from memoric.db.store import MemoryStore
from memoric.transfer import export_jsonl, import_jsonl

EDGE_FLOATS = [1e16, -1e16, 1.5e16, 2.0**53 + 2, 2.0**63, 1e22, 1e300, -1e300, sys.float_info.max, 5e-324,
               -5e-324, sys.float_info.min, 1e-7, 0.0, -0.0, 0.1, 1e15, 123456789.125]  # fmt: skip
floats = st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(allow_nan=False, allow_infinity=False))
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
_users = itertools.count()


def same_float(found, expected: float) -> bool:
    """A float equal to `expected`, of the same shortest repr: -0.0 is kept as 0.0 on both
    dialects (PostgreSQL's numeric has no negative zero)."""
    return type(found) is float and found == expected and repr(found) == repr(expected + 0.0)


def saved(store: MemoryStore, value: float) -> tuple[str, int]:
    """A new user holding one memory with `value` at the top, in a list and in a nested object."""
    user = f"float-user-{next(_users)}"
    metadata = {"x": value, "list": [value, 1], "nested": {"y": value}}
    return user, store.insert_memory(user_id=user, content="a float", metadata=metadata)


def assert_floats_kept(metadata: dict, value: float) -> None:
    assert same_float(metadata["x"], value), metadata["x"]
    assert same_float(metadata["list"][0], value) and type(metadata["list"][1]) is int
    assert same_float(metadata["nested"]["y"], value)


@EXAMPLES
@given(value=floats)
def test_a_saved_float_reads_back_as_the_same_float_and_matches_itself(module_store, value):
    user, memory_id = saved(module_store, value)
    assert_floats_kept(module_store.get_memory(memory_id)["metadata"], value)
    for pattern in ({"x": value}, {"list": [value]}, {"nested": {"y": value}}):
        found = module_store.get_memories(user_id=user, where_metadata=pattern)
        assert [m["id"] for m in found] == [memory_id], pattern


@pytest.fixture(scope="module")
def import_target(new_module_dsn):
    """A second database of the module, to import into."""
    store = MemoryStore(new_module_dsn())
    store.create_schema()
    yield store
    store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=floats)
def test_a_float_survives_export_and_import(module_store, import_target, value):
    user, memory_id = saved(module_store, value)
    out = io.StringIO()
    export_jsonl(module_store, out, user_id=user)
    exported = json.loads(out.getvalue().splitlines()[1])["metadata"]
    assert_floats_kept(exported, value)
    import_target.truncate()
    import_jsonl(import_target, io.StringIO(out.getvalue()))
    assert_floats_kept(import_target.get_memory(memory_id)["metadata"], value)


def test_integers_and_floats_still_match_each_other(db):
    as_float = db.insert_memory(user_id="ada", content="float", metadata={"x": 1e16})
    as_int = db.insert_memory(user_id="ada", content="int", metadata={"x": 10**16})
    assert type(db.get_memory(as_int)["metadata"]["x"]) is int
    for pattern in ({"x": 1e16}, {"x": 10**16}):
        assert sorted(m["id"] for m in db.get_memories(where_metadata=pattern)) == [as_float, as_int]
    assert db.get_memories(where_metadata={"x": 1e16 + 2}) == []


def test_rows_written_before_the_fix_still_match(db):
    """Rows holding `1e+16` as the old encoding wrote it (on PostgreSQL: an integral numeric)."""
    memory_id = db.insert_memory(user_id="ada", content="old row")
    mark = db.database.param
    old = '{"x":1e+16,"big":[1e+300]}'
    db.database.execute_sql(f"UPDATE memories SET metadata = {mark} WHERE id = {mark}", (old, memory_id))
    for pattern in ({"x": 1e16}, {"x": 10**16}, {"big": [1e300]}):
        assert [m["id"] for m in db.get_memories(where_metadata=pattern)] == [memory_id], pattern


def test_only_a_document_holding_an_exponent_is_written_the_slow_way():
    common = {"topic": "travel", "score": 0.5, "n": 10**20, "text": "1e+16 in a string"}
    assert dump_json(common) == json.dumps(common, ensure_ascii=False, separators=(",", ":"))
    assert dump_json({"x": 1e16, "s": "1e+16"}) == '{"x":10000000000000000.0,"s":"1e+16"}'
    assert dump_json([-2.5e20, 1e-7]) == "[-250000000000000000000.0,1e-07]"
