"""Columns read back come out as their fields' Python values, converted a column at a time.

PostgreSQL's driver already gives JSON documents, aware datetimes and booleans; SQLite gives
text and integers. `python_column` keeps a column the driver already converted as it is, and
converts every value of any other column, so a column mixing both kinds is never half-converted.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memoric.db.jsoncodec import dump_json
from memoric.db.models import UTC, python_column
from memoric.db.store import MemoryStore

TOKYO = dt.timezone(dt.timedelta(hours=9))
INSTANT = dt.datetime(2026, 6, 1, 23, 30, tzinfo=UTC)


@pytest.fixture
def fields(tmp_path):
    store = MemoryStore(f"sqlite:///{tmp_path / 'fields.db'}")
    yield store.Memory.metadata, store.Memory.created_at, store.Memory.summarized
    store.close()


def test_a_column_the_driver_already_converted_is_kept_as_it_is(fields):
    metadata, created_at, summarized = fields
    documents = ({"a": 1}, [], None, 7)
    instants = (INSTANT, INSTANT + dt.timedelta(seconds=1))

    assert python_column(metadata, documents) is documents
    assert python_column(created_at, instants) is instants
    assert python_column(summarized, (True, False, None)) == (True, False, None)


def test_a_json_column_with_some_text_parses_the_text(fields):
    metadata, _, _ = fields

    assert list(python_column(metadata, ({"a": 1}, '{"b":[2]}', "[]"))) == [{"a": 1}, {"b": [2]}, []]


def test_a_timestamp_column_not_all_in_utc_comes_out_all_in_utc(fields):
    _, created_at, _ = fields
    column = (INSTANT, INSTANT.astimezone(TOKYO), INSTANT.replace(tzinfo=None), "2026-06-01 23:30:00.000000")

    converted = list(python_column(created_at, column))

    assert converted == [INSTANT] * 4
    assert {value.tzinfo for value in converted} == {UTC}


class UnhashableZone(dt.tzinfo):
    """A zero-offset zone that cannot be hashed (as psycopg2's FixedOffsetTimezone, which an
    application's own timestamp caster may return)."""

    __hash__ = None

    def utcoffset(self, when):
        return dt.timedelta(0)


ZERO_OFFSET_ZONES = [dt.timezone(dt.timedelta(0), "Z"), UnhashableZone()]


@pytest.mark.parametrize("zone", ZERO_OFFSET_ZONES, ids=["named", "unhashable"])
def test_a_timestamp_column_in_another_zero_offset_zone_comes_out_in_utc_itself(fields, zone):
    _, created_at, _ = fields

    converted = list(python_column(created_at, (INSTANT.replace(tzinfo=zone),) * 2))

    assert converted == [INSTANT] * 2
    assert {id(value.tzinfo) for value in converted} == {id(UTC)}


def test_a_flag_column_of_integers_comes_out_as_booleans(fields):
    _, _, summarized = fields

    assert [type(flag) for flag in python_column(summarized, (True, 0, 1))] == [bool, bool, bool]
    assert list(python_column(summarized, (True, 0, 1))) == [True, False, True]


def test_a_page_of_memories_reads_back_as_python_values_on_both_dialects(db):
    db.insert_memories(
        [
            {"user_id": "ada", "content": f"m{i}", "metadata": {"i": i}, "summarized": i % 2 == 0}
            for i in range(5)
        ]
    )

    page = db.get_memories(user_id="ada", limit=10)

    assert sorted(memory["metadata"]["i"] for memory in page) == list(range(5))
    assert {type(memory["summarized"]) for memory in page} == {bool}
    assert {memory["created_at"].tzinfo for memory in page} == {UTC}
    assert {memory["related_threads"] == [] for memory in page} == {True}


@pytest.mark.parametrize("document", ['{"a": 1}', "x", "[1, 2]", "null"])
def test_a_json_string_written_outside_memoric_reads_back_as_that_string_on_both_dialects(db, document):
    """A metadata document that is a JSON string holding JSON text is that text on both dialects:
    PostgreSQL's driver has parsed the JSONB once already, so it is not parsed a second time."""
    memory_id = db.insert_memory(user_id="ada", content="x")
    db.Memory.update(metadata=document).where(db.Memory.id == memory_id).execute()  # a JSON string

    assert db.get_memory(memory_id)["metadata"] == document
    assert [memory["metadata"] for memory in db.get_memories(user_id="ada")] == [document]


# Text a SQLite column may hold: memoric's own documents and timestamps, and what a row written
# outside memoric may hold instead (whitespace, two documents, a truncated one, another ISO form).
JSON_TEXT = st.one_of(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=12,
    ).map(dump_json),
    st.sampled_from(["{}", "[]", " {}", "{} ", '{"a":1}x', '{"a":', "", "nul", "1 2", "[1,]", '"\\ud800"']),
    st.text(max_size=12),
)
TIME_TEXT = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda when: when.isoformat(" ", "microseconds")[:26]),
    st.datetimes().map(dt.datetime.isoformat),
    st.sampled_from(
        ["2026-06-01 23:30:00.00000Z", "2026-06-01T23:30:00.000+09", "2026-13-01 00:00:00.000000"]
    ),
    st.text(max_size=26),
)


def read_each(field, column) -> list:
    """The column read value by value, each error kept as its message."""
    found = []
    for value in column:
        try:
            found.append(field.python_value(value))
        except Exception as exc:
            found.append(("error", str(exc)))
    return found


def read_whole(field, column) -> list:
    try:
        return list(python_column(field, tuple(column)))
    except Exception as exc:
        return [("error", str(exc))]


def read_alike(field, column) -> list:
    """The column read at once, asserted equal to its values read one by one (or to the first
    error of those)."""
    each = read_each(field, column)
    first_error = next((value for value in each if isinstance(value, tuple)), None)
    whole = read_whole(field, column)
    assert whole == (each if first_error is None else [first_error])
    return whole


def a_field(tmp_path_factory, name: str):
    return getattr(MemoryStore(f"sqlite:///{tmp_path_factory.mktemp(name) / 'x.db'}").Memory, name)


@given(column=st.lists(st.none() | JSON_TEXT, min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_a_json_column_read_at_once_equals_its_values_read_one_by_one(tmp_path_factory, column):
    read_alike(a_field(tmp_path_factory, "metadata"), column)


@given(column=st.lists(st.none() | TIME_TEXT, min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_a_timestamp_column_read_at_once_equals_its_values_read_one_by_one(tmp_path_factory, column):
    whole = read_alike(a_field(tmp_path_factory, "created_at"), column)
    assert all(value.tzinfo is UTC for value in whole if isinstance(value, dt.datetime))
