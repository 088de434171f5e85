"""`memoric export`, `import` and `copy` on both dialects: exact round trips and clear refusals."""

from __future__ import annotations

import json
import os
import pty
import resource
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db import transfer_queries
from memoric.db.store import MemoryStore
from memoric.db.urls import sqlite_path
from memoric.errors import ConfigError, MemoricError
from tests.helpers.chain import HEAD, SHIPPED, THIRD, id_counters, schema, tables
from tests.helpers.cli_process import CLI
from tests.helpers.dialects import one_line_error, requires_postgres
from tests.helpers.transfer_data import assert_identical, fill, snapshot

HEADER = '{"type": "header", "format": "memoric-export", "format_version": 1}\n'


def invoke(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def ok(result):
    assert result.exit_code == 0, result.output + result.stderr
    return result


def built(dsn: str) -> Memoric:
    """A Memoric whose database was built through the migration chain."""
    memoric = Memoric(dsn)
    memoric.ensure_schema()
    return memoric


@pytest.fixture
def source(new_dsn, monkeypatch) -> Memoric:
    """2,497 memories with tricky metadata, id holes and two clusters, built through the chain."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    memoric = built(new_dsn())
    fill(memoric.db)
    yield memoric
    memoric.close()


def test_export_to_a_file_then_import_is_exact_and_idempotent(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    result = ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    assert result.stdout == f"Exported 2497 memories and 2 clusters to {path}\n"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert (header["format"], header["format_version"], header["schema_version"]) == (
        "memoric-export",
        1,
        HEAD,
    )
    assert len(lines) == 1 + 2497 + 2

    target = new_dsn()
    result = ok(invoke("--dsn", target, "import", str(path)))
    assert result.stdout.startswith("Imported 2497 memories and 2 clusters into ")
    check = MemoryStore(target)
    assert_identical(snapshot(check), snapshot(source.db))
    assert Memoric(target).migrations.current() == HEAD

    again = ok(invoke("--dsn", target, "import", str(path)))
    assert "Imported 0 memories and 0 clusters" in again.stdout
    assert "2499 already there, skipped" in again.stdout
    assert_identical(snapshot(check), snapshot(source.db))
    assert check.insert_memory(user_id="new", content="after the import") == 2501


def test_export_of_one_user_to_stdout_then_import_from_stdin(source, new_dsn):
    result = ok(invoke("--dsn", source.db.dsn, "export", "--user", "user1"))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["user_id"] == "user1" and records[0]["schema_version"] == HEAD
    assert {r["user_id"] for r in records[1:]} == {"user1"}
    assert "Exported 832 memories and 1 clusters to -" in result.stderr

    target = new_dsn()
    ok(invoke("--dsn", target, "import", "-", input=result.stdout.encode()))
    imported = MemoryStore(target)
    assert list(transfer_queries.iter_memories(imported)) == list(
        transfer_queries.iter_memories(source.db, user_id="user1")
    )
    assert transfer_queries.all_clusters(imported) == transfer_queries.all_clusters(
        source.db, user_id="user1"
    )


def test_export_to_a_terminal_free_pipe_is_only_json_lines(source):
    result = ok(invoke("--dsn", source.db.dsn, "export", "-"))
    assert all(json.loads(line)["type"] for line in result.stdout.splitlines())


def test_a_newer_export_format_is_refused_and_nothing_is_written(new_dsn, tmp_path):
    path = tmp_path / "future.jsonl"
    path.write_text(
        '{"type": "header", "format": "memoric-export", "format_version": 2}\n'
        '{"type": "memory", "id": 1, "user_id": "ada", "content": "from the future"}\n'
    )
    target = new_dsn()
    error = one_line_error(invoke("--dsn", target, "import", str(path)))
    assert "export format version 2 is newer than this memoric reads (1)" in error
    assert not MemoryStore(target).has_schema(), "a refused file leaves an empty database unbuilt"


def test_a_refused_import_into_a_sqlite_file_not_there_yet_leaves_no_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(HEADER + '{"type": "memory", "id": 1, "user_id": "ada", "content": "x", "tier": "t"}\n')
    target = tmp_path / "new.db"
    error = one_line_error(invoke("--dsn", f"sqlite:///{target}", "import", str(path)))
    assert "line 2: tier must be one of" in error
    assert sorted(tmp_path.iterdir()) == [path], "no database file, no lock file"


def test_one_bad_line_refuses_the_whole_file_before_any_batch(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[2400])
    bad["score"] = 101
    lines[2400] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = new_dsn()
    error = one_line_error(invoke("--dsn", target, "import", str(path)))
    assert "line 2401: score must be from 0 to 100, got 101" in error
    store = MemoryStore(target)
    assert not store.has_schema(), "a refused file leaves an empty database unbuilt"
    store.create_schema()
    assert store.count_memories() == 0


def test_a_refused_file_leaves_a_built_database_as_it_was(source, tmp_path):
    before = snapshot(source.db)
    path = tmp_path / "bad.jsonl"
    path.write_text(HEADER + '{"type": "memory", "id": 999999, "user_id": "ada", "content": ""}\n')
    error = one_line_error(invoke("--dsn", source.db.dsn, "import", str(path)))
    assert "line 2: content must be a non-empty string" in error
    assert snapshot(source.db) == before


def test_an_id_taken_by_another_memory_is_refused_never_dropped(new_dsn, tmp_path):
    target = built(new_dsn())
    target.save("ada", "already here")
    path = tmp_path / "other.jsonl"
    path.write_text(HEADER + '{"type": "memory", "id": 1, "user_id": "bob", "content": "other"}\n')
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert "memory id 1 is already in the target with other data (differing: user_id, content)" in error
    assert [m["content"] for m in target.db.get_memories()] == ["already here"]


def test_a_cluster_listing_another_users_memory_in_the_target_is_refused(new_dsn, tmp_path):
    target = built(new_dsn())
    target.save("demo-ada", "ada's secret")
    before = snapshot(target.db)
    path = tmp_path / "mallory.jsonl"
    path.write_text(
        HEADER
        + '{"type": "memory", "id": 2, "user_id": "mallory", "content": "mine"}\n'
        + '{"type": "cluster", "cluster_id": 5, "user_id": "mallory", "topic": "t", "category": "general", '
        '"memory_ids": [1, 2], "memory_count": 2, "summary": ""}\n'
    )
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert error == (
        "Error: line 3: cluster 5 of user_id 'mallory' lists memory 1, which is neither in this export "
        "nor a memory of that user_id in the target; nothing was written"
    )
    assert_identical(snapshot(target.db), before)


LARGEST = 2**63 - 1


def test_an_import_refused_for_what_the_target_holds_moves_no_id_counter(new_dsn, tmp_path):
    target = built(new_dsn())
    target.save("ada", "already here")
    target.db.upsert_cluster(user_id="ada", topic="t", category="general", memory_ids=[1])
    counters, shape, before = id_counters(target.db), schema(target.db), snapshot(target.db)
    path = tmp_path / "taken.jsonl"
    path.write_text(
        HEADER
        + json.dumps({"type": "memory", "id": LARGEST, "user_id": "ada", "content": "last"})
        + "\n"
        + json.dumps({"type": "cluster", "cluster_id": LARGEST, "user_id": "ada", "topic": "t",
                      "category": "general", "memory_ids": [LARGEST], "memory_count": 1, "summary": ""})
        + "\n"
    )  # fmt: skip
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert f"line 3: cluster {LARGEST} is for user_id, topic and category" in error
    assert (id_counters(target.db), schema(target.db)) == (counters, shape)
    assert_identical(snapshot(target.db), before)
    assert target.save("ada", "saved after") == 2
    ok(invoke("--dsn", target.db.dsn, "migrate", "downgrade", THIRD))


def test_an_import_refused_for_a_memory_no_one_has_leaves_an_empty_database_unbuilt(new_dsn, tmp_path):
    target = new_dsn()
    path = tmp_path / "stranger.jsonl"
    path.write_text(
        HEADER + '{"type": "cluster", "cluster_id": 5, "user_id": "ada", "topic": "t", '
        '"category": "general", "memory_ids": [7], "memory_count": 1, "summary": ""}\n'
    )
    error = one_line_error(invoke("--dsn", target, "import", str(path)))
    assert error == (
        "Error: line 2: cluster 5 of user_id 'ada' lists memory 7, which is neither in this export nor "
        "a memory of that user_id in the target; nothing was written"
    )
    if target.startswith("sqlite"):
        assert sorted(tmp_path.iterdir()) == [path], "no database file, no lock file"
    else:
        assert (tables(MemoryStore(target)), id_counters(MemoryStore(target))) == (set(), {})


def test_a_failed_export_leaves_no_file_and_an_old_file_untouched(source, tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    path = exports / "keep.jsonl"
    path.write_text("the previous export\n")
    one_line_error(invoke("--dsn", source.db.dsn, "export", "--user", "", str(path)))
    assert path.read_text() == "the previous export\n"
    assert os.listdir(exports) == ["keep.jsonl"]
    error = one_line_error(invoke("--dsn", source.db.dsn, "export", str(exports / "no" / "x.jsonl")))
    assert "cannot write" in error


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


def with_search_path(dsn: str, search_path: str) -> str:
    """`dsn` with the PostgreSQL search path `search_path` (libpq's `options`)."""
    options = quote(f"-c search_path={search_path}", safe="")
    return f"{dsn}{'&' if '?' in dsn else '?'}options={options}"


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


# --- an export that cannot be written; an import JSON cannot read ---------------------------


def test_an_export_onto_a_directory_is_one_line_and_changes_nothing(source, tmp_path):
    directory = tmp_path / "exports"
    directory.mkdir()
    (directory / "kept.jsonl").write_text("kept\n")
    before = sorted(os.listdir(tmp_path))
    error = one_line_error(invoke("--dsn", source.db.dsn, "export", str(directory)))
    assert f"cannot write {directory}: it is a directory" in error
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(directory) == ["kept.jsonl"]


def test_an_export_to_a_full_disk_is_one_line(source, tmp_path):
    full = tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")  # a device that answers every write with ENOSPC
    before = sorted(os.listdir(tmp_path))
    error = one_line_error(invoke("--dsn", source.db.dsn, "export", str(full)))
    assert f"cannot write {full}: No space left on device" in error
    assert sorted(os.listdir(tmp_path)) == before and full.is_symlink()


def run_cli(*args: str, stdout=subprocess.PIPE, max_file_size: int | None = None):
    """The CLI in a child process (files it writes limited to `max_file_size` bytes, if given)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))

    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=None if max_file_size is None else limit,
        check=False,
    )


def child_error(child: subprocess.CompletedProcess) -> str:
    """The one `Error:` line of a child that failed (exit 1, nothing else but the SQLite warning)."""
    assert child.returncode == 1, child.stderr
    lines = [line for line in child.stderr.splitlines() if "development/testing only" not in line]
    assert len(lines) == 1, child.stderr
    return lines[0]


def test_an_export_failing_half_way_keeps_the_old_file_and_leaves_no_temporary_one(source, tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    path = exports / "all.jsonl"
    path.write_text("the previous export\n")
    # The export is about 1.5 MB: past 64 kB every write fails with EFBIG, as on a full disk.
    child = run_cli("--dsn", source.db.dsn, "export", str(path), max_file_size=64 * 1024)
    assert child_error(child) == f"Error: cannot write {path}: File too large"
    assert os.listdir(exports) == ["all.jsonl"] and path.read_text() == "the previous export\n"


def test_an_export_to_a_full_standard_output_is_one_line(source):
    with open("/dev/full", "w") as full:
        child = run_cli("--dsn", source.db.dsn, "export", stdout=full)
    assert child_error(child) == "Error: cannot write to standard output: No space left on device"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("1" + "0" * 4300, "line 2 is not valid JSON here: Exceeds the limit (4300 digits)"),
        ("[" * 5000 + "]" * 5000, "line 2 is not valid JSON here: it is nested too deeply"),
    ],
    ids=["an int of 4,301 digits", "5,000 levels"],
)
def test_an_import_line_json_cannot_read_is_one_line_and_writes_nothing(new_dsn, tmp_path, metadata, message):
    path = tmp_path / "odd.jsonl"
    line = {"type": "memory", "id": 1, "user_id": "ada", "content": "x", "metadata": {"n": "?"}}
    path.write_text(HEADER + json.dumps(line).replace('"?"', metadata) + "\n")
    target = built(new_dsn())
    assert message in one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert target.db.count_memories() == 0


def test_import_with_new_ids_adds_an_export_beside_other_memories(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = built(new_dsn())
    mine = [target.save("zoe", f"zoe {n}") for n in range(3)]
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert "line 2: memory id 1 is already in the target with other data" in error
    assert "import it with new ids" in error

    result = ok(invoke("--dsn", target.db.dsn, "import", "--new-ids", str(path)))
    assert result.stdout.startswith("Imported 2497 memories and 2 clusters into ")
    added = [m for m in target.db.get_memories(limit=None) if m["user_id"] != "zoe"]
    originals = source.db.get_memories(limit=None)
    assert [m["content"] for m in added] == [m["content"] for m in originals]
    assert [m["id"] for m in target.db.get_memories(user_id="zoe", limit=None)] == mine[::-1]
    content = {m["id"]: m["content"] for m in added}
    for original in source.db.get_clusters():
        [cluster] = target.db.get_clusters(user_id=original["user_id"], topic=original["topic"])
        expected = [source.db.get_memory(i)["content"] for i in original["memory_ids"]]
        assert [content[i] for i in cluster["memory_ids"]] == expected


# --- Ctrl-C during import and copy ---------------------------------------------------------


def stopped_after_the_first_batch(monkeypatch, name: str) -> None:
    """Make `transfer.<name>` raise KeyboardInterrupt (as Ctrl-C does) once its first batch is written."""
    from memoric import transfer

    real = getattr(transfer, name)

    def interrupted(*args, progress=None, **kwargs):
        def after_a_batch(rows: int) -> None:
            progress(rows)
            raise KeyboardInterrupt

        return real(*args, progress=after_a_batch, **kwargs)

    monkeypatch.setattr(transfer, name, interrupted)


def test_ctrl_c_during_an_import_says_what_was_written_and_the_rerun_resumes(
    source, new_dsn, tmp_path, monkeypatch
):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    with monkeypatch.context() as patched:
        stopped_after_the_first_batch(patched, "import_memoric")
        result = invoke("--dsn", target, "import", str(path))
    assert result.exit_code == 130
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert result.stderr.splitlines() == [
        "Interrupted: 1000 rows were written in whole batches; run the same command again to resume "
        "(rows already there are skipped)."
    ]
    assert MemoryStore(target).count_memories() == 1000
    ok(invoke("--dsn", target, "import", str(path)))
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


def test_ctrl_c_during_an_import_with_new_ids_leaves_nothing(source, new_dsn, tmp_path, monkeypatch):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    with monkeypatch.context() as patched:
        stopped_after_the_first_batch(patched, "import_memoric")
        result = invoke("--dsn", target, "import", "--new-ids", str(path))
    assert result.exit_code == 130
    assert "what it had written was removed" in result.stderr
    assert MemoryStore(target).count_memories() == 0


def test_ctrl_c_during_a_copy_says_what_was_written_and_the_rerun_resumes(source, new_dsn, monkeypatch):
    target = new_dsn()
    with monkeypatch.context() as patched:
        stopped_after_the_first_batch(patched, "copy_memoric")
        result = invoke("copy", "--from", source.db.dsn, "--to", target)
    assert result.exit_code == 130
    assert result.stderr.startswith("Interrupted: 1000 rows were written in whole batches")
    ok(invoke("copy", "--from", source.db.dsn, "--to", target))
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


# --- SIGTERM and SIGHUP: a command cleans up as for Ctrl-C -------------------------------------

SIGNALLED_CHILD = """
import os, sys
from memoric import transfer
from memoric.cli import main
from memoric.db import transfer_queries

name, number = sys.argv[1], int(sys.argv[2])
real, real_delete = getattr(transfer, name), transfer_queries.delete_ids


def signalled(*args, progress=None, **kwargs):
    def after_a_batch(rows):
        progress(rows)
        os.kill(os.getpid(), number)

    return real(*args, progress=after_a_batch, **kwargs)


def signalled_export(memoric, out, **kwargs):
    out.write("{}\\n")
    os.kill(os.getpid(), number)
    return real(memoric, out, **kwargs)


def signalled_again(*args, **kwargs):
    os.kill(os.getpid(), number)  # a second stop while the import takes back what it wrote
    return real_delete(*args, **kwargs)


setattr(transfer, name, signalled_export if name == "export_memoric" else signalled)
transfer_queries.delete_ids = signalled_again
sys.argv = ["memoric", *sys.argv[3:]]
main()
"""
STOP_SIGNALS = [signal.SIGTERM, signal.SIGHUP]


def signalled_cli(name: str, number: int, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a child process that sends itself `number` once `transfer.<name>` has written a
    batch (an export: a line), and again whenever it deletes rows."""
    return subprocess.run(
        [sys.executable, "-c", SIGNALLED_CHILD, name, str(int(number)), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("number", [signal.SIGINT, *STOP_SIGNALS])
def test_a_stop_signal_during_an_import_with_new_ids_takes_back_what_it_wrote(
    source, new_dsn, tmp_path, number
):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    child = signalled_cli("import_memoric", number, "--dsn", target, "import", "--new-ids", str(path))
    assert child.returncode == 128 + number, child.stderr
    stopped = "Interrupted" if number == signal.SIGINT else f"Stopped by {number.name}"
    assert child.stderr.splitlines() == [
        f"{stopped}: what it had written was removed; run the same command again to import the file."
    ]
    assert MemoryStore(target).count_memories() == 0


@pytest.mark.parametrize("number", STOP_SIGNALS)
def test_a_stop_signal_during_an_import_says_what_was_written(source, new_dsn, tmp_path, number):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    child = signalled_cli("import_memoric", number, "--dsn", target, "import", str(path))
    assert child.returncode == 128 + number, child.stderr
    assert child.stderr.startswith(f"Stopped by {number.name}: 1000 rows were written in whole batches")
    ok(invoke("--dsn", target, "import", str(path)))
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


@pytest.mark.parametrize("number", STOP_SIGNALS)
def test_a_stop_signal_during_an_export_leaves_no_file_and_the_old_one_as_it_was(source, tmp_path, number):
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "all.jsonl"
    path.write_text("the old export\n")
    child = signalled_cli("export_memoric", number, "--dsn", source.db.dsn, "export", str(path))
    assert child.returncode == 128 + number, child.stderr
    assert child.stderr.splitlines() == [f"Stopped by {number.name}."]
    assert os.listdir(tmp_path / "out") == ["all.jsonl"]
    assert path.read_text() == "the old export\n"


# --- an export never replaces a database, and writes through symlinks ------------------------


@pytest.mark.parametrize("name", ["agent.db", "agent.db-wal", "agent.db-shm", "agent.db.migrations.lock"])
def test_an_export_never_replaces_the_sqlite_database_it_reads_or_its_files(tmp_path, name):
    dsn = f"sqlite:///{tmp_path / 'agent.db'}"
    Memoric(dsn).save("ada", "kept")
    error = one_line_error(invoke("--dsn", dsn, "export", str(tmp_path / name)))
    assert "refusing to overwrite it" in error
    assert [m["content"] for m in Memoric(dsn).db.get_memories()] == ["kept"]
    assert ok(invoke("--dsn", dsn, "export", str(tmp_path / "agent.db.jsonl")))


def test_an_export_never_replaces_another_sqlite_database(source, tmp_path):
    other = tmp_path / "other.db"
    Memoric(f"sqlite:///{other}").save("zoe", "zoe's memory")
    error = one_line_error(invoke("--dsn", source.db.dsn, "export", str(other)))
    assert "refusing to overwrite it" in error
    assert MemoryStore(f"sqlite:///{other}").count_memories() == 1


def test_an_export_onto_a_symlink_replaces_the_file_it_names_and_keeps_the_link(source, tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "backup.jsonl"
    target.write_text("an older export\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    ok(invoke("--dsn", source.db.dsn, "export", str(link)))
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text().startswith('{"type":"header"')


def test_an_import_from_a_pipe_with_no_room_to_keep_it_is_one_line_and_writes_nothing(
    new_dsn, tmp_path, monkeypatch
):
    """stdin on a pipe is read twice from a temporary copy; a temporary directory that cannot
    take it stops the import before anything is written."""
    source = built(new_dsn())
    source.db.insert_memories([{"user_id": "ada", "content": f"memory {n}"} for n in range(5)])
    export = ok(invoke("--dsn", source.db.dsn, "export", "-")).stdout.encode()
    read_end, write_end = os.pipe()
    os.write(write_end, export)  # a few hundred bytes: the pipe holds them all
    os.close(write_end)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    target = new_dsn()
    with os.fdopen(read_end, "rb") as pipe:
        error = one_line_error(invoke("--dsn", target, "import", "-", input=pipe))
    assert "could not keep a copy of the export in a temporary file" in error
    assert not MemoryStore(target).has_schema(), "nothing written: an empty database left unbuilt"


def refuse_memories_from(store: MemoryStore, first_id: int) -> None:
    """A trigger that fails every INSERT of a memory with an id from `first_id` on, as a disk that
    fills up midway would."""
    if store.is_postgres:
        store.database.execute_sql(
            "CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'no space left on device'; END$$"
        )
        when = f"FOR EACH ROW WHEN (NEW.id >= {first_id}) EXECUTE FUNCTION no_room()"
    else:
        when = f"WHEN NEW.id >= {first_id} BEGIN SELECT RAISE(ABORT, 'no space left on device'); END"
    store.database.execute_sql(f"CREATE TRIGGER no_room BEFORE INSERT ON memories {when}")


def test_an_import_that_fails_midway_says_what_was_written_and_the_rerun_resumes(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()[1:1002]]
    target = built(new_dsn())
    refuse_memories_from(target.db, ids[1000])  # the second batch's first memory
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert "no space left on device" in error
    assert error.endswith(
        "; 1000 rows were written in whole batches; run the same command again to resume "
        "(rows already there are skipped)"
    )
    assert target.db.count_memories() == 1000
    target.db.database.execute_sql("DROP TRIGGER no_room" + (" ON memories" if target.db.is_postgres else ""))
    ok(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert_identical(snapshot(target.db), snapshot(source.db))


def test_an_import_with_new_ids_whose_take_back_fails_never_says_it_was_removed(
    source, new_dsn, tmp_path, monkeypatch
):
    """The import stops, then taking back what it wrote fails too: the one line says which rows
    to delete, and not that what it wrote was removed."""
    from memoric.db import transfer_queries

    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()

    def refused(*args, **kwargs):
        raise MemoricError("delete_ids failed on the test's say-so")

    with monkeypatch.context() as patched:
        stopped_after_the_first_batch(patched, "import_memoric")
        patched.setattr(transfer_queries, "delete_ids", refused)
        result = invoke("--dsn", target, "import", "--new-ids", str(path))
    line = one_line_error(result)
    assert "could not be taken back" in line and "delete the rows it wrote" in line
    assert "was removed" not in line
    assert MemoryStore(target).count_memories() == 1000
