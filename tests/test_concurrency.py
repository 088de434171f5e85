"""Concurrent agents on one store: no lost rows, no "database is locked", consistent reads."""

from __future__ import annotations

import subprocess
import sys
import threading

import psycopg2

from memoric.db.store import MemoryStore
from memoric.errors import MemoricError

WRITERS = 8
INSERTS_PER_WRITER = 500

WRITER_SCRIPT = """
import sys
from memoric.db.store import MemoryStore
store = MemoryStore(sys.argv[1])
writer = int(sys.argv[2])
for n in range(int(sys.argv[3])):
    store.insert_memory(user_id=f"w{writer}", content=f"w{writer} n{n}", metadata={"writer": writer, "n": n})
"""


def run_in_threads(count, target):
    errors = []

    def guarded(index):
        try:
            target(index)
        except Exception as exc:  # collected and asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def assert_every_write_landed(store):
    assert store.count_memories() == WRITERS * INSERTS_PER_WRITER
    for writer in range(WRITERS):
        rows = store.get_memories(user_id=f"w{writer}", limit=None)
        assert sorted(m["metadata"]["n"] for m in rows) == list(range(INSERTS_PER_WRITER))


def test_eight_writer_threads_lose_nothing(db):
    def write(writer):
        try:
            for n in range(INSERTS_PER_WRITER):
                db.insert_memory(
                    user_id=f"w{writer}", content=f"w{writer} n{n}", metadata={"writer": writer, "n": n}
                )
        finally:
            db.close()

    assert run_in_threads(WRITERS, write) == []
    assert_every_write_landed(db)


def test_eight_writer_processes_lose_nothing(db):
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, db.dsn, str(w), str(INSERTS_PER_WRITER)],
            stderr=subprocess.PIPE,
        )
        for w in range(WRITERS)
    ]
    failures = [w.stderr.read().decode() for w in writers if w.wait() != 0]
    assert failures == []
    assert_every_write_landed(db)


def test_readers_during_bulk_writes_see_whole_batches(db):
    batch, batches = 200, 15
    done = threading.Event()
    reads = []

    def write(_):
        try:
            for b in range(batches):
                rows = [
                    {"user_id": "ada", "content": f"b{b} r{r}", "metadata": {"batch": b}}
                    for r in range(batch)
                ]
                db.insert_memories(rows)
        finally:
            done.set()
            db.close()

    def read(_):
        last = 0
        try:
            while not done.is_set():
                count = db.count_memories(user_id="ada")
                assert count % batch == 0, f"saw a partial batch: {count} rows"
                assert count >= last, "a reader saw rows disappear"
                rows = db.get_memories(user_id="ada", limit=None)
                assert len(rows) % batch == 0 and len(rows) >= count
                assert all(m["content"].startswith(f"b{m['metadata']['batch']} ") for m in rows)
                last = count
                reads.append(count)
        finally:
            db.close()

    assert run_in_threads(4, lambda i: write(i) if i == 0 else read(i)) == []
    assert reads, "the readers never ran"
    assert db.count_memories() == batch * batches


def test_160_concurrent_upserts_on_10_keys_leave_10_rows(db):
    def upsert(worker):
        try:
            for round_ in range(20):
                key = (worker * 20 + round_) % 10
                db.upsert_cluster(
                    user_id="ada", topic=f"t{key}", category="general", memory_ids=[worker, round_]
                )
        finally:
            db.close()

    assert run_in_threads(8, upsert) == []
    clusters = db.get_clusters(limit=None)
    assert sorted(c["topic"] for c in clusters) == [f"t{k}" for k in range(10)]


def test_a_dropped_postgresql_connection_fails_one_call_clearly_then_reconnects(db, dialect):
    db.insert_memory(user_id="ada", content="before")
    if dialect != "postgresql":
        return
    backend = db.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    admin = psycopg2.connect(db.dsn)
    admin.autocommit = True
    admin.cursor().execute("SELECT pg_terminate_backend(%s)", (backend,))
    admin.close()
    try:
        db.count_memories()
        raised = None
    except MemoricError as exc:
        raised = exc
    assert raised is not None and "connection was lost" in str(raised)
    assert db.count_memories() == 1
    assert db.insert_memory(user_id="ada", content="after") == 2


def test_two_stores_on_one_database_share_data(db):
    other = MemoryStore(db.dsn)
    db.insert_memory(user_id="ada", content="from one")
    assert [m["content"] for m in other.get_memories()] == ["from one"]
    other.close()
