"""Turn a database URL into a connected peewee Database, with SQLite tuned for concurrent agents.

The Database classes (from `memoric.db.recovery`) recover from a lost connection (a server
restart, a terminated backend, a closed SQLite handle): the call that meets it fails once, the
next one reconnects. Driver errors become `MemoricError` in `memoric.db.driver_errors`.

`+pool` URLs (`postgresql+pool://`, `sqlite+pool://`) give a connection pool: each thread checks a
connection out on first use and back in on `close()`. A thread finding every connection in use
waits up to `timeout` seconds (`?timeout=N` in the URL, default POOL_WAIT_SECONDS) and then fails
with a MemoricError; `?max_connections=N` sizes the pool (peewee's default: 20).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import sqlite3
import stat
from collections.abc import Callable
from urllib.parse import SplitResult, unquote

import peewee
from playhouse import db_url

from memoric import arguments
from memoric.db.driver_errors import first_line
from memoric.db.masking import mask_password
from memoric.db.recovery import Pooled
from memoric.db.recovery_postgres import PooledPostgres, Postgres
from memoric.db.recovery_sqlite import SQLITE_BUSY_SECONDS, PooledSqlite, Sqlite
from memoric.db.url_parts import POOLED_SUFFIX, POSTGRES_SCHEMES, SQLITE_SCHEMES
from memoric.db.urls import (
    UNENCODED,
    URL_EXAMPLES,
    dialect_of,
    file_path,
    invalid_url,
    split_url,
    sqlite_path,
    url_parameters,
)
from memoric.errors import ConfigError

log = logging.getLogger("memoric")

POOL_WAIT_SECONDS = 30

# The journal mode is set where the connection opens (`recovery`): WAL, but not on another
# application's file.
SQLITE_PRAGMAS = {
    "busy_timeout": SQLITE_BUSY_SECONDS * 1000,
    "synchronous": "normal",
    # 64 MiB page cache per connection (SQLite's default is 2 MiB): a filtered read walks an
    # index and fetches rows scattered over the file; at 1M rows this halved those queries.
    "cache_size": -65536,
    # Copy the WAL back into the database every 10,000 pages (~40 MiB) instead of every 1,000:
    # each checkpoint flushes to disk, and a page written many times is copied once. Bulk
    # inserts ran 1.5-1.8x faster; the WAL file is cut back to 64 MiB after a checkpoint.
    "wal_autocheckpoint": 10000,
    "journal_size_limit": 64 * 1024 * 1024,
}
SQLITE_WARNING = (
    "memoric is using SQLite (%s): fine for development/testing only; use PostgreSQL in production"
)
SQLITE_WARNING_ENV = "MEMORIC_SQLITE_WARNING"  # 0, false, no or off: never show the warning
_sqlite_warned: set[str] = set()  # the file warned about: the warning is logged once per process

# What SQLite and memoric keep beside a database file: its write-ahead log, shared-memory index
# and rollback journal, and memoric's cross-process locks (DATABASE.NAME.lock). A database opened
# under one of these names is deleted or overwritten by the database it belongs to.
LOCK_FILE_SUFFIX = ".lock"
SQLITE_COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")  # the files SQLite opens beside a database
COMPANION_SUFFIXES = (*SQLITE_COMPANION_SUFFIXES, LOCK_FILE_SUFFIX)
# SQLite reads a file name beginning with this as a URI (in every build that enables URIs
# globally, whatever the URL says): `file::memory:` is an in-memory database.
SQLITE_URI_PREFIX = "file:"
# A SQLite URL's path is the file name as written (`100%.db`, `a%20b.db`): nothing in it is decoded.
SQLITE_NAME_UNTYPABLE = (
    "a SQLite file name holding one cannot be written in a URL (its path is taken as written, "
    "not percent-decoded): rename the file, or reach it through a link whose name has none"
)


# The tables that mark a database as memoric's: its memories and its migration history.
OWN_TABLES = frozenset({"memories", "migratehistory"})
DATABASE_CLASSES = {
    **dict.fromkeys(SQLITE_SCHEMES, Sqlite),
    **dict.fromkeys(POSTGRES_SCHEMES, Postgres),
    **{scheme + POOLED_SUFFIX: PooledSqlite for scheme in SQLITE_SCHEMES},
    **{scheme + POOLED_SUFFIX: PooledPostgres for scheme in POSTGRES_SCHEMES},
}


def pool_capacity(database: peewee.Database) -> int | None:
    """How many connections a `+pool` database opens at most; None for a plain one or an unbounded pool."""
    return (database._max_connections or None) if isinstance(database, Pooled) else None


def close_idle(database: peewee.Database) -> None:
    """Close the connections a pool keeps open for reuse (a plain database keeps none)."""
    if isinstance(database, Pooled):
        database.close_idle()


def tables_of_file(path: str) -> set[str] | None:
    """The tables of a SQLite file, read through a read-only connection: the store's own would
    switch another application's database (or an empty file) to WAL before anything refused it.
    An empty set for a file that is no database; None when a read-only look cannot tell."""
    uri = f"{pathlib.Path(path).absolute().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {name for (name,) in rows}
    except sqlite3.DatabaseError as exc:
        return set() if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB" else None


def holds_own_tables(path: str) -> bool:
    """Whether a SQLite file holds one of memoric's own tables, or a read-only look cannot tell
    (the store's connection then says why it cannot open it)."""
    tables = tables_of_file(path)
    return tables is None or bool(tables & OWN_TABLES)


def database_exists(url: str) -> bool:
    """False for a SQLite URL whose file is not there; True otherwise (a server says so on connect)."""
    if dialect_of(url) == "sqlite":
        return os.path.isfile(sqlite_path(url))
    return True


def _pool_options(parts: SplitResult, parameters: dict) -> dict:
    """Pools hand a connection to one thread at a time, and wait for one (peewee fails at once)."""
    if not parts.scheme.endswith(POOLED_SUFFIX):
        return {}
    options = {} if "timeout" in parameters else {"timeout": POOL_WAIT_SECONDS}
    if DATABASE_CLASSES[parts.scheme] is PooledSqlite:
        options["check_same_thread"] = False
    return options


def sqlite_warning_wanted(configured: bool = True) -> bool:
    """Whether to show the SQLite warning: `configured` and not silenced by $MEMORIC_SQLITE_WARNING."""
    silenced = os.environ.get(SQLITE_WARNING_ENV, "").strip().lower() in {"0", "false", "no", "off"}
    return configured and not silenced


def warn_about_sqlite(path: str, configured: bool = True) -> None:
    """Log the SQLite warning, once per process, unless it is silenced."""
    if not _sqlite_warned and sqlite_warning_wanted(configured):
        _sqlite_warned.add(path)
        log.warning(SQLITE_WARNING, path)


def open_database(
    url: str, *, warn_sqlite: bool = True, prepare: Callable[[peewee.Database], None] | None = None
) -> peewee.Database:
    """A connected peewee Database for `url`; ConfigError (passwords masked) when it cannot be opened.

    `prepare` sets the Database up before its first connection (`Dialect.prepare`), so that no
    statement runs outside a store call's error handling. On SQLite the development-only
    warning is logged (once per process) unless `warn_sqlite` is False or
    $MEMORIC_SQLITE_WARNING silences it.
    """
    dialect = dialect_of(url)
    parts = split_url(url)  # the one parse of the URL: every piece below is read from `parts`
    _refuse_unreadable(url)
    database = _sqlite_database(url, parts) if dialect == "sqlite" else _postgres_database(url, parts)
    if prepare is not None:
        prepare(database)
    if dialect == "sqlite":
        warn_about_sqlite(mask_password(file_path(parts), url), warn_sqlite)
        if not (os.path.exists(database.database) and holds_own_tables(database.database)):
            return database  # nothing to check yet, nor to change: the file is opened at the first use
    try:
        database.connect(reuse_if_open=True)
    except peewee.ImproperlyConfigured as exc:
        raise ConfigError("PostgreSQL needs its driver, psycopg2: pip install 'memoric[postgres]'") from exc
    except (peewee.DatabaseError, TypeError) as exc:
        raise _url_error(url, f"cannot open database {url}: {first_line(exc)}") from exc
    return database


def _refuse_unreadable(url: str) -> None:
    """ConfigError for a URL with a `#fragment` (a `#` in a SQLite file name cut the name there,
    and another file was opened) or a NUL character anywhere, encoded or not."""
    if "#" in url:
        way = "write it as %23" if dialect_of(url) == "postgresql" else SQLITE_NAME_UNTYPABLE
        raise _url_error(url, f"invalid database URL '{url}': it has a '#', which ends the URL there; {way}")
    if "\0" in unquote(url):
        raise _url_error(url, f"invalid database URL '{url}': it contains a NUL character")


def _refuse_non_utf8(url: str) -> None:
    """ConfigError for a PostgreSQL URL holding text that is not UTF-8: the driver sends the
    connection's settings as UTF-8 (a lone surrogate, a byte of another encoding on a command
    line, failed there), and a percent-encoded byte that is not UTF-8 was read as U+FFFD."""
    try:
        unquote(url, errors="strict").encode("utf-8")
    except UnicodeError:
        raise _url_error(url, f"invalid database URL '{url}': it holds text that is not UTF-8") from None


def _url_error(url: str, message: str) -> ConfigError:
    """A ConfigError about `url` with every secret of it masked, and any text that is not UTF-8
    (a lone surrogate from a command line) written as an escape, so that it can be printed.

    Raise it `from None` after a URL parser's error: that error may quote a piece of the URL.
    """
    masked = mask_password(message, url)
    return ConfigError(masked.encode("utf-8", "backslashreplace").decode("utf-8"))


def _sqlite_database(url: str, parts: SplitResult) -> peewee.Database:
    """The SQLite Database of `url` (split into `parts`); ConfigError naming what is wrong with it."""
    path = file_path(parts)
    if parts.netloc:
        raise _url_error(
            url,
            f"invalid database URL '{url}': a sqlite URL names a file, not a host or a user "
            "(sqlite:///relative.db, sqlite:////absolute/path.db)",
        )
    if not path or path == ":memory:":
        raise _url_error(
            url,
            f"in-memory SQLite ('{url}') is a separate empty database per thread; use a file, "
            "e.g. sqlite:///memoric.db",
        )
    _check_file_name(url, path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise _url_error(url, f"cannot open database {url}: directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK):
        raise _url_error(url, f"cannot open database {url}: directory {directory!r} is not writable")
    _refuse_files_that_are_none(url, path)
    parameters = _parameters(url, parts)
    pragmas = SQLITE_PRAGMAS
    if "timeout" in parameters and not parts.scheme.endswith(POOLED_SUFFIX):  # a pool's is its wait
        pragmas = SQLITE_PRAGMAS | {"busy_timeout": round(parameters["timeout"] * 1000)}
    return _new_database(url, parts, parameters, pragmas=pragmas, lock_type="IMMEDIATE")


def _refuse_files_that_are_none(url: str, path: str) -> None:
    """ConfigError for a database, or a journal SQLite would open beside it, that is there and is
    no regular file (SQLite opening a named pipe waits for a writer for ever, deaf to SIGTERM)."""
    for base in dict.fromkeys((path, os.path.realpath(path))):
        for candidate in (base, *(base + suffix for suffix in SQLITE_COMPANION_SUFFIXES)):
            if os.path.exists(candidate) and not os.path.isfile(candidate):
                kind = _kind_of_file(candidate)
                raise _url_error(url, f"cannot open database {url}: {candidate!r} is {kind}, not a file")


def _kind_of_file(path: str) -> str:
    """What `path`, which is there and no regular file, is: a directory, a named pipe, ..."""
    mode = os.stat(path).st_mode
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket")]
    return next((kind for test, kind in kinds if test(mode)), "a device")


def _check_file_name(url: str, path: str) -> None:
    """ConfigError for a file name SQLite reads as a URI, or one SQLite or memoric keeps beside a
    database (checked as typed and through symbolic links)."""
    problem = arguments.file_name_problem(path)
    if problem:
        raise invalid_url(url, f"its file name is none the system can take ({problem})")
    if path.startswith(SQLITE_URI_PREFIX):
        raise invalid_url(
            url,
            f"SQLite reads a file name beginning with '{SQLITE_URI_PREFIX}' as a URI, which can "
            "name an in-memory database or another file; name the file plainly, e.g. sqlite:///memoric.db",
        )
    for name in (os.path.basename(path), os.path.basename(os.path.realpath(path))):
        suffix = next((suffix for suffix in COMPANION_SUFFIXES if name.lower().endswith(suffix)), None)
        if suffix is not None:
            raise invalid_url(
                url,
                f"{name!r} ends in {suffix!r}, the name of a file SQLite or memoric keeps beside a "
                f"database ({', '.join(COMPANION_SUFFIXES)}), which that database deletes or overwrites",
            )


def _postgres_database(url: str, parts: SplitResult) -> peewee.Database:
    """The PostgreSQL Database of `url`; ConfigError where the URL cannot be read one way only.

    An unencoded `@`, `/`, `?` or `#` in a password splits the URL elsewhere than meant, and
    pieces of the password would then reach the server as a host, port or database name (and
    come back in its error messages): such URLs are refused, and no parser's message is shown.
    """
    if "@" in parts.path or "@" in parts.fragment:
        raise _url_error(url, f"invalid database URL '{url}': {UNENCODED}")
    _refuse_non_utf8(url)
    named = parts._replace(path=unquote(parts.path))  # libpq reads the database name percent-decoded
    try:
        return _new_database(url, parts, _parameters(url, named))
    except (ValueError, RuntimeError, TypeError):
        raise _url_error(
            url, f"invalid database URL '{url}': {UNENCODED}, and the port a number from 1 to 65535"
        ) from None


def _parameters(url: str, parts: SplitResult) -> dict:
    """The connection parameters of a split URL: host, port, user, password and database from
    its parts, read as playhouse.db_url reads them (ValueError for a port that is no number),
    then its query parameters, checked and converted by memoric (`url_parameters`), which
    override them as in libpq (`dbname` names the database)."""
    netloc = parts._replace(query="")
    parameters = db_url.parseresult_to_dict(netloc, unquote_password=True, unquote_user=True)
    if "host" in parameters:
        parameters["host"] = _host(parts)
    given = url_parameters(url, parts)
    if "dbname" in given:
        given["database"] = given.pop("dbname")
    return parameters | given


def _host(parts: SplitResult) -> str:
    """The URL's host as libpq reads it: percent-decoded, its case kept, since a socket directory
    (`postgresql://%2Fvar%2Frun%2FPg/db`) is a path (playhouse lowercases it, encoded)."""
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):  # an IPv6 address, perhaps with a zone (`[fe80::1%25eth0]`)
        address, _, after = host[1:].partition("]")
        if after and not after.startswith(":"):
            raise ValueError("text after an IPv6 address's ']' that is no port")
        return unquote(address)
    return unquote(host.partition(":")[0])


def _new_database(url: str, parts: SplitResult, parameters: dict, **options) -> peewee.Database:
    """The Database of the URL's scheme in memoric's own table (playhouse's is left alone)."""
    if not parameters.get("database"):
        raise _url_error(url, f"invalid database URL '{url}': it has no database name, {URL_EXAMPLES}")
    database_class = DATABASE_CLASSES[parts.scheme]
    return database_class(**parameters, **options, **_pool_options(parts, parameters))
