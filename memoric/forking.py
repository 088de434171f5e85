"""Objects that must set their parent's state aside in a forked child, called there at once.

A process forked from another keeps a copy of every object but only the thread that forked:
connections, worker threads and locks held by other threads are the parent's. Each registered
object's `after_fork_in_child()` runs in the child right after the fork, while it has one thread.
"""

from __future__ import annotations

import os
import weakref

_registered: weakref.WeakSet = weakref.WeakSet()


def register(instance) -> None:
    """Call `instance.after_fork_in_child()` in every process forked while it lives."""
    _registered.add(instance)


def let_go(descriptor: int) -> None:
    """In a forked child: point this process's copy of `descriptor` at /dev/null, so that what it
    held open (the parent's socket, a locked file) closes when the parent lets go of it, not when
    the last child does. The number stays taken: nothing opened later here gets it."""
    stand_in = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(stand_in, descriptor, inheritable=False)
    finally:
        os.close(stand_in)


def _after_fork_in_child() -> None:
    for instance in list(_registered):
        instance.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
