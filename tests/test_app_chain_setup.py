"""An application's own migration chain: `revision` writes only into it, and where its directory
comes from (argument > environment > config file), on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.errors import MigrationError
from memoric.migrate import APP_HISTORY_TABLE, Migrations, default_migrate_dir
from tests.helpers.app_chain import (
    MESSAGE,
    SENTIMENT,
    SENTIMENT_FILE,
    app_chain,
    app_history,
    both_chains,
    clear_environment,
    shipped_listing,
)
from tests.helpers.chain import (
    chain,
    columns,
    tables,
)
from tests.helpers.dialects import one_line_error


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    clear_environment(monkeypatch)


@pytest.fixture
def both(store, tmp_path) -> Migrations:
    return both_chains(store, tmp_path)


# --- revision writes only into the application's chain -------------------------------------------------


def test_revision_without_an_app_chain_is_refused_and_says_how_to_configure_one(cli, store):
    before = shipped_listing()
    with pytest.raises(MigrationError, match="writes only into the application's own chain") as refused:
        Migrations(store).create(MESSAGE)
    for way in (
        "migrations: {app_dir: DIRECTORY}",
        "MEMORIC_APP_MIGRATIONS=DIRECTORY",
        "--app-dir DIRECTORY",
    ):
        assert way in str(refused.value)
    error = one_line_error(cli("migrate", "revision", "-m", MESSAGE))
    assert "no application migrations directory is configured" in error
    assert shipped_listing() == before


@pytest.mark.parametrize(
    "where",
    [
        "venv/lib/python3.11/site-packages/agent/migrations",
        "usr/lib/python3/dist-packages/agent/migrations",
    ],
)
def test_revision_never_writes_inside_an_installed_package(store, tmp_path, where):
    directory = tmp_path / where
    with pytest.raises(MigrationError, match="inside an installed package"):
        Migrations(store, app_dir=directory).create(MESSAGE)
    assert not directory.exists()


@pytest.mark.parametrize("inside", [False, True])
def test_memorics_own_chain_is_no_app_chain(store, tmp_path, inside):
    directory = default_migrate_dir() / "app" if inside else default_migrate_dir()
    before = shipped_listing()
    for call in (lambda m: m.create(MESSAGE), lambda m: m.upgrade(), lambda m: m.pending()):
        with pytest.raises(MigrationError, match="is memoric's own chain"):
            call(Migrations(store, app_dir=directory))
    replaced = chain(tmp_path / "memoric")
    with pytest.raises(MigrationError, match="is memoric's own chain"):
        Migrations(store, migrate_dir=replaced, app_dir=replaced).upgrade()
    assert shipped_listing() == before


def test_a_configured_app_directory_that_does_not_exist_is_an_error(store, tmp_path):
    with pytest.raises(MigrationError, match=r"application migrations directory .*nowhere' does not exist"):
        Migrations(store, app_dir=tmp_path / "nowhere").upgrade()
    assert tables(store) == set()


def test_an_app_directory_that_is_a_file_is_named_as_one(store, tmp_path):
    afile = tmp_path / "not-a-directory"
    afile.write_text("kept", encoding="utf-8")
    for call in (lambda m: m.create(MESSAGE), lambda m: m.upgrade()):
        with pytest.raises(MigrationError, match=r"not-a-directory' is not a directory"):
            call(Migrations(store, app_dir=afile))
    assert afile.read_text(encoding="utf-8") == "kept"


# --- configuration: argument > environment > config file ------------------------------------------


def test_the_facade_builds_an_empty_database_through_both_chains(dsn, tmp_path):
    app = app_chain(tmp_path / "app", **{SENTIMENT: SENTIMENT_FILE})
    with Memoric(dsn=dsn, app_dir=app) as memoric:
        memoric.save("ada", "likes tea")
        assert memoric.migrations.current("app") == SENTIMENT
        assert "sentiment" in {column[0] for column in columns(memoric.store, "memories")}


def test_the_facade_refuses_a_database_behind_the_app_chain_unless_auto_migrate(dsn, tmp_path):
    app = app_chain(tmp_path / "app", **{SENTIMENT: SENTIMENT_FILE})
    with Memoric(dsn=dsn) as memoric:
        memoric.save("ada", "likes tea")
    with (
        Memoric(dsn=dsn, app_dir=app) as memoric,
        pytest.raises(
            MigrationError,
            match=rf"1 pending migration\(s\) \(app:{SENTIMENT}\); run `memoric migrate upgrade`",
        ),
    ):
        memoric.retrieve("ada")
    with Memoric(dsn=dsn, app_dir=app, auto_migrate=True) as memoric:
        assert memoric.retrieve("ada")[0]["content"] == "likes tea"
        assert memoric.migrations.current("app") == SENTIMENT


def test_the_app_directory_comes_from_argument_environment_or_config(dsn, tmp_path, monkeypatch):
    """Three chains of different names tell which directory each way chose."""
    for name in ("flag", "environment", "config"):
        app_chain(tmp_path / name, **{f"001_{name}": SENTIMENT_FILE})
    config = tmp_path / "memoric.yaml"
    config.write_text(f"database: {{dsn: '{dsn}'}}\nmigrations: {{app_dir: config}}\n")
    monkeypatch.chdir(tmp_path / "flag")

    def pending_app(*args: str) -> list[str]:
        result = CliRunner().invoke(main, ["--config", str(config), *args, "migrate", "pending"])
        assert result.exit_code == 0, result.output
        return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("app ")]

    assert pending_app() == ["001_config"]
    assert Memoric(config_path=config).migrations.pending()[-1] == "app:001_config"
    monkeypatch.setenv("MEMORIC_APP_MIGRATIONS", str(tmp_path / "environment"))
    assert pending_app() == ["001_environment"]
    assert Memoric(config_path=config).migrations.pending()[-1] == "app:001_environment"
    assert pending_app("--app-dir", ".") == ["001_flag"], "relative to the working directory"
    assert Memoric(config_path=config, app_dir=tmp_path / "flag").migrations.pending()[-1] == "app:001_flag"


def test_stamping_the_app_chain_over_its_missing_table_is_refused(both):
    both.upgrade(f"app:{SENTIMENT}")
    with pytest.raises(MigrationError, match=r"cannot stamp app:002_labels: table labels does not exist"):
        both.stamp("head")
    assert app_history(both.store) == [SENTIMENT]


def test_an_app_history_the_app_chain_does_not_have_is_named(both, cli):
    both.upgrade()
    both.store.database.execute_sql(
        f"UPDATE \"{APP_HISTORY_TABLE}\" SET name = '002_gone' WHERE name = '002_labels'"
    )
    message = (
        f"the history table {APP_HISTORY_TABLE} lists migrations the application's chain does not have "
        "(002_gone): it belongs to another application, or the chain was edited"
    )
    for call in (both.upgrade, both.downgrade, lambda: both.current("app")):
        with pytest.raises(MigrationError, match=re.escape(message)):
            call()
    error = one_line_error(cli("--app-dir", str(both.app_dir), "migrate", "upgrade"))
    assert error.startswith(f"Error: {message}")
    assert app_history(both.store) == [SENTIMENT, "002_gone"]
