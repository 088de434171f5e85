"""Whether two URLs reach one database, however each is spelt (a copy must not read its own target)."""

from __future__ import annotations

import os

import peewee

from memoric.db.connection import open_database
from memoric.db.driver_errors import DriverErrors, first_line
from memoric.db.urls import dialect_of, sqlite_path

# The server by its start time, the database's oid on it, and the schema memoric's tables are in
# (the first existing schema of the connection's search_path, `?options=-c search_path=...`: the
# store finds and builds its tables there). The same for every URL that reaches those tables:
# host alias, socket or TCP, port spelling, scheme, parameters, another spelling of the path.
POSTGRES_IDENTITY = (
    "SELECT pg_postmaster_start_time(), oid, current_schema() FROM pg_database "
    "WHERE datname = current_database()"
)


def same_database(database: peewee.Database, url: str) -> bool:
    """Whether `url` names the database `database` is connected to.

    SQLite: the same file, through relative paths, `.` and `..`, symbolic and hard links; the
    file of `url` is only looked at. PostgreSQL: the same schema of the same database of the
    same running server; `url` is connected to for the comparison and closed again, nothing is
    written.
    """
    dialect = dialect_of(url)
    if dialect != ("sqlite" if isinstance(database, peewee.SqliteDatabase) else "postgresql"):
        return False
    if dialect == "sqlite":
        path = sqlite_path(url)
        return os.path.exists(path) and os.path.samefile(database.database, path)
    other = open_database(url)
    try:
        return _postgres_identity(database) == _postgres_identity(other)
    finally:
        other.close()
        if hasattr(other, "close_all"):  # a pool keeps the connection it was handed back
            other.close_all()


def _postgres_identity(database: peewee.Database) -> tuple:
    """(the server's start time, the database's oid, the current schema) of a PostgreSQL connection."""
    with DriverErrors(lambda exc: f"cannot tell which database it is: {first_line(exc)}"):
        return tuple(database.execute_sql(POSTGRES_IDENTITY).fetchone())


# The first bytes of a SQLite database file and of its write-ahead log (both byte orders).
SQLITE_HEADERS = (b"SQLite format 3\x00", bytes.fromhex("377f0682"), bytes.fromhex("377f0683"))


def is_file_of(path: str, database: str) -> bool:
    """Whether `path` (resolved) is the SQLite `database`, one of its journals or its lock files."""
    own = os.path.realpath(database)
    lock = path.startswith(own + ".") and path.endswith(".lock")
    return path == own or path.startswith(own + "-") or lock


def is_database_file(path: str) -> bool:
    """Whether `path` is a SQLite database or its write-ahead log (an export must never replace one)."""
    if not os.path.isfile(path):  # a named pipe opened to be read would wait for a writer
        return False
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError:
        return False
    return head.startswith(SQLITE_HEADERS)
