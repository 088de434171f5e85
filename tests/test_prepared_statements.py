"""A user's metadata filter and a single save are planned once per PostgreSQL connection, and
answer the same whatever happens to the prepared statement under memoric: taken away (as a pooler
that hands the session to another client does), made stale by a change to the table, run inside
a transaction, or pushed out by newer ones. SQLite's driver keeps its own compiled statements;
there every case must simply answer the same.
"""

from __future__ import annotations

import datetime as dt

import pytest

from memoric.db.dialects import prepared
from memoric.db.jsonfilter import contains
from memoric.errors import MemoricError
from tests.test_connection_loss import lose_connection

pytestmark = pytest.mark.citus  # also on a Citus cluster
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PATTERNS = ({"topic": "a"}, {"topic": "b"}, {"topic": "none"}, {"tags": ["x"]})


@pytest.fixture
def filled(db):
    db.insert_memories(
        {
            "user_id": f"u{n % 2}",
            "content": f"memory {n}",
            "metadata": {"topic": "a" if n % 3 else "b", "tags": ["x"] if n % 5 == 0 else []},
            "created_at": START + dt.timedelta(minutes=n),
        }
        for n in range(120)
    )
    db.database.close()  # each test starts on a connection that has prepared nothing
    return db


def reference(store, pattern: dict, limit: int = 7) -> list[int]:
    """u1's newest `limit` memories containing `pattern`, found in Python."""
    every = store.get_memories(limit=None)
    return [m["id"] for m in every if m["user_id"] == "u1" and contains(m["metadata"], pattern)][:limit]


def pages(store, limit: int = 7) -> list[list[int]]:
    """Ids of u1's first page for each of PATTERNS."""
    found = [store.get_memories(user_id="u1", where_metadata=p, limit=limit) for p in PATTERNS]
    return [[m["id"] for m in page] for page in found]


def prepared_here(store) -> int:
    """How many statements memoric has prepared on this thread's connection (0 on SQLite)."""
    if store.is_sqlite:
        return 0
    sql = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'memoric%%'"
    return store.database.execute_sql(sql).fetchone()[0]


def test_the_filter_is_prepared_once_and_answers_as_the_reference(filled):
    expected = [reference(filled, pattern) for pattern in PATTERNS]
    assert pages(filled) == expected
    assert pages(filled) == expected
    assert prepared_here(filled) == (0 if filled.is_sqlite else 1), "one statement for every pattern"


def test_inside_a_transaction_nothing_is_prepared(filled):
    with filled.atomic():
        inside = pages(filled)
        assert prepared_here(filled) == 0
    assert inside == [reference(filled, pattern) for pattern in PATTERNS]


def test_a_statement_taken_away_under_memoric_is_run_as_it_is_and_not_prepared_again(filled):
    """A pooler in transaction mode hands the session to other clients: what memoric prepared is
    gone (`DEALLOCATE ALL` here) and the next EXECUTE fails with "does not exist"."""
    expected = pages(filled)
    if filled.is_postgres:
        filled.database.execute_sql("DEALLOCATE ALL")
    assert pages(filled) == expected
    assert pages(filled) == expected
    assert prepared_here(filled) == 0


def test_a_table_changed_under_a_prepared_statement_is_read_anew(filled):
    """Another deploy widens a column: the prepared plan's row type is stale ("cached plan must
    not change result type"); the read runs as it is and is prepared afresh next time. (SQLite
    cannot change a column's type; a column added there must not change the answers either.)"""
    expected = pages(filled)
    change, undo = (
        ('ADD COLUMN "added_by_a_deploy" integer', 'DROP COLUMN "added_by_a_deploy"')
        if filled.is_sqlite
        else ('ALTER COLUMN "namespace" TYPE varchar(255)', 'ALTER COLUMN "namespace" TYPE varchar(128)')
    )
    filled.database.execute_sql(f'ALTER TABLE "memories" {change}')
    try:
        assert pages(filled) == expected
        assert pages(filled) == expected
        assert prepared_here(filled) == (0 if filled.is_sqlite else 1)
    finally:
        filled.database.execute_sql(f'ALTER TABLE "memories" {undo}')


def test_statements_past_the_limit_push_out_the_oldest(filled, monkeypatch):
    monkeypatch.setattr(prepared, "PREPARED_PER_CONNECTION", 2)
    shapes = [{}, {"thread_id": None}, {"tier": "short_term"}, {"namespace": "n"}, {"summarized": False}]
    expected = reference(filled, {"topic": "b"}, 4)
    for _ in range(2):
        for shape in shapes:
            page = filled.get_memories(user_id="u1", where_metadata={"topic": "b"}, limit=4, **shape)
            assert [m["id"] for m in page] == ([] if "namespace" in shape else expected)
    assert prepared_here(filled) == (0 if filled.is_sqlite else 2)


def test_a_lost_connection_fails_one_call_and_the_next_prepares_on_the_new_one(filled):
    expected = pages(filled)
    lose_connection(filled)
    if filled.is_postgres:
        with pytest.raises(MemoricError, match="connection was lost"):
            pages(filled)
    assert pages(filled) == expected
    assert prepared_here(filled) == (0 if filled.is_sqlite else 1)


def saved_everywhere(store) -> tuple[list[str], int]:
    """The contents of every memory, and how many memories have their text postings."""
    documents = store.database.execute_sql('SELECT count(*) FROM "memory_documents"').fetchone()[0]
    return sorted(m["content"] for m in store.get_memories(limit=None)), documents


def test_saves_are_prepared_and_none_is_lost_or_doubled_when_the_statement_is_taken_away(db, dialect):
    """On Citus a save is three statements in a transaction (one per shard's table): not prepared."""
    db.database.close()
    ids = [db.insert_memory(user_id="u1", content=f"memory {n}") for n in range(3)]
    assert prepared_here(db) == (1 if dialect == "postgresql" else 0)
    if db.is_postgres:
        db.database.execute_sql("DEALLOCATE ALL")
    ids += [db.insert_memory(user_id="u1", content=f"memory {n}") for n in range(3, 6)]
    assert len(set(ids)) == 6
    assert saved_everywhere(db) == ([f"memory {n}" for n in range(6)], 6)
    assert prepared_here(db) == 0


def test_saves_in_a_rolled_back_transaction_leave_nothing_and_prepare_nothing(db):
    db.database.close()
    with pytest.raises(RuntimeError), db.atomic():
        db.insert_memory(user_id="u1", content="undone")
        assert prepared_here(db) == 0
        raise RuntimeError
    assert saved_everywhere(db) == ([], 0)
    db.insert_memory(user_id="u1", content="kept")
    assert saved_everywhere(db) == (["kept"], 1)


@pytest.mark.parametrize(
    ("sql", "numbered"),
    [
        ("a = %s AND b = %s", "a = $1 AND b = $2"),
        ("a LIKE '100%%' AND b = %s", "a LIKE '100%%' AND b = $1"),
        ("a = '%%s' AND b = %s", "a = '%%s' AND b = $1"),
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_placeholders_are_numbered_and_literal_percents_left_to_the_driver(sql, numbered):
    assert prepared.numbered(sql) == numbered
