"""A write the engine refuses is reported with its real cause; nothing is half-written; the store goes on.

SQLite: `PRAGMA max_page_count` at the current size makes any write that needs a new page fail
with SQLITE_FULL ("database or disk is full"), exactly as a full disk does. SQLite then rolls the
whole transaction back by itself, and peewee's ROLLBACK used to fail and replace the cause with
"cannot rollback - no transaction is active". PostgreSQL never ends a transaction by itself
that way; there the same contract is checked with a refusal it does make, a read-only session.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from memoric.errors import MemoricError
from memoric.transfer import export_jsonl, import_jsonl
from tests.helpers.transfer_data import snapshot

REFUSAL = {"sqlite": "database or disk is full", "postgresql": "read-only transaction"}


@contextlib.contextmanager
def writes_refused(store: MemoryStore):
    """Within the block, the engine refuses to grow the database (SQLite) or to write (PostgreSQL)."""
    database = store.database
    if store.is_sqlite:
        database.execute_sql("VACUUM")  # no free pages left to write into
        limit = database.execute_sql("PRAGMA max_page_count").fetchone()[0]
        pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
        database.execute_sql(f"PRAGMA max_page_count = {pages}")
        try:
            yield
        finally:
            database.execute_sql(f"PRAGMA max_page_count = {limit}")
    else:
        database.execute_sql("SET default_transaction_read_only = on")
        try:
            yield
        finally:
            database.execute_sql("SET default_transaction_read_only = off")


def refused(store: MemoryStore, call) -> str:
    """The MemoricError `call()` raises while writes are refused; the database is left as it was."""
    before = snapshot(store)
    with writes_refused(store), pytest.raises(MemoricError) as raised:
        call()
    assert REFUSAL[store.dialect] in str(raised.value)
    assert "cannot rollback" not in str(raised.value)
    assert snapshot(store) == before, "nothing half-written"
    assert not store.database.in_transaction()
    return str(raised.value)


def big_rows(n: int) -> list[dict]:
    return [{"user_id": "ada", "content": f"row {i} " + "x" * 2000, "metadata": {"i": i}} for i in range(n)]


def test_a_refused_bulk_insert(db):
    db.insert_memories(big_rows(3))
    refused(db, lambda: db.insert_memories(big_rows(300), batch_size=100))
    assert db.insert_memories(big_rows(300), batch_size=100) == 300
    assert db.count_memories() == 303


def test_a_refused_single_insert(db):
    db.insert_memory(user_id="ada", content="before")
    refused(db, lambda: db.insert_memory(user_id="ada", content="y" * 100_000))
    assert db.get_memory(db.insert_memory(user_id="ada", content="y" * 100_000))["content"] == "y" * 100_000


def test_a_refused_write_inside_the_callers_transaction(db):
    def in_a_transaction():
        with db.atomic():
            db.insert_memory(user_id="ada", content="first")
            db.insert_memories(big_rows(300))

    refused(db, in_a_transaction)
    in_a_transaction()
    assert db.count_memories() == 301


@pytest.mark.parametrize("users", [1, 60])
def test_a_refused_policy_run(dsn, users):
    """One summary is a one-row INSERT (SQLite rolls the transaction back), 60 a multi-row one."""
    memoric = Memoric(dsn, config={"summarization": {"min_records": 4, "max_chars": 3000}})
    memoric.ensure_schema()
    rows = [
        {"user_id": f"user{u:02d}", "thread_id": "t", "tier": "long_term", "content": f"fact {n} " * 100}
        for u in range(users)
        for n in range(5)
    ]
    memoric.db.insert_memories(rows)
    refused(memoric.db, memoric.run_policies)
    assert memoric.run_policies()["summaries_created"] == users
    assert memoric.run_policies()["summaries_created"] == 0


def test_a_refused_import_batch(db, new_dsn):
    db.insert_memories(big_rows(1500))
    out = io.StringIO()
    export_jsonl(db, out)
    target = MemoryStore(new_dsn())
    target.create_schema()
    refused(target, lambda: import_jsonl(target, io.StringIO(out.getvalue()), batch_size=1000))
    assert import_jsonl(target, io.StringIO(out.getvalue()))["memories"] == 1500
    assert snapshot(target) == snapshot(db)
    target.close()
