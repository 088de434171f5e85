"""SQLite's named locks: an exclusive `flock` on a file beside the database, one per name.

SQLite has no lock of its own that outlives a transaction; a file lock ends with the process
holding it, however it ends. A child forked while locks were held keeps their files open, not
locked by it.
"""

from __future__ import annotations

import fcntl
import os

from memoric import forking
from memoric.db.connection import LOCK_FILE_SUFFIX
from memoric.db.recovery_sqlite import PRIVATE_FILE_MODE
from memoric.errors import MemoricError

# The lock files this process holds locked, by any thread: a forked child lets go of them all.
_LOCK_DESCRIPTORS: set[int] = set()


def try_take(database_file: str, name: str) -> tuple[int, int] | None:
    """Take the named lock of the database if free: (its descriptor, this process's id)."""
    # Beside the file itself, through any symlink: every path to one database takes one lock.
    path = f"{os.path.realpath(database_file)}.{name}{LOCK_FILE_SUFFIX}"
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise MemoricError(f"cannot open the lock file {path!r}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    _LOCK_DESCRIPTORS.add(handle)
    return handle, os.getpid()


def release(handle: tuple[int, int]) -> bool:
    """Release the lock; False in a process forked from the one that took it, which shares the
    lock's file description: unlocking there would release the parent's lock."""
    descriptor, owner = handle
    _LOCK_DESCRIPTORS.discard(descriptor)
    if owner != os.getpid():
        os.close(descriptor)
        return False
    fcntl.flock(descriptor, fcntl.LOCK_UN)
    os.close(descriptor)
    return True


def _let_go_of_lock_files_in_child() -> None:
    """A child forked while locks were held keeps their files open, not locked by it: the locks
    end with the process that took them, however long a child lives."""
    for descriptor in _LOCK_DESCRIPTORS:
        forking.let_go(descriptor)


os.register_at_fork(after_in_child=_let_go_of_lock_files_in_child)
