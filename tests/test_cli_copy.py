"""`memoric copy` between SQLite and PostgreSQL: identical both ways, passwords masked, the same
database refused under any spelling, schemas of one database, progress bars on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from memoric.db.urls import sqlite_path
from memoric.errors import ConfigError
from tests.helpers.chain import HEAD, SHIPPED, built, table_migration
from tests.helpers.cli_process import CLI
from tests.helpers.cli_runs import invoke, ok
from tests.helpers.dialects import one_line_error, requires_postgres, with_search_path
from tests.helpers.transfer_data import assert_identical, fill, snapshot


@requires_postgres
def test_copy_sqlite_to_postgresql_and_back_is_identical(tmp_path, new_postgres_url, monkeypatch):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    origin = built(f"sqlite:///{tmp_path / 'origin.db'}")
    fill(origin.db)
    middle = new_postgres_url()
    back = f"sqlite:///{tmp_path / 'back.db'}"

    there = ok(invoke("copy", "--from", origin.db.dsn, "--to", middle))
    assert there.stdout.startswith("Copied 2497 memories and 2 clusters from SQLite file ")
    ok(invoke("copy", "--from", middle, "--to", back))
    for dsn in (middle, back):
        copied = Memoric(dsn)
        assert copied.migrations.current() == HEAD
        assert [row["name"] for row in copied.migrations.history()] == SHIPPED
        assert_identical(snapshot(copied.db), snapshot(origin.db))
    exports = [ok(invoke("--dsn", dsn, "export")).stdout.splitlines()[1:] for dsn in (origin.db.dsn, back)]
    # Equal records; only the key order inside metadata differs (JSONB stores keys sorted).
    assert [json.loads(line) for line in exports[0]] == [json.loads(line) for line in exports[1]]

    again = ok(invoke("copy", "--from", origin.db.dsn, "--to", middle))
    assert "Copied 0 memories and 0 clusters" in again.stdout and "2499 already there" in again.stdout


@requires_postgres
def test_copy_masks_the_password_in_everything_it_prints(tmp_path, new_postgres_url):
    origin = built(f"sqlite:///{tmp_path / 'origin.db'}")
    origin.save("ada", "a memory")
    target = new_postgres_url().replace("://postgres:@", "://postgres:s3cret@", 1)
    assert "s3cret" in target
    result = ok(invoke("copy", "--from", origin.db.dsn, "--to", target))
    assert "postgres:***@" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    failed = invoke("copy", "--from", target, "--to", target.replace("/memoric_test", "/missing_db", 1))
    assert "s3cret" not in one_line_error(failed)


def other_spellings(dsn: str, monkeypatch) -> list[str]:
    """Other URLs of the database at `dsn`: the same SQLite file, or the same server's database.

    SQLite: relative (from the file's directory, made the working directory), `./`, `..`, a
    double slash, a symbolic and a hard link, `+pool`, the scheme's case and a parameter.
    PostgreSQL: the scheme's other names, `+pool`, a parameter, and the host spelt otherwise.
    """
    if dsn.startswith("sqlite"):
        path = Path(sqlite_path(dsn))
        monkeypatch.chdir(path.parent)
        (path.parent / "sub").mkdir()
        (path.parent / "link.db").symlink_to(path)
        os.link(path, path.parent / "hard.db")
        return [
            f"sqlite:///{path.name}",
            f"sqlite:///./{path.name}",
            f"sqlite:///sub/../{path.name}",
            f"sqlite:///{path.parent}//{path.name}",
            "sqlite:///link.db",
            f"sqlite:///{path.parent / 'link.db'}",
            "sqlite:///hard.db",
            f"sqlite+pool:///{path}",
            f"SQLite:///{path}?timeout=5",
        ]
    parts = urlsplit(dsn)
    joined = parts.query + "&" if parts.query else ""
    spellings = [
        urlunsplit(parts._replace(scheme=scheme)) for scheme in ("postgres", "postgresext", "postgresql+pool")
    ]
    spellings.append(urlunsplit(parts._replace(query=joined + "connect_timeout=10")))
    if "host=/" in parts.query:  # a Unix socket directory, spelt with a trailing slash
        spellings.append(urlunsplit(parts._replace(query=parts.query.replace("host=/", "host=//", 1) + "/")))
    aliases = {"localhost": "127.0.0.1", "127.0.0.1": "localhost"}
    if parts.hostname in aliases:
        spellings.append(dsn.replace(f"@{parts.hostname}", f"@{aliases[parts.hostname]}", 1))
    return spellings


def test_copy_refuses_the_same_database_under_any_spelling(dsn, monkeypatch):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    memoric = built(dsn)
    memoric.save("ada", "only once")
    memoric.close()  # SQLite cannot open a WAL database under a second name while it is open
    spellings = other_spellings(dsn, monkeypatch)
    for other in spellings:
        result = invoke("copy", "--from", dsn, "--to", other)
        assert "the source and the target are the same database" in one_line_error(result), other
    if dsn.startswith("sqlite"):  # the target was never opened: no journal under a second name
        assert not [name for name in os.listdir() if name.startswith(("link.db-", "hard.db-"))]
    for other in spellings:
        result = invoke("copy", "--from", other, "--to", dsn)
        assert "the source and the target are the same database" in one_line_error(result), other
    assert MemoryStore(dsn).count_memories() == 1


# SQLite URLs naming a file SQLite keeps beside a database (its -wal file is deleted when the
# source's last connection closes), one of memoric's lock files, or an in-memory database.
NOT_A_DATABASE = [
    "agent.db-wal",
    "agent.db-shm",
    "agent.db-journal",
    "agent.db.migrations.lock",
    "agent.db.policies.lock",
    "file::memory:?uri=true",
    "file::memory:",
    "file:agent.db?uri=true",
]


@pytest.mark.parametrize("name", NOT_A_DATABASE)
def test_copy_and_import_refuse_a_sqlite_url_that_keeps_nothing(name, tmp_path, monkeypatch):
    """Before, `copy --to sqlite:///agent.db-wal` (or an in-memory URI) reported "Copied 24
    memories" and kept none, and `file:agent.db?uri=true` opened agent.db under another name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    agent = built("sqlite:///agent.db")
    agent.save("ada", "kept")
    agent.run_policies()
    ok(invoke("--dsn", "sqlite:///agent.db", "export", "agent.jsonl"))
    before = {path.name: path.stat().st_size for path in tmp_path.iterdir()}
    for args in (
        ["copy", "--from", "sqlite:///agent.db", "--to", f"sqlite:///{name}"],
        ["--dsn", f"sqlite:///{name}", "import", "agent.jsonl"],
    ):
        assert "invalid database URL" in one_line_error(invoke(*args)), args
    assert not set(os.listdir()) - set(before), "a refused URL created a file"
    assert [memory["content"] for memory in Memoric("sqlite:///agent.db").db.get_memories()] == ["kept"]


@requires_postgres
def test_copy_into_another_schema_of_the_same_database_works_and_the_same_schema_is_refused(
    new_postgres_url, monkeypatch
):
    """A URL with another search path is another store (its tables are in another schema)."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    dsn = new_postgres_url()
    origin = built(dsn)
    origin.save("ada", "first")
    origin.save("ada", "second")
    for name in ("b", "c"):
        origin.db.database.execute_sql(f"CREATE SCHEMA {name}")

    for name, search_path in (("b", "b"), ("c", "c")):  # memoric builds in the first schema
        copied = ok(invoke("copy", "--from", dsn, "--to", with_search_path(dsn, search_path)))
        assert copied.stdout.startswith("Copied 2 memories")
        rows = origin.db.database.execute_sql(f"SELECT content FROM {name}.memories ORDER BY id")
        assert rows.fetchall() == [("first",), ("second",)]

    for same, spelt in [
        (dsn, "PUBLIC"),
        (dsn, "nosuch,public"),
        (dsn, '"$user",public'),
        (with_search_path(dsn, "b"), "B"),
        (with_search_path(dsn, "b"), "nosuch,b,public"),
    ]:
        result = invoke("copy", "--from", same, "--to", with_search_path(dsn, spelt))
        assert "the source and the target are the same database" in one_line_error(result), spelt
    assert origin.db.count_memories() == 2


@requires_postgres
def test_a_store_hidden_by_an_empty_schema_first_on_the_search_path_is_never_doubled(
    new_postgres_url, monkeypatch
):
    """PostgreSQL's default search path is `"$user", public`: once a DBA creates a schema named
    after the role, memoric would find no store in it and start a second, empty one there."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    dsn = new_postgres_url()
    built(dsn).save("ada", "kept in public")
    MemoryStore(dsn).database.execute_sql("CREATE SCHEMA agent")
    shadowed = with_search_path(dsn, "agent,public")
    said = "schema 'public', later on the search path, does: memoric would start a second, empty store"
    for args in (["stats"], ["migrate", "upgrade"], ["init-db"], ["recall", "--user", "ada"]):
        assert said in one_line_error(invoke("--dsn", shadowed, *args)), args
    with pytest.raises(ConfigError, match=said):
        Memoric(shadowed).save("ada", "lost in a second store?")
    assert MemoryStore(shadowed).database.get_tables() == [], "nothing built in the hiding schema"
    asked_for = Memoric(with_search_path(dsn, "agent"))  # a new store there, named alone
    asked_for.save("ada", "in the new store")
    assert asked_for.stats()["total"] == 1 and MemoryStore(dsn).count_memories() == 1


def run_on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; (exit status, what it showed)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=terminal, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the terminal closed when the process exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return process.wait(), shown.decode()


def test_copy_shows_a_progress_bar_only_on_a_terminal(source, new_dsn):
    status, shown = run_on_a_terminal("copy", "--from", source.db.dsn, "--to", new_dsn())
    assert status == 0, shown
    assert "Copying" in shown and "100%" in shown
    assert "Copied 2497 memories and 2 clusters" in shown
    piped = ok(invoke("copy", "--from", source.db.dsn, "--to", new_dsn()))
    assert "Copying" not in piped.output + piped.stderr


def test_import_shows_a_progress_bar_on_a_terminal(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    status, shown = run_on_a_terminal("--dsn", new_dsn(), "import", str(path))
    assert status == 0, shown
    assert "Importing" in shown and "100%" in shown
    assert "Imported 2497 memories and 2 clusters" in shown


def test_a_source_behind_its_application_chain_is_named_with_the_upgrade_that_fits(
    new_dsn, tmp_path, monkeypatch
):
    """The hint to upgrade the source carries the application's directory the copy was given."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    monkeypatch.delenv("MEMORIC_APP_MIGRATIONS", raising=False)
    source = built(new_dsn())
    app = tmp_path / "app dir"
    app.mkdir()
    (app / "001_notes.py").write_text(table_migration("notes"), encoding="utf-8")
    target = new_dsn()
    error = one_line_error(invoke("--app-dir", str(app), "copy", "--from", source.store.dsn, "--to", target))
    assert "(app:001_notes pending)" in error
    assert error.endswith(f"run `memoric --dsn SOURCE --app-dir '{app}' migrate upgrade` first")
    assert Memoric(target).migrations.current() is None
