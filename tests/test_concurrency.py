"""Concurrent agents on one store: no lost rows, no "database is locked", consistent reads.

Through the store and through the Memoric facade, in threads and in processes, on both dialects:
writers on a database nobody has built yet, a writer waiting for another's open transaction,
policy runs and cluster rebuilds interleaved (ending where one serial run ends).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3
import subprocess
import sys
import threading

import psycopg2
import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from memoric.errors import MemoricError
from tests.helpers.chain import SHIPPED
from tests.helpers.concurrency import (
    AGENT_CONFIG,
    INSERTS_PER_WRITER,
    WRITERS,
    agent_memoric,
    assert_every_write_landed,
    end_state,
    run_in_threads,
    save_as_writer,
)
from tests.helpers.dialects import requires_postgres
from tests.helpers.reference import NOW, ago

pytestmark = pytest.mark.citus  # also on a Citus cluster


WRITER_SCRIPT = """
import sys
from memoric.db.store import MemoryStore
store = MemoryStore(sys.argv[1])
writer = int(sys.argv[2])
for n in range(int(sys.argv[3])):
    store.insert_memory(user_id=f"w{writer}", content=f"w{writer} n{n}", metadata={"writer": writer, "n": n})
"""


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
    upserts_on_10_keys(db)


@requires_postgres
@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_a_stricter_default_isolation_of_the_database_fails_no_concurrent_write(new_postgres_url, isolation):
    """A DBA's `default_transaction_isolation` above READ COMMITTED made concurrent upserts fail
    ("could not serialize access"): memoric runs its own transactions in READ COMMITTED."""
    db = MemoryStore(new_postgres_url())
    db.create_schema()
    name = db.database.execute_sql("SELECT current_database()").fetchone()[0]
    db.database.execute_sql(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = '{isolation}'")
    db.close()
    db = MemoryStore(db.dsn)
    upserts_on_10_keys(db)
    db.close()


def upserts_on_10_keys(db: MemoryStore) -> None:
    """160 upserts from 8 threads on 10 cluster keys: none fails, 10 rows are left."""
    ids = [db.insert_memory(user_id="ada", content=f"m{n}") for n in range(20)]

    def upsert(worker):
        try:
            for round_ in range(20):
                key = (worker * 20 + round_) % 10
                db.upsert_cluster(
                    user_id="ada", topic=f"t{key}", category="general", memory_ids=[ids[worker], ids[round_]]
                )
        finally:
            db.close()

    assert run_in_threads(8, upsert) == []
    clusters = db.get_clusters(limit=None)
    assert sorted(c["topic"] for c in clusters) == [f"t{k}" for k in range(10)]


def test_a_postgresql_connection_the_server_ended_is_replaced_before_the_next_call(db, dialect):
    db.insert_memory(user_id="ada", content="before")
    if dialect != "postgresql":
        return
    backend = db.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    admin = psycopg2.connect(db.dsn)
    admin.autocommit = True
    admin.cursor().execute("SELECT pg_terminate_backend(%s, 10000)", (backend,))  # waits for its end
    admin.close()
    assert db.count_memories() == 1
    assert db.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0] != backend
    assert db.insert_memory(user_id="ada", content="after") == 2


def test_two_stores_on_one_database_share_data(db):
    other = MemoryStore(db.dsn)
    db.insert_memory(user_id="ada", content="from one")
    assert [m["content"] for m in other.get_memories()] == ["from one"]
    other.close()


# --- through the facade ------------------------------------------------------------------------

FACADE_WRITER = """
import sys
from memoric import Memoric
memoric = Memoric(sys.argv[1])
writer = int(sys.argv[2])
for n in range(int(sys.argv[3])):
    memoric.save(f"w{writer}", f"w{writer} n{n}", thread_id=f"t{n % 5}", metadata={"writer": writer, "n": n})
"""


def test_eight_facade_writer_processes_on_an_unbuilt_database_lose_nothing(new_dsn):
    """All eight find the database empty: one builds the schema, the others wait for it, then all write."""
    dsn = new_dsn()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", FACADE_WRITER, dsn, str(w), str(INSERTS_PER_WRITER)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    failures = [w.stderr.read() for w in writers if w.wait() != 0]
    assert failures == []
    memoric = Memoric(dsn)
    assert [row["name"] for row in memoric.migrations.history() if row["applied"]] == SHIPPED
    assert_every_write_landed(memoric.db)


def test_eight_facade_writer_threads_each_with_its_own_memoric_lose_nothing(new_dsn):
    dsn = new_dsn()

    def write(writer):
        memoric = Memoric(dsn)
        try:
            save_as_writer(memoric, writer)
        finally:
            memoric.close()

    assert run_in_threads(WRITERS, write) == []
    assert_every_write_landed(Memoric(dsn).db)


HOLDER = """
import sys
from memoric.db.store import MemoryStore
store = MemoryStore(sys.argv[1])
with store.atomic():
    store.upsert_cluster(user_id="ada", topic="travel", category="general", memory_ids=[1])
    print("holding", flush=True)
    sys.stdin.readline()
"""


def test_a_writer_waits_for_another_processes_open_transaction_instead_of_failing(new_dsn):
    """SQLite's write lock (BUSY) and PostgreSQL's row lock both make the second writer wait."""
    memoric = Memoric(new_dsn())
    memoric.save("ada", "Booked a flight", metadata={"topic": "travel"})
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, memoric.db.dsn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "holding\n"
    errors = []

    def rebuild():
        try:
            memoric.rebuild_clusters("ada")
        except Exception as exc:  # asserted below
            errors.append(exc)
        finally:
            memoric.close()

    waiting = threading.Thread(target=rebuild)
    waiting.start()
    waiting.join(timeout=1.0)
    assert waiting.is_alive(), "the second writer did not wait for the open transaction"
    holder.communicate("release\n")
    waiting.join()
    assert holder.returncode == 0 and errors == []
    (cluster,) = memoric.get_clusters("ada")
    assert (cluster["topic"], cluster["memory_ids"]) == ("travel", [1])


def test_opening_a_new_sqlite_file_waits_while_another_connection_reads_it(tmp_path):
    """Switching a file to WAL needs it to itself: SQLite answers BUSY (at once, or after 5 s)."""
    path = tmp_path / "shared.db"
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("CREATE TABLE memories (note TEXT)")  # memoric's tables: the file is switched
    reader.execute("CREATE TABLE migratehistory (name TEXT)")
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM memories").fetchall()
    opened, errors = [], []

    def open_store():
        try:
            store = MemoryStore(f"sqlite:///{path}")
            store.database.connect(reuse_if_open=True)
            opened.append(store)
        except MemoricError as exc:  # asserted below
            errors.append(exc)

    opening = threading.Thread(target=open_store)
    opening.start()
    opening.join(timeout=6.0)
    assert opening.is_alive(), f"gave up while the reader held the file: {errors}"
    reader.execute("COMMIT")
    opening.join()
    reader.close()
    assert errors == []
    assert opened[0].database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- policies and clusters, interleaved -----------------------------------------------------

USERS = 12
# (job, user): four policy runs and four cluster rebuilds, for everyone or for one user.
JOBS = [
    ("policies", None),
    ("clusters", None),
    ("policies", "u3"),
    ("clusters", "u3"),
    ("policies", None),
    ("clusters", None),
    ("policies", "u7"),
    ("clusters", "u7"),
]


def agent_rows() -> list[dict]:
    """1,200 memories of 12 users in every tier and age, with topics, some long enough to trim."""
    tiers = [tier["name"] for tier in AGENT_CONFIG["tiers"]]
    return [
        {
            "user_id": f"u{i % USERS}",
            "thread_id": f"t{i % 5}",
            "tier": tiers[i % 3],
            "content": f"Fact {i} about thread t{i % 5}. " + "More detail follows here. " * (i % 4),
            "metadata": {"topic": f"topic{i // 12 % 4}", **({"category": "c"} if i // 48 % 2 else {})},
            **ago(days=(i * 7) % 50),
        }
        for i in range(1200)
    ]


def run_job(memoric: Memoric, job: str, user: str | None):
    if job == "policies":
        return memoric.run_policies(user_id=user)
    return memoric.rebuild_clusters(user)


@pytest.fixture
def serial_end_state(new_dsn):
    """The end state of one policy run and then one cluster rebuild, on a fresh database."""
    memoric = agent_memoric(new_dsn())
    memoric.ensure_schema()
    memoric.db.insert_memories(agent_rows())
    summary = memoric.run_policies()
    assert (
        summary["summaries_created"] > 0 and summary["trimmed"] > 0 and summary["migrated"]["short_term"] > 0
    )
    memoric.rebuild_clusters()
    return end_state(memoric)


@pytest.fixture
def agents_dsn(new_dsn) -> str:
    memoric = agent_memoric(new_dsn())
    memoric.ensure_schema()
    memoric.db.insert_memories(agent_rows())
    memoric.close()
    return memoric.db.dsn


def test_policies_and_clusters_interleaved_in_threads_end_as_one_serial_run(agents_dsn, serial_end_state):
    memoric = agent_memoric(agents_dsn)
    barrier = threading.Barrier(len(JOBS))

    def work(index):
        try:
            barrier.wait()
            run_job(memoric, *JOBS[index])
        finally:
            memoric.close()

    assert run_in_threads(len(JOBS), work) == []
    assert end_state(memoric) == serial_end_state


def _job_process(dsn: str, now: str, job: str, user: str | None, barrier, errors) -> None:
    memoric = agent_memoric(dsn, dt.datetime.fromisoformat(now))
    barrier.wait()
    try:
        run_job(memoric, job, user)
    except Exception as exc:  # reported by the parent
        errors.put(f"{job} {user}: {exc!r}")
    memoric.close()


def test_policies_and_clusters_interleaved_in_processes_end_as_one_serial_run(agents_dsn, serial_end_state):
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(len(JOBS)), context.Queue()
    processes = [
        context.Process(target=_job_process, args=(agents_dsn, NOW.isoformat(), job, user, barrier, errors))
        for job, user in JOBS
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0] * len(JOBS)
    assert errors.empty(), errors.get()
    assert end_state(agent_memoric(agents_dsn)) == serial_end_state
