"""Deadlocks: a call the server ended to break a deadlock runs again.

PostgreSQL breaks a deadlock by ending one of its transactions, whose work is undone, and lets
the others go on. A delete or edit that waited for a policy run's commit, then releases the
thread's summaries (`summaries`), can meet another such change or the policy run itself that
way: the order in which they lock rows is not known before their statements run. A call that
began its transaction runs again, up to ATTEMPTS times; inside a caller's transaction it cannot
(what the server undid is the caller's too), and the error reaches the caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

F = TypeVar("F", bound=Callable)

ATTEMPTS = 5


def retried(function: F) -> F:
    """`function` (a store method or query: its first argument a MemoryStore, or an object with a
    `store`), run again when the server ended its transaction to break a deadlock."""

    @functools.wraps(function)
    def wrapper(first, *args, **kwargs):
        store = getattr(first, "store", first)
        if store.database.in_transaction():
            return function(first, *args, **kwargs)
        for _ in range(ATTEMPTS - 1):
            try:
                return function(first, *args, **kwargs)
            except Exception as exc:
                if not any(map(store.dialect.is_deadlock, _chain(exc))):
                    raise
        return function(first, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and those it was raised from or wraps (peewee holds the driver's as its first argument)."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = (current.__cause__, current.__context__, *current.args)
        pending += [error for error in linked if isinstance(error, BaseException)]
