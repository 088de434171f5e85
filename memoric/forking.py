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


def _after_fork_in_child() -> None:
    for instance in list(_registered):
        instance.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
