"""AsyncMemoric on both dialects: the facade awaitable, the event loop free, connections released.

No pytest-asyncio: each test drives its own event loop with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sqlite3
import threading
import time

import psycopg2
import pytest

from memoric import AsyncMemoric, Memoric
from memoric.aio import DEFAULT_MAX_WORKERS
from memoric.db.urls import sqlite_path
from memoric.errors import ConfigError, MemoricError, MigrationError, ValidationError
from tests.helpers.reference import NOW, Clock

TASKS = 50
USERS = 5
OTHER_BACKENDS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
FAILSAFE_SECONDS = 120  # only a broken implementation ever waits this long; no test relies on it
LOCK_STATEMENTS = {
    "sqlite": "BEGIN IMMEDIATE",
    "postgresql": "LOCK TABLE memories IN SHARE ROW EXCLUSIVE MODE",
}


def pooled(dsn: str) -> str:
    """`dsn` with `+pool` added to its scheme."""
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}+pool://{rest}"


def with_query(dsn: str, setting: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}{setting}"


def plain(dsn: str) -> str:
    """`dsn` without `+pool`: the URL a driver understands."""
    return dsn.replace("+pool://", "://", 1)


def raw_connection(dialect: str, dsn: str):
    """A driver connection of its own to the database of `dsn` (not through memoric)."""
    if dialect == "sqlite":
        return sqlite3.connect(sqlite_path(plain(dsn)), isolation_level=None)
    return psycopg2.connect(plain(dsn))


def connections(dialect: str, dsn: str) -> int:
    """Connections open to the database: PostgreSQL backends, or this process's SQLite file handles."""
    if dialect == "sqlite":
        return local_connections(dialect, dsn)
    with contextlib.closing(raw_connection(dialect, dsn)) as admin, admin.cursor() as cursor:
        cursor.execute(OTHER_BACKENDS)
        return cursor.fetchone()[0]


def local_connections(dialect: str, dsn: str) -> int:
    """This process's side of its connections: SQLite handles on the database file, or sockets."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("counting open handles needs /proc/self/fd")
    targets = [_fd_target(fd) for fd in os.listdir("/proc/self/fd")]
    if dialect == "sqlite":
        return targets.count(os.path.realpath(sqlite_path(plain(dsn))))
    return sum(target.startswith("socket:") for target in targets if target)


def _fd_target(fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # closed since it was listed
        return None


def backends_once_gone(dsn: str) -> int:
    """PostgreSQL backends left once those whose client disconnected have exited.

    The server ends them after the client has gone, in its own time: this polls (up to the
    failsafe) for that only, the client side having been checked closed already.
    """
    deadline = time.monotonic() + FAILSAFE_SECONDS
    while (left := connections("postgresql", dsn)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


class WriteLock:
    """Another connection holding the write lock on the memories table until `release()`."""

    def __init__(self, dialect: str, dsn: str) -> None:
        self.held, self.released = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(dialect, dsn))
        self.thread.start()
        assert self.held.wait(FAILSAFE_SECONDS)

    def _hold(self, dialect: str, dsn: str) -> None:
        connection = raw_connection(dialect, dsn)
        try:
            connection.cursor().execute(LOCK_STATEMENTS[dialect])
            self.held.set()
            self.released.wait(FAILSAFE_SECONDS)
            connection.rollback()
        finally:
            connection.close()

    def release(self) -> None:
        self.released.set()
        self.thread.join()


def signalling_enricher(started: asyncio.Event):
    """An enricher that tells the event loop a save has started on its worker thread."""
    loop = asyncio.get_running_loop()

    def enrich(content: str, metadata: dict) -> None:
        loop.call_soon_threadsafe(started.set)

    return enrich


def public_methods(cls) -> dict:
    return {name: method for name, method in inspect.getmembers(cls, inspect.isfunction) if name[0] != "_"}


# --- the surface ----------------------------------------------------------------------------


def test_every_public_method_of_memoric_has_an_awaitable_counterpart_with_its_signature():
    facade = public_methods(Memoric)
    assert {"save", "retrieve", "forget", "run_policies", "stats", "rebuild_clusters", "close"} <= set(facade)
    for name, method in facade.items():
        counterpart = getattr(AsyncMemoric, name)
        assert inspect.iscoroutinefunction(counterpart), name
        assert inspect.signature(counterpart) == inspect.signature(method), name
        assert counterpart.__doc__, name
        if name != "close":  # close says what it closes: every worker's connection
            assert counterpart.__doc__ == method.__doc__, name
    assert inspect.signature(AsyncMemoric.save) == inspect.signature(Memoric.save)
    constructor = list(inspect.signature(AsyncMemoric).parameters.values())
    assert constructor[:-1] == list(inspect.signature(Memoric).parameters.values())
    assert constructor[-1].name == "max_workers" and constructor[-1].kind is inspect.Parameter.KEYWORD_ONLY


# --- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize("pool", [False, True], ids=["plain", "pool"])
def test_fifty_concurrent_tasks_save_and_retrieve_like_the_sync_facade(new_dsn, pool):
    dsn = pooled(new_dsn()) if pool else new_dsn()

    async def task(m: AsyncMemoric, n: int) -> tuple[int, list[dict]]:
        memory_id = await m.save(
            f"user{n % USERS}", f"memory {n}", thread_id=f"t{n % 3}", metadata={"n": n}, score=n
        )
        return memory_id, await m.retrieve(f"user{n % USERS}", metadata_filter={"n": n}, scope="user")

    async def scenario():
        async with AsyncMemoric(dsn, clock=Clock(NOW)) as m:
            saved = await asyncio.gather(*(task(m, n) for n in range(TASKS)))
            recalled = await asyncio.gather(
                *(m.retrieve(f"user{u}", thread_id="t1", scope="user", top_k=TASKS) for u in range(USERS))
            )
            counted = await m.run(lambda memoric: memoric.db.count_memories())
            return saved, recalled, counted, await m.stats()

    saved, recalled, counted, stats = asyncio.run(scenario())
    ids = [memory_id for memory_id, _ in saved]
    assert len(set(ids)) == TASKS and counted == TASKS
    for n, (memory_id, found) in enumerate(saved):
        assert [(m["id"], m["content"], m["metadata"]) for m in found] == [
            (memory_id, f"memory {n}", {"n": n})
        ]
    with Memoric(dsn, clock=Clock(NOW)) as sync:
        stored = {memory["id"]: memory["content"] for memory in sync.db.get_memories(limit=None)}
        assert stored == {memory_id: f"memory {n}" for n, memory_id in enumerate(ids)}
        assert recalled == [
            sync.retrieve(f"user{u}", thread_id="t1", scope="user", top_k=TASKS) for u in range(USERS)
        ]
        assert stats == sync.stats()


def test_the_event_loop_runs_while_a_call_waits_for_a_lock(dialect, new_dsn):
    dsn = new_dsn()
    ticks_while_waiting = []

    async def ticker(save: asyncio.Task, enough: asyncio.Event) -> None:
        while len(ticks_while_waiting) < 100:
            ticks_while_waiting.append(not save.done())
            await asyncio.sleep(0)  # a yield to the loop, not a wait
        enough.set()

    async def scenario():
        started, enough = asyncio.Event(), asyncio.Event()
        async with AsyncMemoric(dsn, enricher=signalling_enricher(started)) as m:
            await m.stats()  # the schema is built before the lock is taken
            lock = WriteLock(dialect, dsn)
            save = asyncio.create_task(m.save("ada", "waits for the write lock"))
            await started.wait()
            ticking = asyncio.create_task(ticker(save, enough))
            await enough.wait()
            await ticking
            await asyncio.to_thread(lock.release)
            return await save, await m.retrieve("ada")

    memory_id, recalled = asyncio.run(scenario())
    assert ticks_while_waiting == [True] * 100
    assert [memory["id"] for memory in recalled] == [memory_id]


def test_a_cancelled_await_lets_its_call_finish_whole_and_leaves_no_transaction(dialect, new_dsn):
    dsn = new_dsn()

    def after_the_call(memoric: Memoric) -> tuple:
        return memoric.store.database.in_transaction(), memoric.db.get_memories(user_id="ada", limit=None)

    async def scenario():
        started = asyncio.Event()
        async with AsyncMemoric(dsn, enricher=signalling_enricher(started), max_workers=1) as m:
            await m.stats()
            lock = WriteLock(dialect, dsn)
            save = asyncio.create_task(m.save("ada", "saved though cancelled", metadata={"kind": "note"}))
            await started.wait()
            save.cancel()
            with pytest.raises(asyncio.CancelledError):
                await save
            await asyncio.to_thread(lock.release)
            return await m.run(after_the_call)  # the one worker runs it once the save has ended

    in_transaction, memories = asyncio.run(scenario())
    assert in_transaction is False
    assert [(m["content"], m["metadata"]) for m in memories] == [("saved though cancelled", {"kind": "note"})]


# --- errors ---------------------------------------------------------------------------------


def test_errors_propagate_as_the_memoric_errors_of_the_sync_facade(new_dsn):
    dsn = new_dsn()
    calls = [
        ("save", ("",), {"content": "no user"}),
        ("retrieve", ("ada",), {"scope": "everywhere"}),
        ("run_policies", (), {"user_id": 7}),
        ("migrate", ("999_no_such_migration",), {}),
    ]

    async def failures():
        async with AsyncMemoric(dsn) as m:
            return [await _failure(getattr(m, name)(*args, **kwargs)) for name, args, kwargs in calls]

    with Memoric(dsn) as sync:
        expected = [_sync_failure(getattr(sync, name), *args, **kwargs) for name, args, kwargs in calls]
    assert [kind for kind, _ in expected] == [
        ValidationError,
        ValidationError,
        ValidationError,
        MigrationError,
    ]
    assert asyncio.run(failures()) == expected


async def _failure(call) -> tuple[type, str]:
    try:
        await call
    except MemoricError as error:
        return type(error), str(error)
    raise AssertionError("no error")


def _sync_failure(method, *args, **kwargs) -> tuple[type, str]:
    with pytest.raises(MemoricError) as caught:
        method(*args, **kwargs)
    return caught.type, str(caught.value)


def test_a_bad_database_url_is_raised_by_the_first_await_not_the_constructor(tmp_path):
    m = AsyncMemoric(f"sqlite:///{tmp_path / 'missing' / 'memoric.db'}")

    async def enter():
        async with m:
            raise AssertionError("opened a database in a missing directory")

    with pytest.raises(ConfigError, match="does not exist"):
        asyncio.run(enter())
    with pytest.raises(ConfigError, match="does not exist"):
        asyncio.run(m.stats())
    asyncio.run(m.close())  # nothing was opened: nothing to close


@pytest.mark.parametrize("workers", [0, -1, True, 1.5, "4", 257])
def test_max_workers_must_be_a_whole_number_from_1_to_256(workers):
    with pytest.raises(ValidationError, match="max_workers must be an int"):
        AsyncMemoric("sqlite:///unused.db", max_workers=workers)


def test_more_workers_than_the_pool_holds_is_refused_and_leaves_no_connection(dialect, new_dsn):
    dsn = new_dsn()
    before = local_connections(dialect, dsn)
    m = AsyncMemoric(with_query(pooled(dsn), "max_connections=2"), max_workers=3)
    with pytest.raises(ConfigError, match=r"max_workers=3 is more than the connection pool holds"):
        asyncio.run(m.stats())
    assert_released(dialect, dsn, before)


# --- connections ----------------------------------------------------------------------------


def assert_released(dialect: str, dsn: str, local_before: int) -> None:
    """This process holds no connection to the database any more, and (PostgreSQL) the server none."""
    assert local_connections(dialect, dsn) == local_before
    if dialect == "postgresql":
        assert backends_once_gone(dsn) == 0


@pytest.mark.parametrize("pool", [False, True], ids=["plain", "pool"])
def test_close_releases_every_connection_and_stops_the_workers(dialect, new_dsn, pool):
    dsn = pooled(new_dsn()) if pool else new_dsn()
    workers = 4

    async def scenario():
        m = AsyncMemoric(dsn, max_workers=workers)
        await asyncio.gather(*(m.save(f"user{n % USERS}", f"memory {n}") for n in range(TASKS)))
        await asyncio.gather(*(m.retrieve(f"user{u}") for u in range(USERS)))
        during = await asyncio.to_thread(connections, dialect, dsn)
        await m.close()
        await m.close()  # a second close is harmless
        with pytest.raises(MemoricError, match="this AsyncMemoric is closed"):
            await m.save("ada", "too late")
        return during

    before = local_connections(dialect, dsn)
    assert 0 < asyncio.run(scenario()) <= workers
    assert_released(dialect, dsn, before)
    assert worker_threads() == 0


def worker_threads() -> int:
    return sum(thread.name.startswith("memoric-aio-") for thread in threading.enumerate())


@pytest.mark.parametrize("pool_size", [None, 2], ids=["plain", "pool-of-2"])
def test_by_default_there_are_as_many_workers_as_the_connection_pool_allows(new_dsn, pool_size):
    dsn = with_query(pooled(new_dsn()), f"max_connections={pool_size}") if pool_size else new_dsn()

    async def workers_while_open() -> int:
        async with AsyncMemoric(dsn) as m:
            await asyncio.gather(*(m.save("ada", f"memory {n}") for n in range(TASKS)))
            return worker_threads()

    assert asyncio.run(workers_while_open()) == min(DEFAULT_MAX_WORKERS, pool_size or DEFAULT_MAX_WORKERS)
    assert worker_threads() == 0
