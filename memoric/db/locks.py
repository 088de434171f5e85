"""A store's named cross-process locks: PostgreSQL advisory locks, SQLite file locks.

One thread never takes again, through the same store, a lock it holds. The dialects disagree
there (a PostgreSQL session takes its own advisory lock again, a second SQLite file lock waits
for the first), and either way a run started from inside the block holding the lock (a policy
run from a summarizer) would not be kept out as the lock promises: it is refused at once, on
both. (Another store, like another process, waits for the lock.)
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from memoric import validation
from memoric.errors import LockTimeout, MemoricError

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

POLL_SECONDS = 0.05
# The locks this process holds: (id of the store, name) -> the thread that took it (a block may
# end on another thread, an ExitStack closed elsewhere: the lock is released for its taker too).
_holders: dict[tuple[int, str], int] = {}
# Of those, the locks whose block ended on another thread and could not be released there (a
# PostgreSQL lock lives on its taker's connection): they end when the taker closes the store.
_orphans: set[tuple[int, str]] = set()


@contextlib.contextmanager
def hold(
    store: MemoryStore, name: str, timeout: float | None, on_wait: Callable[[], None] | None
) -> Iterator[None]:
    """Hold the named lock for the block (see `MemoryStore.lock`)."""
    name = validation.lock_name(name)
    if timeout is not None:
        validation.non_negative_number("timeout", timeout)
    key = (id(store), name)
    if _holders.get(key) == threading.get_ident():
        raise MemoricError(
            f"the {name!r} lock is held already by this thread, in a block that holds it (a policy "
            "run started from a summarizer or an on_progress callback?): it would not keep that run out"
        )
    with store.driver_errors("lock"):
        handle = _take(store, name, timeout, on_wait)
    taker = _holders[key] = threading.get_ident()
    try:
        with store.database.bound_to_connection():
            yield
    except BaseException:
        _release(store, handle, key, taker)  # the block's own error says more than the release's
        raise
    if not _release(store, handle, key, taker):
        raise MemoricError(_not_released(name, elsewhere=threading.get_ident() != taker))


def _not_released(name: str, *, elsewhere: bool) -> str:
    """Why the named lock could not be released at the end of its block."""
    if elsewhere:
        return (
            f"the {name!r} lock's block ended on another thread than the one that took it: on "
            "PostgreSQL the lock stays with that thread's connection, refused to it again until it "
            "closes the store; end a lock block on the thread that began it"
        )
    return (
        f"the {name!r} lock was lost during the block (with the connection to the database, or "
        "to the process this one was forked from, which took it), or could not be released (on "
        "PostgreSQL, inside a transaction that failed: it then ends with the connection): what ran "
        "after that was not protected by it"
    )


def held_here(store: MemoryStore) -> bool:
    """Whether this thread holds a lock through `store` in a block still running."""
    return any(key not in _orphans for key in _taken_here(store))


def let_orphans_go(store: MemoryStore) -> bool:
    """Forget the locks this thread took through `store` whose block ended on another thread
    (the caller ends the connection they live on); whether there were any."""
    orphans = [key for key in _taken_here(store) if key in _orphans]
    for key in orphans:
        _orphans.discard(key)
        _holders.pop(key, None)
    return bool(orphans)


def _taken_here(store: MemoryStore) -> list[tuple[int, str]]:
    me = threading.get_ident()
    return [key for key, taker in list(_holders.items()) if key[0] == id(store) and taker == me]


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


def _release(store: MemoryStore, handle, key: tuple[int, str], taker: int) -> bool:
    """Release the lock; whether it was still held (not when its connection was lost). Ended on
    another thread, a lock that could not be released stays its taker's, refused to it again."""
    try:
        with store.driver_errors("lock"):
            released = store.dialect.unlock(store.database, handle)
    except MemoricError:
        released = False
    if released or threading.get_ident() == taker:
        _holders.pop(key, None)
    else:
        _orphans.add(key)
    return released


def _forget_in_child() -> None:
    """A forked child holds none of its parent's locks: whatever block it was forked in."""
    _holders.clear()
    _orphans.clear()


os.register_at_fork(after_in_child=_forget_in_child)
