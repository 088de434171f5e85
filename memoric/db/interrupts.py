"""Cancelling what memoric's PostgreSQL connections are waiting on, from another thread.

A stop signal that arrives while the main thread waits inside psycopg2 (for a lock another
session holds: as long as that session likes) runs no Python handler until the wait ends. The
CLI's stop handling (`memoric.commands.stopping`) cancels the statements under way through
here, so the wait ends at once, with an error, and the stop is raised. SQLite's waits end by
themselves, after the connection's busy timeout.
"""

from __future__ import annotations

import contextlib
import weakref

_cancellable: weakref.WeakSet = weakref.WeakSet()  # psycopg2 connections memoric opened


def watch(connection) -> None:
    """Let `cancel_all` cancel what `connection` (a psycopg2 connection) is running."""
    _cancellable.add(connection)


def cancel_all() -> None:
    """Ask the server to cancel the statement each open connection is running (none: nothing)."""
    for connection in list(_cancellable):
        if not connection.closed:
            with contextlib.suppress(Exception):  # a connection lost meanwhile has nothing to cancel
                connection.cancel()
