"""`memoric migrate`, `db-migrate` and `init-db` on SQLite and PostgreSQL, in-process and as processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from memoric.cli import main
from memoric.db.store import MemoryStore
from memoric.migrate import HISTORY_TABLE, LOCK_NAME, Migrations
from tests.helpers.chain import (
    ADD_IMPORTANCE,
    FIFTH,
    FIRST,
    HEAD,
    SHIPPED,
    applied,
    chain,
    history_names,
    schema,
    tables,
)
from tests.helpers.cli_process import CLI, WAITING, run_twice_at_once
from tests.helpers.dialects import one_line_error

REPO = Path(__file__).resolve().parent.parent
APPLIED_AT = re.compile(r"'\d{4}-\d\d-\d\d[ T][\d:.+]+'")  # a history row's time, as a preview shows it


@pytest.fixture
def check(dsn):
    """A store on the same database, to see what the commands did."""
    store = MemoryStore(dsn)
    yield store
    store.close()


# --- upgrade, downgrade, inspect ------------------------------------------------------------


def test_upgrade_then_inspect_then_downgrade(cli, check):
    result = cli("migrate", "pending")
    assert (result.exit_code, result.stdout) == (0, "".join(f"{name}\n" for name in SHIPPED))
    assert cli("migrate", "current").stdout == "base\n"

    result = cli("migrate", "upgrade")
    assert result.exit_code == 0, result.output
    assert applied(SHIPPED) in result.stdout
    assert f"is at {HEAD} (head)" in result.stdout
    assert cli("migrate", "current").stdout == f"{HEAD} (head)\n"
    history = cli("migrate", "history").stdout.splitlines()
    assert [line.split("  ")[:2] for line in history] == [["applied", name] for name in SHIPPED]
    assert all(line.endswith(" UTC") for line in history)
    assert "Nothing to apply" in cli("migrate", "upgrade").stdout
    assert "at head" in cli("migrate", "pending").stderr

    result = cli("migrate", "downgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Rolled back {HEAD}\n")
    assert f"is at {SHIPPED[-2]}\n" in result.stdout
    assert cli("migrate", "pending").stdout == f"{HEAD}\n"
    result = cli("migrate", "downgrade", "base")
    assert result.exit_code == 0, result.output
    rolled_back = "".join(f"Rolled back {name}\n" for name in reversed(SHIPPED[:-1]))
    assert result.stdout.startswith(rolled_back)
    assert "is at base" in result.stdout
    assert tables(check) == {HISTORY_TABLE}


def test_db_migrate_is_the_same_group(cli):
    assert cli("db-migrate", "upgrade").exit_code == 0
    assert cli("db-migrate", "current").stdout == f"{HEAD} (head)\n"


def test_targets_through_the_cli(cli, tmp_path, check):
    directory = str(chain(tmp_path / "chain", **{"090_importance": ADD_IMPORTANCE}))
    assert "Applied 001" in cli("migrate", "upgrade", "+1", "--dir", directory).stdout
    result = cli("migrate", "upgrade", "090_importance", "--dir", directory)
    assert applied([*SHIPPED[1:], "090_importance"]) in result.stdout
    assert "Rolled back 090_importance" in cli("migrate", "downgrade", "-1", "--dir", directory).stdout
    result = cli("migrate", "downgrade", "base", "--dir", directory)
    assert "".join(f"Rolled back {name}\n" for name in reversed(SHIPPED)) in result.stdout
    assert cli("migrate", "upgrade", "001", "--dir", directory).exit_code == 0
    assert history_names(check) == [FIRST]


def test_unknown_target_is_one_line_and_exit_1(cli, check):
    error = one_line_error(cli("migrate", "upgrade", "007_nope"))
    assert "unknown migration target '007_nope'" in error and HEAD in error
    one_line_error(cli("migrate", "downgrade", "+1"))
    assert Migrations(check).current() is None


def test_sql_prints_the_statements_and_changes_nothing(cli, dsn, check):
    result = cli("migrate", "upgrade", "--sql")
    assert result.exit_code == 0, result.output
    assert 'CREATE TABLE IF NOT EXISTS "memories"' in result.stdout
    assert ("USING GIN" in result.stdout) is dsn.startswith("postgres")
    assert "nothing was changed" in result.stderr
    assert tables(check) == set()

    cli("migrate", "upgrade")
    result = cli("migrate", "downgrade", "base", "--sql")
    assert 'DROP TABLE IF EXISTS "memories";' in result.stdout
    assert cli("migrate", "current").stdout == f"{HEAD} (head)\n"
    assert "memories" in tables(check)


def test_sql_redirected_is_the_sql_that_would_run_escape_sequences_in_values_and_all(cli, check):
    """Before, click stripped the escape sequences of a redirected preview, values included: the
    file said `'u'` where the run writes `'u\x1b[31m'`, and applying it posted another user."""
    Migrations(check).upgrade()
    check.insert_memory(user_id="u\x1b[31m", namespace="n\x1b[1m", content="a memory")
    Migrations(check).downgrade(FIFTH, confirm_data_loss=True)
    result = cli("migrate", "upgrade", "--sql")
    assert result.exit_code == 0, result.output
    assert "'u\x1b[31m', 'n\x1b[1m'" in result.stdout


def test_the_commands_work_whatever_the_locale_and_the_encoding_of_their_output(dsn, tmp_path):
    """Under the C locale every command failed: peewee-migrate reads migration files in the
    locale's encoding, and 009 was not ASCII. With a latin-1 stdout (cp1252 is what Windows gives
    a redirect) an export stopped midway with a traceback at the first character it lacks."""
    store = MemoryStore(dsn)
    Migrations(store).upgrade()
    store.insert_memory(user_id="ada", content="zero\u200bwidth, Ω, 🙂")
    store.close()
    c_locale = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    for env, args in [(c_locale, ["migrate", "current"]), ({"PYTHONIOENCODING": "latin-1"}, ["export"])]:
        result = subprocess.run(
            [sys.executable, "-c", CLI, "--dsn", dsn, *args],
            env={**os.environ, **env},
            capture_output=True,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    lines = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert [r["content"] for r in lines if r["type"] == "memory"] == ["zero\u200bwidth, Ω, 🙂"]


WRITING_NOTHING = [
    (["current"], 0, "base\n"),
    (["history"], 0, "".join(f"pending  {name}\n" for name in SHIPPED)),
    (["pending"], 0, "".join(f"{name}\n" for name in SHIPPED)),
    (["upgrade", "nosuch"], 1, "Error: unknown migration target 'nosuch'"),
    (["downgrade"], 1, "Error: cannot downgrade -1: only 0 migration(s) applied"),
    (["downgrade", "base"], 0, "Nothing to roll back\n"),
    (["stamp", "head"], 1, f"Error: cannot stamp {FIRST}: tables memories, memory_clusters do not exist"),
    (["stamp", "base"], 0, "is at base (no migration applied)\n"),
    (["upgrade", "--sql"], 0, 'CREATE TABLE IF NOT EXISTS "memories"'),
    (["upgrade", "nosuch", "--sql"], 1, "Error: unknown migration target 'nosuch'"),
    (["downgrade", "--sql"], 1, "Error: cannot downgrade -1: only 0 migration(s) applied"),
]


@pytest.mark.parametrize(
    ("args", "exit_code", "shown"), WRITING_NOTHING, ids=[" ".join(args) for args, _, _ in WRITING_NOTHING]
)
def test_a_migrate_command_that_writes_nothing_creates_nothing(cli, check, tmp_path, args, exit_code, shown):
    result = cli("migrate", *args)
    assert result.exit_code == exit_code, result.output
    assert shown in result.output
    if check.is_sqlite:
        assert list(tmp_path.iterdir()) == [], "no database file, no lock file"
    else:
        assert tables(check) == set()


def test_the_preview_of_a_sqlite_file_not_there_yet_is_the_preview_of_an_empty_database(new_dsn, tmp_path):
    absent, empty = new_dsn(), new_dsn()
    Migrations(MemoryStore(empty)).current()  # the file exists now, empty
    previews = [Migrations(MemoryStore(dsn)).sql("upgrade", "head") for dsn in (absent, empty)]
    absent_sql, empty_sql = ([APPLIED_AT.sub("'NOW'", statement) for statement in sql] for sql in previews)
    assert absent_sql == empty_sql and len(absent_sql) > len(SHIPPED)


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_the_help_of_sql_says_it_is_a_real_run_that_is_rolled_back(direction):
    shown = " ".join(CliRunner().invoke(main, ["migrate", direction, "--help"]).stdout.split())
    for said in (
        "the migrations run in a transaction that is rolled back",
        "it needs the live database",
        "holds the migration lock",
        "on PostgreSQL holds table locks until the rollback",
    ):
        assert said in shown


def test_stamp_moves_the_version_without_ddl(cli, check):
    cli("migrate", "upgrade")
    built = tables(check)
    assert cli("migrate", "stamp", "base").exit_code == 0
    assert history_names(check) == []
    result = cli("migrate", "stamp", "head")
    assert result.exit_code == 0, result.output
    assert f"is at {HEAD} (head)" in result.stdout
    assert tables(check) == built


def test_adopt_an_existing_database_with_stamp(cli, check):
    check.create_schema()
    memory_id = check.insert_memory(user_id="ada", content="kept")
    assert cli("migrate", "stamp", "head").exit_code == 0
    assert "Nothing to apply" in cli("migrate", "upgrade").stdout
    assert check.get_memory(memory_id)["content"] == "kept"


# --- init-db --------------------------------------------------------------------------------


def test_init_db_then_upgrade_is_a_no_op(cli, check):
    result = cli("init-db")
    assert result.exit_code == 0, result.output
    assert "from the models" in result.stdout
    assert {"memories", "memory_clusters"} <= tables(check)
    assert history_names(check) == SHIPPED
    assert "Nothing to apply" in cli("migrate", "upgrade").stdout


def test_init_db_migrate_records_the_history(cli, check):
    result = cli("init-db", "--migrate")
    assert result.exit_code == 0, result.output
    assert applied(SHIPPED) in result.stdout
    history = Migrations(check).history()
    assert [(row["name"], row["applied"]) for row in history] == [(name, True) for name in SHIPPED]


def test_init_db_on_a_database_at_head_says_it_was_already_there(cli, check):
    assert cli("init-db").exit_code == 0
    memory_id = check.insert_memory(user_id="ada", content="kept")
    for command in (["init-db"], ["init-db", "--migrate"]):
        result = cli(*command)
        assert result.exit_code == 0, result.output
        assert "Created" not in result.stdout and "Applied" not in result.stdout
        assert "the schema was already at head" in result.stdout
        assert f"is at {HEAD} (head)" in result.stdout
    assert Migrations(check).init_db() is False
    assert check.get_memory(memory_id)["content"] == "kept"
    assert history_names(check) == SHIPPED


def test_init_db_builds_the_tables_a_history_at_head_records_but_the_database_lacks(cli, check):
    assert cli("migrate", "upgrade").exit_code == 0
    check.drop_schema()
    result = cli("init-db")
    assert result.exit_code == 0, result.output
    assert "Created the schema from the models" in result.stdout
    assert {"memories", "memory_clusters"} <= tables(check)


# --- revision -------------------------------------------------------------------------------


def test_revision_writes_a_numbered_file_from_the_template_into_the_app_chain(cli, tmp_path):
    directory = tmp_path / "app"
    result = cli("--app-dir", str(directory), "migrate", "revision", "-m", "Add importance")
    assert result.exit_code == 0, result.output
    path = directory / "001_add_importance.py"
    assert f"Created {path}" in result.stdout
    source = path.read_text()
    compile(source, str(path), "exec")
    assert "import peewee as pw" in source
    assert "def migrate(migrator, database, *, fake=False):" in source
    assert "def rollback(migrator, database, *, fake=False):" in source
    assert cli("--app-dir", str(directory), "migrate", "upgrade").exit_code == 0


def test_revision_auto_writes_a_draft_to_review(cli, tmp_path):
    """The app chain adds `importance`, which memoric's models lack: the draft removes it."""
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "001_importance.py").write_text(ADD_IMPORTANCE, encoding="utf-8")
    result = cli("--app-dir", str(directory), "migrate", "revision", "--auto", "-m", "sync")
    assert result.exit_code == 0, result.output
    assert "review" in result.stdout
    source = (directory / "002_sync.py").read_text()
    compile(source, "002_sync.py", "exec")
    assert "remove_fields('memories', 'importance')" in source
    (directory / "002_sync.py").unlink()
    (directory / "001_importance.py").unlink()
    error = one_line_error(cli("--app-dir", str(directory), "migrate", "revision", "--auto", "-m", "again"))
    assert "no changes" in error


def test_revision_needs_a_message(cli):
    assert cli("migrate", "revision").exit_code == 2


# --- errors, options, DSN resolution --------------------------------------------------------


def test_usage_errors_exit_2(cli):
    assert cli("migrate", "upgrade", "--lock-timeout", "soon").exit_code == 2
    assert cli("migrate", "sideways").exit_code == 2
    assert cli("migrate", "upgrade", "--sqll").exit_code == 2
    assert cli("migrate", "stamp").exit_code == 2


def test_the_group_run_without_a_command_shows_its_help_line_by_line(cli):
    """Its help is the message of a usage error, which escaping for the terminal had joined into
    one line of literal \\n."""
    result = cli("migrate")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Usage: ") and "Commands:" in lines and "\\n" not in result.stderr


def test_passwords_are_masked(monkeypatch):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    url = "postgresql://agent:s3cret-pw@127.0.0.1:1/memoric"
    result = CliRunner().invoke(main, ["--dsn", url, "migrate", "current"])
    error = one_line_error(result)
    assert "s3cret-pw" not in result.output
    assert "agent:***@" in error


def test_dsn_from_environment_and_config(dsn, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMORIC_DATABASE_URL", dsn)
    assert "Applied" in CliRunner().invoke(main, ["migrate", "upgrade"]).stdout
    monkeypatch.delenv("MEMORIC_DATABASE_URL")
    config = tmp_path / "memoric.yaml"
    config.write_text(f"database: {{dsn: '{dsn}'}}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "migrate", "current"])
    assert result.stdout == f"{HEAD} (head)\n"
    error = one_line_error(
        CliRunner().invoke(main, ["--config", str(tmp_path / "missing.yaml"), "migrate", "current"])
    )
    assert "missing.yaml" in error


def test_lock_timeout_reports_waiting_then_fails(cli, check):
    with check.lock(LOCK_NAME):
        result = cli("migrate", "upgrade", "--lock-timeout", "0.2")
    assert WAITING in result.stderr
    assert "lock" in one_line_error(result)
    assert Migrations(check).current() is None


# --- processes ------------------------------------------------------------------------------


def test_two_processes_upgrading_at_once_apply_each_migration_once(dsn, tmp_path, check):
    directory = str(chain(tmp_path / "chain", **{"090_importance": ADD_IMPORTANCE}))
    stdouts = run_twice_at_once(check, dsn, "migrate", "upgrade", "--dir", directory, cwd=tmp_path)
    assert applied([*SHIPPED, "090_importance"]) in stdouts[0]
    assert "Nothing to apply" in stdouts[1]
    assert history_names(check) == [*SHIPPED, "090_importance"]


# --- the installed package ------------------------------------------------------------------


def run(command: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `command` outside this checkout: no PYTHONPATH, no MEMORIC_DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEMORIC_DATABASE_URL")}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def fresh_venv_on_these_dependencies(venv: Path, cwd: Path) -> tuple[Path, Path]:
    """A new venv that sees this interpreter's installed packages (peewee, click...), not memoric.

    `--system-site-packages` would give the base interpreter's packages, which inside a virtualenv
    (tox, a user's venv) lack memoric's dependencies: a `.pth` file names this interpreter's
    site-packages directories instead, as plain paths (their own `.pth` files, such as an editable
    install of memoric, are not processed).
    """
    run([sys.executable, "-m", "venv", str(venv)], cwd=cwd)
    python = venv / "bin" / "python"
    site_packages = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd)
    outer = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site_packages.stdout.strip()) / "outer_site_packages.pth").write_text("\n".join(outer) + "\n")
    return python, venv / "bin" / "memoric"


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_upgrades_and_downgrades_from_another_directory(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("memoric", "migrations"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(dist)], cwd=tmp_path)
    wheel = next(dist.glob("memoric-*.whl"))
    venv = tmp_path / "venv"
    python, memoric = fresh_venv_on_these_dependencies(venv, tmp_path)
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    located = run(
        [python, "-c", "import memoric, memoric_migrations as m; print(memoric.__file__, m.__file__)"],
        elsewhere,
    )
    assert all(path.startswith(str(venv)) for path in located.stdout.split())
    upgraded = run([memoric, "--dsn", "sqlite:///x.db", "migrate", "upgrade"], elsewhere).stdout
    assert applied(SHIPPED) in upgraded
    assert (elsewhere / "x.db").exists()
    assert (
        f"Rolled back {HEAD}"
        in run([memoric, "--dsn", "sqlite:///x.db", "migrate", "downgrade"], elsewhere).stdout
    )
    assert (
        f"Applied {HEAD}" in run([memoric, "--dsn", "sqlite:///x.db", "migrate", "upgrade"], elsewhere).stdout
    )


def test_stamp_over_missing_tables_is_refused_in_one_line(cli, check):
    error = one_line_error(cli("migrate", "stamp", "head"))
    assert error.startswith(f"Error: cannot stamp {FIRST}: tables memories, memory_clusters do not exist")
    assert "run `memoric migrate upgrade` to build them; nothing was changed" in error
    assert tables(check) == set()
    assert cli("migrate", "current").stdout == "base\n"


def test_an_upgrade_over_a_history_stamped_below_the_schema_says_so(cli, check, dialect):
    """A database at head stamped back to 001: on PostgreSQL the upgrade's comparison of the tables
    001 lacks failed on an index name alone, which did not say the stamp was the cause. (SQLite's
    migrations run again over what is there and end where they were.)"""
    assert cli("migrate", "upgrade").exit_code == 0
    assert cli("migrate", "stamp", FIRST).exit_code == 0
    before = schema(check)
    result = cli("migrate", "upgrade")
    if dialect == "postgresql":
        assert "the history was stamped at a version the schema is not at" in one_line_error(result)
        assert cli("migrate", "current").stdout == f"{FIRST}\n"
    else:
        assert result.exit_code == 0 and cli("migrate", "current").stdout.endswith("(head)\n")
    assert schema(check) == before
