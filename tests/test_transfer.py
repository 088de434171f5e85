"""Export, import and copy keep every memory and cluster exactly, on both dialects."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re

import pytest

from memoric import Memoric
from memoric.db import transfer_queries
from memoric.db.store import MemoryStore
from memoric.db.urls import sqlite_path
from memoric.errors import MemoricError, ValidationError
from memoric.transfer import (
    FORMAT_VERSION,
    check_jsonl,
    copy_database,
    export_jsonl,
    import_jsonl,
    import_memoric,
    scratch,
)
from tests.helpers.chain import HEAD, id_counters, schema, tables
from tests.helpers.dialects import requires_postgres
from tests.helpers.transfer_data import HEADER, T0, assert_identical, dump_lines, fill, snapshot

pytestmark = pytest.mark.citus  # also on a Citus cluster


def export_text(store: MemoryStore, **kwargs) -> str:
    out = io.StringIO()
    export_jsonl(store, out, **kwargs)
    return out.getvalue()


def test_export_then_import_into_an_empty_database_is_exact(db, new_dsn):
    fill(db)
    text = export_text(db, schema_version=HEAD)
    header = json.loads(text.splitlines()[0])
    assert (header["format_version"], header["schema_version"]) == (FORMAT_VERSION, HEAD)

    target = MemoryStore(new_dsn())
    target.create_schema()
    counts = import_jsonl(target, io.StringIO(text))
    assert counts == {"memories": 2497, "clusters": 2, "skipped": 0}
    assert_identical(snapshot(target), snapshot(db))
    metadata = target.get_memory(1)["metadata"]
    assert type(metadata["float"]) is float and type(metadata["int"]) is int and metadata["big"] == 2**62
    assert target.insert_memory(user_id="new", content="after import") == 2501


def test_importing_twice_changes_nothing(db):
    fill(db)
    text = export_text(db)
    before = snapshot(db)
    assert import_jsonl(db, io.StringIO(text), batch_size=300) == {
        "memories": 0,
        "clusters": 0,
        "skipped": 2499,
    }
    assert_identical(snapshot(db), before)


def test_export_of_one_user(db):
    fill(db)
    lines = [json.loads(line) for line in export_text(db, user_id="user1").splitlines()]
    assert {r["user_id"] for r in lines[1:]} == {"user1"}
    assert sum(r["type"] == "cluster" for r in lines) == 1


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "no header"),
        ('{"type": "memory"}\n', "not a memoric export"),
        ('{"type": "header", "format": "memoric-export", "format_version": 99}\n', "newer"),
        ('{"type": "header", "format": "memoric-export", "format_version": 1}\n{oops\n', "line 2"),
        ('{"type": "header", "format": "memoric-export", "format_version": 1}\n[1]\n', "line 2"),
        ('{"type": "header", "format": "memoric-export", "format_version": 1}\n{"type": "alien"}\n', "alien"),
        (
            '{"type": "header", "format": "memoric-export", "format_version": 1}\n'
            '{"type": "memory", "id": 1, "user_id": "", "content": "x"}\n',
            "user_id",
        ),
        (
            '{"type": "header", "format": "memoric-export", "format_version": 1}\n'
            '{"type": "memory", "id": 1, "user_id": "u", "content": "x", "created_at": "yesterday"}\n',
            "created_at",
        ),
    ],
)
def test_bad_exports_are_refused_with_the_reason_and_write_nothing(db, text, named):
    with pytest.raises(ValidationError, match=named):
        import_jsonl(db, io.StringIO(text))
    assert db.count_memories() == 0


# --- a file that contradicts itself, or the target ------------------------------------------


def export_of(*records: dict, header: dict = HEADER) -> io.StringIO:
    """An export file holding `header` and then these records."""
    return io.StringIO(dump_lines(list(records), header))


def memory_line(memory_id: int, **fields) -> dict:
    return {"type": "memory", "id": memory_id, "user_id": "ada", "content": f"memory {memory_id}",
            "created_at": T0.isoformat(), **fields}  # fmt: skip


def cluster_line(cluster_id: int, **fields) -> dict:
    stamps = dict.fromkeys(("created_at", "updated_at", "last_built_at"), T0.isoformat())
    return {"type": "cluster", "cluster_id": cluster_id, "user_id": "ada", "topic": "t",
            "category": "general", "memory_ids": [1], "summary": "", **stamps,
            "memory_count": len(fields.get("memory_ids", [1])), **fields}  # fmt: skip


@pytest.mark.parametrize(
    ("records", "named"),
    [
        (
            [memory_line(1), memory_line(1, content="another memory")],
            "line 2 and line 3 are two different memories with id 1",
        ),
        (
            [memory_line(1, metadata={"a": 1}), memory_line(2), memory_line(1, metadata={"a": True})],
            "line 2 and line 4 are two different memories with id 1",
        ),
        (
            [memory_line(5), memory_line(2), memory_line(5, content="another memory")],
            "line 2 and line 4 are two different memories with id 5",
        ),
        (
            [memory_line(5), memory_line(2), memory_line(3), memory_line(2, content="another memory")],
            "line 3 and line 5 are two different memories with id 2",
        ),
        (
            [memory_line(1), cluster_line(1), cluster_line(1, summary="other")],
            "line 3 and line 4 are two different clusters with cluster_id 1",
        ),
        (
            [memory_line(1), cluster_line(1), cluster_line(2, memory_ids=[2])],
            "line 3 and line 4 are two clusters (ids 1 and 2) for the same user_id, topic and category",
        ),
    ],
)
def test_a_file_that_contradicts_itself_is_refused_naming_both_lines_and_writes_nothing(db, records, named):
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, export_of(*records))
    assert_identical(snapshot(db), [[], []])


def test_the_same_line_twice_is_one_row(db):
    counts = import_jsonl(db, export_of(memory_line(1), cluster_line(1), memory_line(1), cluster_line(1)))
    assert counts == {"memories": 1, "clusters": 1, "skipped": 2}
    assert [m["id"] for m in db.get_memories()] == [1]


def test_a_file_out_of_id_order_imports_each_row_once(db):
    """Ids that do not rise (a file put together by hand) are found again wherever they come."""
    lines = [memory_line(3), memory_line(1), memory_line(3), memory_line(2), memory_line(1)]
    counts = import_jsonl(db, export_of(*lines))
    assert counts == {"memories": 3, "clusters": 0, "skipped": 2}
    assert sorted(m["id"] for m in db.get_memories()) == [1, 2, 3]


def test_new_ids_follow_the_order_of_the_old_ones_whatever_the_order_of_the_lines(db):
    first = db.insert_memory(user_id="ada", content="already there")
    lines = [memory_line(30), memory_line(10), memory_line(20), memory_line(10)]
    import_jsonl(db, export_of(*lines), new_ids=True)
    given = {m["content"]: m["id"] for m in db.get_memories() if m["id"] != first}
    assert given == {"memory 10": first + 1, "memory 20": first + 2, "memory 30": first + 3}


# --- a cluster must list its own user's memories, once each, in order --------------------


ANOTHER_USERS = "which this export holds for another user_id"
NOWHERE = "which is neither in this export nor a memory of that user_id in the target"
NOT_RENUMBERED = "which is not in this export, so it cannot be given a new id"


@pytest.mark.parametrize(
    ("cluster", "named", "named_with_new_ids"),
    [
        (
            cluster_line(1, user_id="mallory", memory_ids=[5]),
            f"line 4: cluster 1 of user_id 'mallory' lists memory 5, {ANOTHER_USERS}",
            None,
        ),
        (
            cluster_line(1, memory_ids=[999999]),
            f"line 4: cluster 1 of user_id 'ada' lists memory 999999, {NOWHERE}",
            f"line 4: cluster 1 lists memory 999999, {NOT_RENUMBERED}",
        ),
        (
            cluster_line(1, user_id="mallory", memory_ids=[7]),
            f"line 4: cluster 1 of user_id 'mallory' lists memory 7, {NOWHERE}",
            f"line 4: cluster 1 lists memory 7, {NOT_RENUMBERED}",
        ),
        (
            cluster_line(1, memory_ids=[9, 9, 1]),
            "line 4: memory_ids must be unique and ascending, but memory_ids[1] 9 follows 9",
            None,
        ),
        (
            cluster_line(1, memory_ids=[1, 9, 5]),
            "line 4: memory_ids must be unique and ascending, but memory_ids[2] 5 follows 9",
            None,
        ),
        (
            cluster_line(1, memory_ids=[9], memory_count=42),
            "line 4: memory_count 42 is not the number of",
            None,
        ),
        (cluster_line(1, memory_ids=[], memory_count=1), "line 4: memory_count 1 is not the number of", None),
    ],
    ids=[
        "another user's",
        "nowhere",
        "another user's in the target",
        "repeated",
        "unordered",
        "count",
        "none",
    ],
)
@pytest.mark.parametrize("new_ids", [False, True], ids=["ids kept", "new ids"])
def test_a_cluster_contradicting_its_memories_is_refused_naming_the_line_and_id(
    db, cluster, named, named_with_new_ids, new_ids
):
    db.insert_memories([{"id": 7, "user_id": "demo-ada", "content": "stored", "created_at": T0}])
    before = snapshot(db)
    lines = export_of(memory_line(5, user_id="demo-ada"), memory_line(9), cluster)
    with pytest.raises(ValidationError, match=re.escape((new_ids and named_with_new_ids) or named)):
        import_jsonl(db, lines, new_ids=new_ids)
    assert_identical(snapshot(db), before)


def test_a_cluster_may_list_memories_of_its_user_from_the_file_and_the_target(db):
    db.insert_memories([{"id": 3, "user_id": "ada", "content": "stored", "created_at": T0}])
    lines = export_of(cluster_line(1, memory_ids=[1, 3, 8]), memory_line(8), memory_line(1))
    assert import_jsonl(db, lines) == {"memories": 2, "clusters": 1, "skipped": 0}
    assert transfer_queries.all_clusters(db)[0]["memory_ids"] == [1, 3, 8]


def test_a_copy_refuses_a_source_cluster_listing_another_users_memory(db, new_dsn):
    db.insert_memories([{"user_id": "demo-ada", "content": "secret"}, {"user_id": "mallory", "content": "m"}])
    db.upsert_cluster(user_id="mallory", topic="t", category="general", memory_ids=[1, 2])
    target = MemoryStore(new_dsn())
    target.create_schema()
    message = "source cluster 1: cluster 1 of user_id 'mallory' lists memory 1, which the source database"
    with pytest.raises(ValidationError, match=re.escape(message)):
        copy_database(db, target)
    assert_identical(snapshot(target), [[], []])


STORED = {"id": 1, "user_id": "ada", "content": "c", "thread_id": "t1", "namespace": "ns", "tier": "mid_term",
          "score": 70, "metadata": {"flag": 1, "ratio": 1, "deep": {"list": [1, {"x": False}]}},
          "related_threads": ["t2"], "summarized": True, "created_at": T0, "updated_at": T0}  # fmt: skip
STORED_LINE = {"type": "memory", **STORED, "created_at": T0.isoformat(), "updated_at": T0.isoformat()}


def without(key: str) -> dict:
    return {k: v for k, v in STORED_LINE.items() if k != key}


@pytest.mark.parametrize(
    ("line", "differing"),
    [
        ({**STORED_LINE, "metadata": {**STORED["metadata"], "flag": True}}, "metadata"),
        ({**STORED_LINE, "metadata": {**STORED["metadata"], "ratio": 1.0}}, "metadata"),
        (
            {**STORED_LINE, "metadata": {**STORED["metadata"], "deep": {"list": [1.0, {"x": False}]}}},
            "metadata",
        ),
        ({**STORED_LINE, "metadata": {**STORED["metadata"], "deep": {"list": [1, {"x": 0}]}}}, "metadata"),
        (without("metadata"), "metadata"),
        (without("tier"), "tier"),
        (without("score"), "score"),
        (without("thread_id"), "thread_id"),
        (without("namespace"), "namespace"),
        (without("related_threads"), "related_threads"),
        (without("summarized"), "summarized"),
        ({**STORED_LINE, "updated_at": (T0 - dt.timedelta(microseconds=1)).isoformat()}, "updated_at"),
        ({**STORED_LINE, "user_id": "bob", "score": 71}, "user_id, score"),
    ],
)
def test_a_line_differing_from_the_target_in_type_or_by_a_default_is_refused(db, line, differing):
    db.insert_memories([STORED])
    before = snapshot(db)
    message = f"line 2: memory id 1 is already in the target with other data (differing: {differing})"
    with pytest.raises(ValidationError, match=re.escape(message)):
        import_jsonl(db, export_of(line, memory_line(2)))
    assert_identical(snapshot(db), before)


@pytest.mark.parametrize(
    "line",
    [
        STORED_LINE,
        {**STORED_LINE, "created_at": T0.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()},
        without("created_at") | {"updated_at": T0.isoformat()},
        {k: v for k, v in STORED_LINE.items() if k not in ("created_at", "updated_at")},
    ],
    ids=["same", "same instant elsewhere", "created_at left out", "timestamps left out"],
)
def test_a_line_saying_what_the_target_holds_is_skipped(db, line):
    db.insert_memories([STORED])
    before = snapshot(db)
    assert import_jsonl(db, export_of(line)) == {"memories": 0, "clusters": 0, "skipped": 1}
    assert_identical(snapshot(db), before)


def test_a_cluster_whose_key_the_target_holds_under_another_id_is_refused(db):
    db.insert_memories([{"id": 1, "user_id": "ada", "content": "x"}])
    db.upsert_cluster(user_id="ada", topic="t", category="general", memory_ids=[1])
    db.upsert_cluster(user_id="ada", topic="u", category="general", memory_ids=[1])
    before = snapshot(db)
    taken = export_of(cluster_line(7))
    with pytest.raises(
        ValidationError, match=r"line 2: cluster 7 is for user_id, topic and category \['ada', 't'"
    ):
        import_jsonl(db, taken)
    other_data = export_of(cluster_line(2, topic="u", summary="not the same"))
    with pytest.raises(ValidationError, match=r"line 2: cluster id 2 is already in the target .*summary"):
        import_jsonl(db, other_data)
    assert_identical(snapshot(db), before)


LARGEST = 2**63 - 1


@pytest.mark.parametrize(
    ("records", "named"),
    [
        (
            [memory_line(1, user_id="bob"), memory_line(LARGEST)],
            "line 2: memory id 1 is already in the target with other data",
        ),
        (
            [cluster_line(1, summary="another summary"), memory_line(LARGEST)],
            "line 2: cluster id 1 is already in the target with other data",
        ),
        (
            [memory_line(LARGEST), cluster_line(LARGEST, memory_ids=[LARGEST])],
            f"line 3: cluster {LARGEST} is for user_id, topic and category ['ada', 't', 'general'], "
            "which the target holds as cluster 1",
        ),
        (
            [
                memory_line(LARGEST, user_id="bob"),
                cluster_line(LARGEST, user_id="bob", memory_ids=[1, LARGEST], memory_count=2),
            ],
            f"line 3: cluster {LARGEST} of user_id 'bob' lists memory 1, which is neither in this export "
            "nor a memory of that user_id in the target",
        ),
    ],
    ids=["memory differs", "cluster differs", "cluster key taken", "another user's memory"],
)
def test_an_import_refused_for_what_the_target_holds_moves_no_id_counter(db, records, named):
    db.insert_memories([{"user_id": "ada", "content": "memory 1", "created_at": T0}])
    db.upsert_cluster(user_id="ada", topic="t", category="general", memory_ids=[1])
    counters, built, before = id_counters(db), schema(db), snapshot(db)
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, export_of(*records))
    assert (id_counters(db), schema(db)) == (counters, built)
    assert_identical(snapshot(db), before)
    assert db.insert_memory(user_id="ada", content="saved after") == 2
    assert db.upsert_cluster(user_id="ada", topic="u", category="general", memory_ids=[2]) == 2


def test_an_import_refused_for_what_an_empty_database_lacks_leaves_it_unbuilt(new_dsn):
    dsn = new_dsn()
    memoric = Memoric(dsn)
    stranger = export_of(memory_line(LARGEST), cluster_line(3, memory_ids=[1, LARGEST], memory_count=2))
    plan = check_jsonl(memoric.store, stranger)
    with pytest.raises(ValidationError, match="line 3: cluster 3 of user_id 'ada' lists memory 1, which is"):
        import_memoric(memoric, plan)
    if memoric.store.is_sqlite:
        assert not os.path.exists(sqlite_path(dsn)), "a SQLite file not there stays away"
    else:
        assert (tables(memoric.store), id_counters(memoric.store)) == (set(), {})
    memoric.close()


@pytest.mark.parametrize("version", [True, False, 0, -5, 1.0, "1", None, 2])
def test_only_a_positive_integer_format_version_this_memoric_reads_is_accepted(db, version):
    with pytest.raises(ValidationError, match="export format version"):
        import_jsonl(db, export_of(memory_line(1), header={**HEADER, "format_version": version}))
    assert db.count_memories() == 0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '{"type": "memory", "id": 1, "user_id": "a", "content": "x", "metadata": {"n": 1'
            + "0" * 5000
            + "}}",
            "line 3 is not valid JSON here: Exceeds the limit (4300 digits)",
        ),
        (
            '{"type": "memory", "id": 1, "user_id": "a", "content": "x", "metadata": {"n": '
            + "[" * 5000
            + "]" * 5000
            + "}}",
            "line 3 is not valid JSON here: it is nested too deeply",
        ),
        (
            '{"type": "memory", "id": 0, "user_id": "a", "content": "x"}',
            "line 3: id must be an int from 1 to 9223372036854775807, got 0",
        ),
        (
            '{"type": "memory", "id": 9223372036854775808, "user_id": "a", "content": "x"}',
            "line 3: id must be an int from 1 to 9223372036854775807, got 9223372036854775808",
        ),
        ('{"type": "memory", "user_id": "a", "content": "x"}', "line 3: id must be an int, got None"),
        ('{"type": "cluster", "cluster_id": true, "user_id": "a"}', "line 3: cluster_id must be an int"),
    ],
    ids=["huge int", "deep nesting", "id 0", "id beyond 64 bits", "no id", "cluster_id true"],
)
def test_a_line_json_or_memoric_cannot_take_is_a_validation_error_naming_it(db, text, named):
    lines = export_of(memory_line(1)).getvalue() + text + "\n"
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, io.StringIO(lines))
    assert db.count_memories() == 0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", "content": "y"}',
            "line 3 gives the key 'content' twice in one object",
        ),
        (
            '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", "metadata": {"a": 1, "a": 2}}',
            "line 3 gives the key 'a' twice in one object",
        ),
        (
            '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", '
            '"metadata": {"l": [1, {"b": {"c": true, "d": 0, "c": true}}]}}',
            "line 3 gives the key 'c' twice in one object",
        ),
        (
            '{"type": "memory", "id": 1, "id": 1, "user_id": "ada", "content": "x"}',
            "line 3 gives the key 'id' twice in one object",
        ),
        (
            '{"type": "cluster", "cluster_id": 1, "user_id": "ada", "topic": "t", "category": "c", '
            '"memory_ids": [], "memory_count": 0, "summary": "", "summary": "other"}',
            "line 3 gives the key 'summary' twice in one object",
        ),
        (
            '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", '
            '"metadata": {"\\u0061": 1, "a": 2}}',
            "line 3 gives the key 'a' twice in one object",
        ),
    ],
    ids=["content", "metadata", "deep in a list", "same value twice", "cluster", "escaped key"],
)
def test_a_line_giving_a_key_twice_is_refused_naming_the_line_and_the_key(db, text, named):
    lines = export_of(memory_line(5)).getvalue() + text + "\n"
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, io.StringIO(lines))
    assert_identical(snapshot(db), [[], []])


def test_a_header_giving_a_key_twice_is_refused(db):
    header = '{"type": "header", "format": "memoric-export", "format_version": 2, "format_version": 1}\n'
    with pytest.raises(ValidationError, match="line 1 gives the key 'format_version' twice in one object"):
        import_jsonl(db, io.StringIO(header + json.dumps(memory_line(1)) + "\n"))
    assert db.count_memories() == 0


PRECISE = ["2026-11-29T23:06:03.1098409+00:00", "2026-11-29T23:06:03,1234561Z",
           "20261129T230603.1234560001+02:00"]  # fmt: skip


@pytest.mark.parametrize("stamp", PRECISE)
@pytest.mark.parametrize(
    ("kind", "field"),
    [("memory", "created_at"), ("memory", "updated_at"), ("cluster", "created_at"),
     ("cluster", "updated_at"), ("cluster", "last_built_at")],
)  # fmt: skip
def test_a_timestamp_more_precise_than_a_microsecond_is_refused_naming_the_line_and_field(
    db, kind, field, stamp
):
    line = memory_line(2, **{field: stamp}) if kind == "memory" else cluster_line(1, **{field: stamp})
    named = f"line 3: {field} {stamp!r} is more precise than a microsecond"
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, export_of(memory_line(1), line))
    assert_identical(snapshot(db), [[], []])


def test_a_timestamp_with_zeros_past_the_microsecond_is_the_instant_it_says(db):
    import_jsonl(db, export_of(memory_line(1, created_at="2026-11-29T23:06:03.1098400000+00:00")))
    assert db.get_memory(1)["created_at"] == dt.datetime(2026, 11, 29, 23, 6, 3, 109840, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "stamp",
    ["2026-11-29T23:07:09.111146+00:00:00.5", "2026-11-29T23:07:09+01:30:15", "2026-11-29T23:07:09-000001"],
)
def test_a_timestamp_whose_utc_offset_has_seconds_is_refused(db, stamp):
    """Python 3.11 read `+00:00:00.5` as UTC, dropping half a second: the instant changed silently."""
    named = f"line 2: created_at {stamp!r} has a UTC offset with seconds"
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, export_of(memory_line(1, created_at=stamp)))
    assert_identical(snapshot(db), [[], []])


# --- interrupted imports, other users, new ids ----------------------------------------------


class Interrupted(Exception):
    """Stands for anything that stops an import between two batches."""


def stopping_after(batches: int):
    """A progress callback that interrupts the import after `batches` batches."""
    done: list[int] = []

    def progress(rows: int) -> None:
        done.append(rows)
        if len(done) == batches:
            raise Interrupted

    return progress


@pytest.fixture
def exported(new_dsn) -> tuple[MemoryStore, str]:
    """A filled database and its export."""
    source = MemoryStore(new_dsn())
    source.create_schema()
    fill(source)
    return source, export_text(source)


def test_an_interrupted_import_completes_when_run_again(db, exported):
    source, text = exported
    with pytest.raises(Interrupted):
        import_jsonl(db, io.StringIO(text), batch_size=500, progress=stopping_after(2))
    memories, clusters = db.count_memories(), len(transfer_queries.all_clusters(db))
    assert 1000 <= memories <= 1001  # two batches (and the highest memory, where it holds the ids)
    counts = import_jsonl(db, io.StringIO(text), batch_size=500)
    assert counts == {"memories": 2497 - memories, "clusters": 2 - clusters, "skipped": memories + clusters}
    assert_identical(snapshot(db), snapshot(source))


def test_an_import_with_new_ids_that_stops_takes_back_what_it_wrote(db, exported):
    _, text = exported
    db.insert_memories([{"user_id": "zoe", "content": f"zoe {i}"} for i in range(10)])
    before = snapshot(db)
    with pytest.raises(Interrupted):
        import_jsonl(db, io.StringIO(text), new_ids=True, batch_size=500, progress=stopping_after(3))
    assert_identical(snapshot(db), before)
    assert import_jsonl(db, io.StringIO(text), new_ids=True) == {
        "memories": 2497,
        "clusters": 2,
        "skipped": 0,
    }
    assert db.count_memories() == 10 + 2497


def test_an_export_is_refused_where_its_ids_hold_other_users_memories_and_new_ids_add_it(db, new_dsn):
    source = MemoryStore(new_dsn())
    source.create_schema()
    fill(source)
    text = export_text(source)
    db.insert_memories([{"user_id": "zoe", "content": f"zoe {i}", "metadata": {"i": i}} for i in range(50)])
    db.upsert_cluster(user_id="zoe", topic="a", category="general", memory_ids=[1, 2])
    before = snapshot(db)
    with pytest.raises(ValidationError, match="line 2: memory id 1 is already in the target with other data"):
        import_jsonl(db, io.StringIO(text))
    assert_identical(snapshot(db), before)

    counts = import_jsonl(db, io.StringIO(text), new_ids=True, batch_size=700)
    assert counts == {"memories": 2497, "clusters": 2, "skipped": 0}
    memories, clusters = snapshot(db)
    assert_identical([m for m in memories if m["user_id"] == "zoe"], before[0])
    assert_identical([c for c in clusters if c["user_id"] == "zoe"], before[1])
    originals, added = (
        list(transfer_queries.iter_memories(source)),
        [m for m in memories if m["user_id"] != "zoe"],
    )
    assert_identical([{**m, "id": None} for m in added], [{**m, "id": None} for m in originals])
    new_id = {old["id"]: new["id"] for old, new in zip(originals, added, strict=True)}
    first = min(new_id.values())  # above every id used (the refused import may have reserved some)
    assert first > 50 and sorted(new_id.values()) == list(range(first, first + 2497))
    for old in transfer_queries.all_clusters(source):
        [new] = [c for c in clusters if (c["user_id"], c["topic"]) == (old["user_id"], old["topic"])]
        assert new["cluster_id"] > 1
        assert_identical(
            {**new, "cluster_id": None},
            {**old, "cluster_id": None, "memory_ids": [new_id[i] for i in old["memory_ids"]]},
        )
    assert db.insert_memory(user_id="zoe", content="after") == first + 2497


def test_new_ids_refuse_a_cluster_of_memories_the_export_lacks_or_a_key_the_target_holds(db):
    with pytest.raises(
        ValidationError, match="line 3: cluster 1 lists memory 2, which is not in this export"
    ):
        import_jsonl(db, export_of(memory_line(1), cluster_line(1, memory_ids=[1, 2])), new_ids=True)
    db.upsert_cluster(user_id="ada", topic="t", category="general", memory_ids=[])
    before = snapshot(db)
    with pytest.raises(ValidationError, match="line 3: cluster 1 is for user_id, topic and category"):
        import_jsonl(db, export_of(memory_line(1), cluster_line(1)), new_ids=True)
    assert_identical(snapshot(db), before)


@requires_postgres
def test_copying_sqlite_to_postgresql_and_back_is_exact_and_a_second_time_changes_nothing(
    tmp_path, new_postgres_url
):
    origin = MemoryStore(f"sqlite:///{tmp_path / 'origin.db'}")
    middle = MemoryStore(new_postgres_url())
    back = MemoryStore(f"sqlite:///{tmp_path / 'back.db'}")
    for store in (origin, middle, back):
        store.create_schema()
    fill(origin)
    progress = []
    assert copy_database(origin, middle, progress=progress.append)["memories"] == 2497
    assert sum(progress) == 2499
    copy_database(middle, back)
    assert_identical(snapshot(middle), snapshot(origin))
    assert_identical(snapshot(back), snapshot(origin))
    nothing = {"memories": 0, "clusters": 0, "skipped": 2499}
    assert copy_database(origin, middle) == copy_database(middle, back) == nothing
    assert_identical(snapshot(middle), snapshot(origin))
    assert_identical(snapshot(back), snapshot(origin))
    assert type(middle.get_memory(1)["metadata"]["huge_float"]) is float
    assert middle.insert_memory(user_id="u", content="next id") == 2501


def test_floats_of_any_size_stay_floats_on_every_write_path(db):
    metadata = {"f": 1e16, "g": -2.5e300, "h": [123456789012345678.0, 1.5e-300], "text": "1e+16"}
    db.insert_memory(user_id="ada", content="one", metadata=metadata)
    db.insert_memories([{"user_id": "ada", "content": "many", "metadata": metadata}])
    import_jsonl(db, export_of(memory_line(50, metadata=metadata)))
    stored = [memory["metadata"] for memory in db.get_memories(limit=None)]
    assert_identical(stored, [metadata] * 3)
    assert db.count_memories(where_metadata={"f": 1e16}) == 3


@pytest.mark.parametrize("encode", [False, True], ids=["text lines", "UTF-8 lines"])
def test_an_export_given_as_a_one_pass_iterator_is_imported_whole(db, exported, encode):
    source, text = exported
    lines = (line.encode() if encode else line for line in text.splitlines())
    assert import_jsonl(db, lines)["memories"] == 2497
    assert_identical(snapshot(db), snapshot(source))
    with pytest.raises(ValidationError, match="line 2 and line 2501 are two different memories with id 1"):
        import_jsonl(db, iter([*text.splitlines(), json.dumps(memory_line(1))]))


def test_no_room_for_what_the_check_remembers_is_a_memoric_error_writing_nothing(db, exported, monkeypatch):
    """The check keeps each row's line, digest and user in a temporary SQLite file; one that
    cannot grow (here: a page limit, as a full disk) stops the import before it writes a row."""
    _, text = exported
    monkeypatch.setattr(scratch, "PRAGMAS", (*scratch.PRAGMAS, "max_page_count = 6"))
    with pytest.raises(MemoricError, match="could not keep the check's bookkeeping in a temporary file"):
        import_jsonl(db, io.StringIO(text))
    assert db.count_memories() == 0


def test_lines_with_no_room_to_keep_them_are_a_memoric_error_writing_nothing(
    db, exported, monkeypatch, tmp_path
):
    """Lines that can be read only once are kept in a temporary file for the second pass; a
    temporary directory that cannot take them stops the import before it writes a row."""
    _, text = exported
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    with pytest.raises(MemoricError, match="could not keep a copy of the export in a temporary file"):
        import_jsonl(db, iter(text.splitlines()))
    assert db.count_memories() == 0
