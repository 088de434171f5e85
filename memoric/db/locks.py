"""A store's named cross-process locks: PostgreSQL advisory locks, SQLite file locks.

One thread never takes a lock it holds already. The dialects disagree there (a PostgreSQL
session takes its own advisory lock again, a second SQLite file lock waits for the first), and
either way a run started from inside the block holding the lock (a policy run from a summarizer)
would not be kept out as the lock promises: it is refused at once, on both.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from memoric import validation
from memoric.errors import LockTimeout, MemoricError

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

POLL_SECONDS = 0.05
_held = threading.local()  # this thread's locks: a set of (id of the store, name)


@contextlib.contextmanager
def hold(
    store: MemoryStore, name: str, timeout: float | None, on_wait: Callable[[], None] | None
) -> Iterator[None]:
    """Hold the named lock for the block (see `MemoryStore.lock`)."""
    if timeout is not None:
        validation.non_negative_number("timeout", timeout)
    mine = _held.__dict__.setdefault("locks", set())
    if (id(store), name) in mine:
        raise MemoricError(
            f"the {name!r} lock is held already by this thread, in a block that holds it (a policy "
            "run started from a summarizer or an on_progress callback?): it would not keep that run out"
        )
    with store.driver_errors("lock"):
        handle = _take(store, name, timeout, on_wait)
    mine.add((id(store), name))
    try:
        yield
    finally:
        mine.discard((id(store), name))
        with store.driver_errors("lock"):
            held = store.dialect.unlock(store.database, handle)
    if not held:
        raise MemoricError(
            f"the {name!r} lock was lost during the block (with the connection to the database, or "
            "to the process this one was forked from, which took it): what ran after that was not "
            "protected by it"
        )


def _take(store: MemoryStore, name: str, timeout: float | None, on_wait: Callable[[], None] | None):
    """The dialect's handle of the named lock, once free."""
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while (handle := store.dialect.try_lock(store.database, name)) is None:
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout(f"could not take the {name!r} lock within {timeout} s: another run holds it")
        time.sleep(POLL_SECONDS)
    return handle
