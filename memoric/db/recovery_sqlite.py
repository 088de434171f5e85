"""peewee's SQLite databases, plain and pooled, recovering from a closed handle.

`recovery.Recovering` drops a connection found lost; here is how a SQLite handle is judged lost
(closed), and how a file is opened: created owner-only when missing, switched to WAL when it is
new or memoric's, retried while another connection holds it locked.
"""

from __future__ import annotations

import os
import sqlite3
import time

import peewee
from playhouse.pool import PooledSqliteDatabase

from memoric.db.recovery import Pooled, Recovering
from memoric.errors import ConfigError

PRIVATE_FILE_MODE = 0o600  # memories are private: database and lock files for their owner only
SQLITE_BUSY_SECONDS = 30
# Together they mark a SQLite file as memoric's, run in WAL mode.
MEMORIC_TABLES = frozenset({"memories", "migratehistory"})


class _SqliteRecovering(Recovering):
    """A SQLite connection is lost when its handle was closed."""

    def _connect(self):
        """Create a missing file (owner-only) and connect; retry "database is locked" a while.

        The file appears at the first connection, not when the store is built, so a command
        refused before it touches the database (a bad import file) leaves no file behind.
        Connections opening a new file together race to switch it to WAL, and SQLite answers
        the losers with BUSY at once, without waiting in its busy handler.
        """
        _create_private_file(self.database)
        deadline = time.monotonic() + self._busy_seconds()
        delay = 0.005
        while True:
            try:
                return _in_wal_mode(super()._connect())
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _busy_seconds(self) -> float:
        """How long a statement waits for another connection's lock (the URL's `timeout`, as the
        busy_timeout pragma), which is also how long opening the file keeps trying."""
        return dict(self._pragmas or ()).get("busy_timeout", SQLITE_BUSY_SECONDS * 1000) / 1000

    @staticmethod
    def _lost(connection) -> bool:
        """Whether the handle was closed (any use of it raises then)."""
        try:
            connection.total_changes  # noqa: B018 (raises on a closed handle)
        except sqlite3.ProgrammingError:
            return True
        return False

    @staticmethod
    def _in_transaction(connection) -> bool:
        """Whether SQLite has a transaction open (False once it rolled one back by itself)."""
        return connection.in_transaction


class Sqlite(_SqliteRecovering, peewee.SqliteDatabase):
    """peewee's SQLite database, recovering from a closed connection."""


class PooledSqlite(Pooled, _SqliteRecovering, PooledSqliteDatabase):
    """playhouse's SQLite pool, recovering from a closed connection."""


def _in_wal_mode(connection: sqlite3.Connection) -> sqlite3.Connection:
    """`connection`, switched to WAL if its file is new or memoric's (`switch_to_wal`). Closed on failure."""
    try:
        switch_to_wal(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def switch_to_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL (readers never wait for the writer) when it is new or memoric's;
    another application's file keeps its journal mode: memoric reading it, or refusing it,
    changes nothing of it."""
    if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal" and _memorics_or_new(connection):
        connection.execute("PRAGMA journal_mode = wal")


def _memorics_or_new(connection: sqlite3.Connection) -> bool:
    """Whether the database is a new, empty file or holds memoric's tables (its memories and its
    migration history: a table named `memories` alone may be another application's)."""
    if connection.execute("PRAGMA page_count").fetchone()[0] == 0:
        return True
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return tables >= MEMORIC_TABLES


def _create_private_file(path: str) -> None:
    """Create a missing database file readable by its owner only; an existing one keeps its mode.

    An empty file is an empty SQLite database, and SQLite gives the -wal, -shm and -journal
    files it creates beside it the database file's permissions.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot open database file {path!r}: cannot create it: {exc.strerror}") from None
