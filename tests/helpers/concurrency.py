"""Concurrency: writers in threads, an agent's configuration, and waiting for a lock's waiters."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

from memoric import Memoric
from memoric.db.dialects import citus
from tests.helpers.reference import NOW, Clock, cluster_snapshot, memory_snapshot

WRITERS = 8


INSERTS_PER_WRITER = 500


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


def save_as_writer(memoric: Memoric, writer: int) -> None:
    """INSERTS_PER_WRITER memories of user `w<writer>` through `save`, as assert_every_write_landed reads."""
    for n in range(INSERTS_PER_WRITER):
        memoric.save(f"w{writer}", f"w{writer} n{n}", metadata={"writer": writer, "n": n})


def assert_every_write_landed(store):
    assert store.count_memories() == WRITERS * INSERTS_PER_WRITER
    for writer in range(WRITERS):
        rows = store.get_memories(user_id=f"w{writer}", limit=None)
        assert sorted(m["metadata"]["n"] for m in rows) == list(range(INSERTS_PER_WRITER))


AGENT_CONFIG = {
    "tiers": [
        {"name": "short_term", "expire_after_days": 7},
        {"name": "mid_term", "expire_after_days": 30, "trim_chars": 60},
        {"name": "long_term"},
    ],
    "summarization": {"min_records": 4, "max_chars": 300},
    "policies": {"batch_size": 50},
}


def agent_memoric(dsn: str, now: dt.datetime = NOW) -> Memoric:
    return Memoric(dsn, config=AGENT_CONFIG, clock=Clock(now))


def end_state(memoric: Memoric) -> tuple[list, list]:
    """Every memory (summaries without their ids: who writes first is free) and every cluster but its id."""
    memories = [
        (None, *row[1:]) if row[7] == [("kind", "thread_summary")] else row
        for row in memory_snapshot(memoric.db)
    ]
    clusters = sorted(row[1:] for row in cluster_snapshot(memoric.db))
    return sorted(memories, key=repr), clusters


LOCK_WAITERS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def wait_for_a_lock_waiter(store, waiters: int = 1, unless: threading.Thread | None = None) -> None:
    """Return once `waiters` other sessions of the database wait for a lock, or the thread
    `unless` has ended without waiting (PostgreSQL; on SQLite a writer waits in BEGIN, which
    nothing shows, so this returns at once)."""
    if store.dialect.name == "sqlite":
        return
    stop = time.monotonic() + 60
    while _lock_waiters(store) < waiters:
        if unless is not None and not unless.is_alive():
            return
        assert time.monotonic() < stop, f"{waiters} sessions never waited for a lock"


def _lock_waiters(store) -> int:
    """Sessions waiting for a lock now (inside a transaction too: PostgreSQL keeps one view of
    the activity for a whole transaction unless it is cleared). On Citus a statement waits on a
    worker, which `citus_lock_waits` shows for the whole cluster."""
    store.database.execute_sql("SELECT pg_stat_clear_snapshot()")
    here = store.database.execute_sql(LOCK_WAITERS).fetchone()[0]
    if citus.installed(store.database):
        here += store.database.execute_sql("SELECT count(*) FROM citus_lock_waits").fetchone()[0]
    return here


def while_held(store, first: Callable[[Callable[[], None]], None], second: Callable[[], None]) -> list:
    """Run `first(pause)` in a thread until it calls `pause()` (holding whatever it holds), then
    `second()` in another until it waits for a lock (`wait_for_a_lock_waiter`) or ends; then let
    `first` go on. Each thread closes its connection of `store` at its end. The failures of
    both, in the order they came."""
    paused, go, failures = threading.Event(), threading.Event(), []

    def pause() -> None:
        paused.set()
        go.wait()

    def run(work, *args) -> None:
        try:
            work(*args)
        except BaseException as exc:  # reported by the caller
            failures.append(exc)
        finally:
            paused.set()  # a first that ended before its pause must not hang the test
            store.close()

    holder = threading.Thread(target=run, args=(first, pause))
    holder.start()
    paused.wait()
    waiter = threading.Thread(target=run, args=(second,))
    waiter.start()
    try:
        wait_for_a_lock_waiter(store, unless=waiter)
    finally:  # a failed wait must not leave `first` paused, holding its locks, for ever
        go.set()
        for thread in (holder, waiter):
            thread.join()
    return failures
