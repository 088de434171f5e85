"""Bulk inserts: every value survives the fast path (SQLite executemany, PostgreSQL COPY) unchanged.

`insert_memories` skips the per-value work `insert_memory` does: it checks JSON in one quick walk,
formats timestamps itself and, on PostgreSQL, streams rows through COPY's text format, which has
its own escapes. These tests feed it the values that could break each shortcut and read them back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import itertools
import pickle
import re

import pytest

from memoric.db import postings
from memoric.errors import MemoricError, PartlyInserted, ValidationError
from tests.helpers.sqlite_tables import sqlite_without_autoincrement

AWKWARD_TEXTS = [
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",  # COPY's NULL marker, as a literal text
    "\\.",  # COPY's old end-of-data marker
    "ends with a backslash\\",
    "quotes ' and \"",
    "unicode: 日本語 — emoji 🧠",
    "\u2028line separator\u2029",
    " leading and trailing spaces ",
]
WHEN = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)


class Priority(enum.IntEnum):
    HIGH = 90


def awkward_row(index: int, text: str) -> dict:
    return {
        "user_id": f"user {text}",
        "thread_id": f"thread {text}",
        "namespace": text,
        "content": f"content {text}",
        "metadata": {text: text, "nested": {"list": [text, 1, 2.5, True, None]}, "n": index},
        "related_threads": [text],
        "created_at": WHEN + dt.timedelta(microseconds=index),
    }


def without_ids(memories: list[dict]) -> list[dict]:
    return [{key: value for key, value in memory.items() if key != "id"} for memory in memories]


def test_awkward_texts_come_back_unchanged_from_a_bulk_insert(db):
    rows = [awkward_row(index, text) for index, text in enumerate(AWKWARD_TEXTS)]
    assert db.insert_memories(rows) == len(rows)
    for index, text in enumerate(AWKWARD_TEXTS):
        (memory,) = db.get_memories(user_id=f"user {text}")
        assert memory["thread_id"] == f"thread {text}"
        assert memory["namespace"] == text
        assert memory["content"] == f"content {text}"
        assert memory["metadata"] == rows[index]["metadata"]
        assert memory["related_threads"] == [text]
        assert memory["created_at"] == memory["updated_at"] == rows[index]["created_at"]


def test_bulk_and_single_inserts_store_the_same_memory(db):
    row = awkward_row(0, "\\N\t\n")
    single_id = db.insert_memory(**row)
    db.insert_memories([row])
    stored = {memory["id"]: memory for memory in db.get_memories(user_id=row["user_id"])}
    single = stored.pop(single_id)
    assert without_ids(list(stored.values())) == without_ids([single])


def test_nulls_booleans_and_int_subclasses_in_a_bulk_insert(db):
    rows = [
        {"user_id": "ada", "content": "no thread", "score": Priority.HIGH, "summarized": True},
        {"user_id": "ada", "content": "a thread", "thread_id": "t", "score": 0},
    ]
    db.insert_memories(rows)
    memories = {m["content"]: m for m in db.get_memories(user_id="ada")}
    assert memories["no thread"]["thread_id"] is None
    assert memories["no thread"]["namespace"] is None
    assert memories["no thread"]["score"] == 90
    assert memories["no thread"]["summarized"] is True
    assert memories["a thread"]["summarized"] is False


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC),  # a year of three digits
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),  # no microseconds
        dt.datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        dt.datetime(2026, 6, 1, 12, 0, 0, 999999),  # naive: taken as UTC
    ],
)
def test_timestamps_round_trip_through_a_bulk_insert(db, moment):
    db.insert_memories([{"user_id": "ada", "content": "x", "created_at": moment}])
    (memory,) = db.get_memories(user_id="ada")
    expected = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    assert memory["created_at"] == expected
    assert memory["created_at"].tzinfo is dt.UTC


def test_a_bad_row_in_a_bulk_insert_writes_nothing(db):
    rows = [awkward_row(n, "fine") for n in range(5)]
    rows[3]["metadata"] = {"deep": {"x": float("nan")}}
    with pytest.raises(ValidationError, match=r"rows\[3\]: metadata\['deep'\]\['x'\] holds nan"):
        db.insert_memories(rows)
    assert db.count_memories() == 0


def test_rows_from_a_generator_go_in_as_a_list_does_and_a_bad_one_writes_nothing(db):
    """Every row of an iterator is checked before the first batch is written."""
    listed = [awkward_row(n, f"row {n}") for n in range(25)]
    assert db.insert_memories(iter(listed), batch_size=4) == 25
    stored = [db.get_memories(user_id=row["user_id"], limit=None) for row in listed]
    assert [m["content"] for found in stored for m in found] == [row["content"] for row in listed]

    def late_refusal():
        yield from (awkward_row(n, f"more {n}") for n in range(10))
        yield {**awkward_row(10, "bad"), "score": 101}

    with pytest.raises(ValidationError, match=r"rows\[10\]: score must be from 0 to 100"):
        db.insert_memories(late_refusal(), batch_size=4)
    assert db.count_memories() == 25


def test_explicit_ids_from_a_generator_move_the_counter_past_the_highest(db):
    rows = ({**awkward_row(n, f"id {n}"), "id": 1000 + n * 7} for n in range(5))
    assert db.insert_memories(rows) == 5
    assert db.insert_memory(user_id="ada", content="after") > 1000 + 4 * 7


# --- many batches: the checked rows wait in a temporary file -------------------------------


def test_explicit_ids_over_many_batches_keep_their_ids_wherever_the_highest_comes(db):
    """The highest id may sit in any batch; every row keeps its id and the counter passes it."""
    ids = [5, 9, 2, 70, 11, 3, 8, 40]
    rows = ({**awkward_row(n, f"id {n}"), "id": memory_id} for n, memory_id in enumerate(ids))
    assert db.insert_memories(rows, batch_size=3) == len(ids)
    stored = {m["id"]: m["content"] for m in db.get_memories(limit=None)}
    assert stored == {memory_id: f"content id {n}" for n, memory_id in enumerate(ids)}
    assert db.insert_memory(user_id="ada", content="after") > max(ids)


@pytest.mark.parametrize("batch_size", [1, 3, 5000])
def test_an_id_given_twice_in_one_call_is_refused_before_any_batch_is_written(db, batch_size):
    """The second row of an id failed its batch after the first was committed, with the driver's
    own words (each dialect's), and the retry the error advised failed again the same way."""
    ids = [5, 9, 2, 70, 9, 3, 70]
    rows = ({**awkward_row(n, f"id {n}"), "id": memory_id} for n, memory_id in enumerate(ids))
    named = "rows[4]: id 9 is given twice in one call (rows[1] too)"
    with pytest.raises(ValidationError, match=re.escape(named)):
        db.insert_memories(rows, batch_size=batch_size)
    assert db.count_memories() == 0
    assert db.insert_memory(user_id="ada", content="after") == 1, "no id counter moved"


def test_values_pickle_cannot_take_go_in_over_many_batches(db):
    """A value of a class defined inside a function stays in memory instead of the file."""

    class LocalInt(int):
        pass

    rows = [{**awkward_row(n, f"local {n}"), "metadata": {"n": LocalInt(n)}} for n in range(7)]
    assert db.insert_memories(iter(rows), batch_size=2) == 7
    stored = sorted(m["metadata"]["n"] for m in db.get_memories(limit=None))
    assert stored == list(range(7))


def test_no_room_to_set_rows_aside_is_a_memoric_error_and_writes_nothing(db, monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    rows = (awkward_row(n, f"row {n}") for n in range(9))
    with pytest.raises(MemoricError, match="could not set checked rows aside in a temporary file"):
        db.insert_memories(rows, batch_size=4)
    assert db.count_memories() == 0


def test_a_memory_saved_with_an_id_moves_the_counter_past_it(db):
    """A later save never draws the id `insert_memory` was given (as after `insert_memories`)."""
    first = db.insert_memory(user_id="ada", content="first")
    given = db.insert_memory(id=first + 2, user_id="ada", content="given its id")
    later = [db.insert_memory(user_id="bob", content=f"later {n}") for n in range(3)]
    assert given == first + 2
    assert min(later) > given
    assert len({m["id"] for m in db.get_memories(limit=None)}) == 5


# --- a batch failing after others were committed ---------------------------------------------


def test_a_batch_failing_after_others_names_the_rows_saved_and_a_retry_of_the_rest_completes(db):
    """Batches are committed one by one: the error said only what failed, and a caller retrying
    the same rows saved the committed ones twice."""
    taken = db.insert_memory(user_id="ada", content="holds the id")
    rows = [{"user_id": "bob", "content": f"row {n}"} for n in range(25)]
    rows[22]["id"] = taken  # the third batch fails
    with pytest.raises(
        PartlyInserted, match=r"rows\[0:20\], the first 20 rows given, had been saved"
    ) as raised:
        db.insert_memories(rows, batch_size=10)
    assert raised.value.inserted == 20
    assert "insert_memories failed on" in str(raised.value)
    assert contents_of(db, "bob") == [f"row {n}" for n in range(20)]
    del rows[22]["id"]
    assert db.insert_memories(rows[raised.value.inserted :], batch_size=10) == 5
    assert contents_of(db, "bob") == [f"row {n}" for n in range(25)]


def test_where_the_highest_id_went_first_the_rows_saved_name_it(tmp_path):
    """SQLite tables without an id counter take the row of the highest explicit id in the first
    batch: the rows saved are then the first ones and that row."""
    store = sqlite_without_autoincrement(tmp_path / "no-counter.db")
    taken = store.insert_memory(user_id="ada", content="holds the id")
    rows = [{"user_id": "bob", "content": f"row {n}"} for n in range(25)]
    rows[24]["id"] = 10**6
    rows[21]["id"] = taken
    with pytest.raises(
        PartlyInserted, match=r"rows\[0:20\] and rows\[24\], 21 rows, had been saved"
    ) as raised:
        store.insert_memories(rows, batch_size=10)
    assert raised.value.inserted == 21
    assert contents_of(store, "bob") == [f"row {n}" for n in (*range(20), 24)]
    assert pickle.loads(pickle.dumps(raised.value)).args == raised.value.args
    store.close()


def contents_of(store, user_id: str) -> list[str]:
    return sorted(
        (m["content"] for m in store.get_memories(user_id=user_id, limit=None)), key=lambda c: int(c[4:])
    )


@contextlib.contextmanager
def at_commit_of_boom(db, dialect, action: str):
    """A PostgreSQL trigger running `action` (PL/pgSQL) at the COMMIT of a transaction that saved
    a memory whose content is 'boom'; 30 rows for three batches of 10, the 26th 'boom'."""
    if dialect == "sqlite":
        pytest.skip("an action deferred to COMMIT: PostgreSQL's constraint triggers")
    db.database.execute_sql(
        "CREATE FUNCTION at_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.content = 'boom' THEN {action}; END IF; RETURN NEW; END $$"
    )
    db.database.execute_sql(
        "CREATE CONSTRAINT TRIGGER at_boom AFTER INSERT ON memories DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION at_boom()"
    )
    rows = [{"user_id": "bob", "content": f"row {n}"} for n in range(30)]
    rows[25]["content"] = "boom"
    try:
        yield rows
    finally:
        db.database.execute_sql("DROP TRIGGER at_boom ON memories")
        db.database.execute_sql("DROP FUNCTION at_boom()")


def test_a_batch_whose_commit_fails_is_not_counted_as_saved(db, dialect):
    """The count grew inside the batch's transaction, before its COMMIT: a COMMIT that failed
    (here a deferred check) was reported saved, and a retry of the rows after it lost them."""
    with at_commit_of_boom(db, dialect, "RAISE EXCEPTION 'boom refused at commit'") as rows:
        with pytest.raises(PartlyInserted, match=r"rows\[0:20\], the first 20 rows given") as raised:
            db.insert_memories(rows, batch_size=10)
        assert raised.value.inserted == 20 == db.count_memories(user_id="bob")


def test_batches_inside_a_callers_transaction_are_not_said_to_be_saved(db):
    """Inside `atomic()` each batch is a savepoint of the caller's transaction, which the error
    undoes whole: PartlyInserted said the first batches were saved, and nothing was."""
    taken = db.insert_memory(user_id="ada", content="holds the id")
    rows = [{"user_id": "bob", "content": f"row {n}"} for n in range(25)]
    rows[22]["id"] = taken
    with pytest.raises(MemoricError) as raised, db.atomic():
        db.insert_memories(rows, batch_size=10)
    assert not isinstance(raised.value, PartlyInserted)
    assert db.count_memories(user_id="bob") == 0


def test_ctrl_c_after_committed_batches_is_left_as_it_is_with_a_note_of_the_rows_saved(db, monkeypatch):
    """A KeyboardInterrupt in the third batch said nothing of the two committed before it."""
    real, calls = postings.insert_memories, itertools.count()

    def interrupted_in_the_third_batch(store, batch, **options):
        if next(calls) == 2:
            raise KeyboardInterrupt
        return real(store, batch, **options)

    monkeypatch.setattr(postings, "insert_memories", interrupted_in_the_third_batch)
    rows = [{"user_id": "bob", "content": f"row {n}"} for n in range(25)]
    with pytest.raises(KeyboardInterrupt) as raised:
        db.insert_memories(rows, batch_size=10)
    assert raised.value.__notes__ == ["insert_memories: rows[0:20], the first 20 rows given, had been saved"]
    assert contents_of(db, "bob") == [f"row {n}" for n in range(20)]


def test_a_batch_whose_commit_loses_the_connection_is_said_to_be_in_doubt(db, dialect):
    """A COMMIT whose answer a lost connection never brought may have gone through or not: the
    count left the batch out, and the message said the rows after the count were not saved."""
    with at_commit_of_boom(db, dialect, "PERFORM pg_terminate_backend(pg_backend_pid())") as rows:
        with pytest.raises(PartlyInserted, match="whether the 10 rows after those were saved is not known"):
            db.insert_memories(rows, batch_size=10)
        assert db.count_memories(user_id="bob") == 20  # the backend ended before its COMMIT
