"""The engine commands (demo, stats, run-policies, clusters, recall) on both dialects."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from memoric import Memoric, policies
from memoric.cli import main
from memoric.commands.output import UNSHOWABLE
from memoric.db.connection import OWN_TABLES
from memoric.db.masking import mask_url
from memoric.db.models import Memory
from memoric.db.store import MemoryStore
from memoric.migrate import HISTORY_TABLE, NOT_CREATED
from tests.helpers.cli_process import CLI
from tests.helpers.dialects import one_line_error
from tests.helpers.reference import ago


@pytest.fixture
def filled(dsn):
    """Two users' memories, some old enough for the policies; a Memoric on them."""
    memoric = Memoric(dsn)
    memoric.save("ada", "Flight to Lisbon booked", thread_id="t1", metadata={"topic": "travel"}, score=90)
    memoric.save("ada", "Window seat please", thread_id="t1", metadata={"topic": "travel"})
    memoric.save("ada", "Allergic to nuts", thread_id="t2", metadata={"topic": "food"})
    memoric.save("bob", "Bob's secret", thread_id="t1", metadata={"topic": "travel"})
    rows = [
        {
            "user_id": "ada",
            "thread_id": "old",
            "content": f"Old fact {i}.",
            "tier": "mid_term",
            **ago(days=40),
        }
        for i in range(10)
    ]
    memoric.db.insert_memories(rows)
    yield memoric
    memoric.close()


@pytest.fixture
def built(dsn):
    """The fresh database, its schema built: a command that brings no data refuses one without."""
    with Memoric(dsn) as memoric:
        memoric.ensure_schema()
    return dsn


def parsed(result):
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_stats(cli, filled):
    assert parsed(cli("stats", "--json")) == json.loads(json.dumps(filled.stats()))
    assert parsed(cli("stats", "--user", "bob", "--json"))["total"] == 1
    result = cli("stats")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "tier        memories   share" in lines
    assert "short_term         4   28.6%" in lines
    assert "total             14  100.0%" in lines
    assert any(line.split() == ["users", "2"] for line in lines)


def test_run_policies(cli, filled):
    dry = parsed(cli("run-policies", "--dry-run", "--json"))
    expected = {
        "migrated": {"short_term": 0, "mid_term": 10},
        "trimmed": 0,
        "summarized": 10,
        "summaries_created": 1,
    }
    assert dry == {**expected, "dry_run": True}
    assert filled.stats()["by_tier"]["mid_term"] == 10
    assert parsed(cli("run-policies", "--user", "bob", "--json"))["migrated"]["mid_term"] == 0
    assert parsed(cli("run-policies", "--json")) == {**expected, "dry_run": False}
    result = cli("run-policies")
    assert result.exit_code == 0
    assert "Policies applied." in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["migrated", "mid_term", "->", "long_term", "0"] in rows
    assert "Dry run: nothing was written." in cli("run-policies", "--dry-run").stdout


def test_a_stopped_policy_run_says_what_stays_and_the_rerun_finishes(cli, filled, monkeypatch):
    real = policies.run_policies

    def stopped_after_a_batch(*args, on_progress=None, **kwargs):
        def advance(rows: int) -> None:
            raise KeyboardInterrupt  # Ctrl-C once the first batch has committed

        return real(*args, on_progress=advance, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(policies, "run_policies", stopped_after_a_batch)
        result = cli("run-policies")
    assert result.exit_code == 130
    assert result.stderr.splitlines() == [
        "Interrupted: the batches committed before the stop stay applied, and none is applied twice; "
        "run it again to finish."
    ]
    assert filled.stats()["by_tier"]["mid_term"] == 0, "the first batch, the tier move, stays"
    assert parsed(cli("run-policies", "--json"))["summaries_created"] == 1


def test_clusters(cli, filled):
    assert parsed(cli("clusters", "--json")) == {"rebuilt": None, "clusters": []}
    assert "No clusters" in cli("clusters").stdout
    built = parsed(cli("clusters", "--rebuild", "--json"))
    assert built["rebuilt"] == 4
    largest = built["clusters"][0]
    assert (largest["user_id"], largest["topic"], largest["memory_count"]) == ("ada", "general", 10)
    travel = parsed(cli("clusters", "--user", "ada", "--topic", "travel", "--json"))["clusters"]
    assert [(c["topic"], c["category"], c["memory_ids"]) for c in travel] == [("travel", "general", [1, 2])]
    lines = cli("clusters", "--user", "ada").stdout.splitlines()
    assert lines[0].split() == ["id", "user", "topic", "category", "size", "last", "built", "(UTC)"]
    assert len(lines) == 4
    assert parsed(cli("clusters", "--category", "nothing", "--json"))["clusters"] == []
    assert cli("clusters", "--limit", "0").stdout == "", "none asked for: not 'No clusters'"


def test_recall(cli, filled):
    memories = parsed(cli("recall", "--user", "ada", "--thread", "t1", "--json"))
    assert [(m["content"], m["_score"]) for m in memories] == [
        ("Flight to Lisbon booked", 95),
        ("Window seat please", 75),
    ]
    assert [m["user_id"] for m in parsed(cli("recall", "--user", "bob", "--scope", "user", "--json"))] == [
        "bob"
    ]
    topic = parsed(
        cli("recall", "--user", "ada", "--scope", "topic", "--metadata", '{"topic": "food"}', "--json")
    )
    assert [m["content"] for m in topic] == ["Allergic to nuts"]
    assert len(parsed(cli("recall", "--user", "ada", "--scope", "user", "--top-k", "3", "--json"))) == 3
    lines = cli("recall", "--user", "ada", "--thread", "t1").stdout.splitlines()
    assert lines[0].split() == ["id", "thread", "tier", "score", "content"]
    assert lines[1].split()[:4] == ["1", "t1", "short_term", "95"]
    assert "No memories found." in cli("recall", "--user", "nobody").stdout


TERMINAL_CONTROLS = "ok\x1b[2K\x1b[1A\x1b]0;pwned\x07\x9b31m\u202eFAKE LINE\u2028ANOTHER"


def test_stored_text_cannot_drive_the_terminal(cli, dsn):
    """Before, escape sequences in a memory's content, thread or topic reached the terminal as
    they were: they erased lines, moved the cursor, set the window title, reordered a line (an
    export to stdout, and --json, left the C1 and bidirectional controls raw)."""
    memoric = Memoric(dsn)
    for n in range(3):
        topic = {"topic": "\x1b]0;x\x07\u2029"}
        memoric.save("u", f"{TERMINAL_CONTROLS} {n}", thread_id="t\x1b[8m\u2028", metadata=topic)
    memoric.rebuild_clusters("u")
    memoric.close()
    results = {
        "recall": cli("recall", "--user", "u", "--scope", "user"),
        "recall --json": cli("recall", "--user", "u", "--scope", "user", "--json"),
        "clusters": cli("clusters", "--user", "u"),
        "clusters --json": cli("clusters", "--user", "u", "--json"),
        "a usage error": cli("recall", "--user", "u", "--scope", "\x1b[31muser"),
        "export": cli("export"),
    }
    for command, result in results.items():
        for line in (result.stdout + result.stderr).split("\n"):
            assert not UNSHOWABLE.search(line), f"{command}: {line!r}"
    assert "ok\\x1b[2K\\x1b[1A" in results["recall"].stdout and "t\\x1b[8m\\u2028" in results["recall"].stdout
    assert "\\x1b]0;x\\x07\\u2029" in results["clusters"].stdout
    assert "'\\x1b[31muser' is not one of" in results["a usage error"].stderr
    recalled = sorted(m["content"] for m in parsed(results["recall --json"]))
    assert recalled == [f"{TERMINAL_CONTROLS} {n}" for n in range(3)]
    assert parsed(results["clusters --json"])["clusters"][0]["topic"] == "\x1b]0;x\x07\u2029"
    exported = [json.loads(line) for line in results["export"].stdout.split("\n") if line]
    assert sorted(r["content"] for r in exported if r["type"] == "memory") == recalled


def stored_outside_memoric(dsn: str, metadata_text: str) -> None:
    """One memory whose metadata another writer set to `metadata_text` (JSON memoric refuses)."""
    memoric = Memoric(dsn)
    memory_id = memoric.save("u", "written outside")
    database = memoric.db.database
    sql = f"UPDATE memories SET metadata = {database.param} WHERE id = {database.param}"
    database.execute_sql(sql.replace("= %s W", "= %s::jsonb W"), (metadata_text, memory_id))
    memoric.close()


@pytest.fixture
def sqlite_cli(tmp_path, monkeypatch):
    """A SQLite database and the CLI on it: SQLite's JSON keeps what PostgreSQL's refuses or
    reads otherwise (a lone `\\ud800`; `1e999`, which PostgreSQL keeps as an integer)."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    dsn = f"sqlite:///{tmp_path / 'outside.db'}"
    return dsn, lambda *args: CliRunner().invoke(main, ["--dsn", dsn, *args])


def test_a_number_json_cannot_write_is_one_line_in_json_output(sqlite_cli):
    """1e999 is infinity to Python: it was printed as `Infinity`, which no JSON reader takes."""
    dsn, cli = sqlite_cli
    stored_outside_memoric(dsn, '{"n": 1e999}')
    assert "written outside" in cli("recall", "--user", "u", "--scope", "user").stdout
    error = one_line_error(cli("recall", "--user", "u", "--scope", "user", "--json"))
    assert error.startswith("Error: cannot write the answer as JSON: a stored number is beyond")


def test_a_lone_surrogate_is_written_as_its_escape(sqlite_cli):
    """UTF-8 cannot carry what a lone `\\ud800` decodes to: `recall --json` ended in a traceback."""
    dsn, cli = sqlite_cli
    stored_outside_memoric(dsn, '{"topic": "\\ud800"}')
    result = cli("recall", "--user", "u", "--scope", "user", "--json")
    assert result.exit_code == 0 and "\\ud800" in result.stdout
    assert [m["metadata"] for m in parsed(result)] == [{"topic": "\ud800"}]
    assert cli("recall", "--user", "u", "--scope", "user").exit_code == 0


def test_a_lone_surrogate_sqlite_cannot_read_back_is_named_not_quoted_as_sql(sqlite_cli):
    """SQLite's JSON functions decode it to bytes that are not UTF-8: the error quoted memoric's
    SQL, naming neither the cause nor the cure."""
    dsn, cli = sqlite_cli
    stored_outside_memoric(dsn, '{"topic": "\\ud800"}')
    error = one_line_error(cli("clusters", "--rebuild"))
    assert "a stored text is not UTF-8" in error and "lone surrogate" in error
    assert "json_extract" not in error


def test_recall_shortens_long_content(cli, filled):
    filled.save("ada", "word " * 40, thread_id="long")
    line = cli("recall", "--user", "ada", "--thread", "long").stdout.splitlines()[1]
    assert line.endswith("…")
    assert len(line.split("short_term")[1].strip().split(maxsplit=1)[1]) == 60


NUMBERS_AS_WRITTEN = {
    "exponents": ("6e-1", "3e-1", "1e-1", "6e1", "7e0", "3e1", "6e2"),
    "decimals": ("0.6", "0.3", "0.1", "60.0", "7.0", "30.0", "600.0"),
}


def test_a_config_written_with_exponents_works_as_its_decimals(cli, filled, tmp_path):
    """PyYAML reads an exponent without a dot (1e-1) as text; every number option takes it as the float."""
    commands = [
        ["recall", "--user", "ada", "--thread", "t1", "--json"],
        ["run-policies", "--dry-run", "--json"],
    ]
    shown = {}
    for name, (importance, recency, thread, decay, short, mid, timeout) in NUMBERS_AS_WRITTEN.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"scoring: {{importance: {importance}, recency: {recency}, thread: {thread}, "
            f"decay_days: {decay}}}\n"
            f"tiers: [{{name: short_term, expire_after_days: {short}}}, "
            f"{{name: mid_term, expire_after_days: {mid}}}, {{name: long_term}}]\n"
            f"policies: {{lock_timeout: {timeout}}}\n"
        )
        shown[name] = [parsed(cli("--config", str(path), *command)) for command in commands]
    assert shown["exponents"] == shown["decimals"]
    assert shown["exponents"][1]["migrated"]["mid_term"] == 10


@pytest.mark.parametrize(
    "args",
    [
        ["recall"],
        ["recall", "--user", "ada", "--scope", "world"],
        ["stats", "--bogus"],
    ],
)
def test_usage_errors_exit_2(cli, args):
    assert cli(*args).exit_code == 2


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(cli, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Memoric, "stats", interrupted)
    result = cli("stats")
    assert (result.exit_code, result.stdout, result.stderr) == (130, "", "Interrupted.\n")


# The `memoric` command in a child that sends itself SIGINT as the CLI's module starts to load.
INTERRUPTED_WHILE_LOADING = """
import importlib.abc, os, signal, sys


class Interrupting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "memoric.cli":
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, Interrupting())
from memoric.__main__ import main

sys.argv = ["memoric", "stats"]
main()
"""


# The same, where the module being imported swallows the KeyboardInterrupt (a bare `except:`).
SWALLOWED_WHILE_LOADING = INTERRUPTED_WHILE_LOADING.replace(
    "            os.kill(os.getpid(), signal.SIGINT)",
    "            try:\n                os.kill(os.getpid(), signal.SIGINT)\n"
    "            except:\n                pass",
)


@pytest.mark.parametrize("child_code", [INTERRUPTED_WHILE_LOADING, SWALLOWED_WHILE_LOADING])
def test_ctrl_c_while_the_command_loads_is_one_line_and_exit_130(child_code):
    child = subprocess.run([sys.executable, "-c", child_code], capture_output=True, text=True, check=False)
    assert (child.returncode, child.stdout, child.stderr) == (130, "", "Interrupted.\n")


def test_importing_memoric_loads_neither_peewee_nor_a_driver_until_a_class_is_used():
    code = (
        "import sys, memoric; heavy = {'peewee', 'psycopg2', 'asyncio'}; "
        "print(sorted(heavy & set(sys.modules))); memoric.Memoric; print('peewee' in sys.modules)"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert child.stdout.splitlines() == ["[]", "True"]


def test_python_dash_m_memoric_is_the_command():
    child = subprocess.run(
        [sys.executable, "-m", "memoric", "--version"], capture_output=True, text=True, check=True
    )
    assert child.stdout == "memoric, version 0.1.0\n"


def test_demo(cli):
    first = cli("demo")
    assert first.exit_code == 0, first.output + first.stderr
    out = first.stdout
    for section in (
        "== Metadata filter",
        "scope thread",
        "scope topic",
        "scope user",
        "Policies, dry run",
        "Policies, real run",
        "the summary replaces its sources",
        "== Clusters",
        "== Stats",
    ):
        assert section in out
    assert "The database is the " in out
    tour = parsed(cli("demo", "--json"))
    assert tour["removed_from_earlier_demo"] == tour["saved"] + tour["policies"]["summaries_created"]
    assert tour["policies"] == tour["policies_dry_run"]
    assert tour["policies"]["summaries_created"] == 1
    assert {m["tier"] for m in tour["recall_after_policies"]} == {"long_term"}
    assert tour["stats"]["total"] == tour["saved"] + 1
    assert {c["user_id"] for c in tour["clusters"]} == {"demo-ada", "demo-ben"}


def test_demo_leaves_other_users_alone(cli, filled):
    before = filled.stats("ada")
    assert cli("demo").exit_code == 0
    assert filled.stats("ada") == before


def test_demo_works_on_a_fresh_machine_with_no_configuration(tmp_path):
    """No --dsn, no environment, no config: the embedded SQLite file under ~/.memoric."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEMORIC_")}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", CLI, "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    database = tmp_path / ".memoric" / "memoric.db"
    assert database.is_file()
    assert f"The database is the SQLite file {database}." in result.stdout


# --- a mistyped database: the commands that bring no data create none ------------------------

BRINGING_NO_DATA = [
    ["stats"],
    ["recall", "--user", "ada"],
    ["clusters"],
    ["clusters", "--rebuild"],
    ["run-policies", "--dry-run"],
    ["run-policies"],
    ["export", "{out}"],
]


@pytest.mark.parametrize("args", BRINGING_NO_DATA)
def test_a_command_that_brings_no_data_refuses_a_missing_sqlite_file_and_creates_nothing(tmp_path, args):
    typo = tmp_path / "typo"
    typo.mkdir()
    dsn = f"sqlite:///{typo / 'agnet.db'}"
    result = CliRunner().invoke(main, ["--dsn", dsn, *(arg.format(out=typo / "out.jsonl") for arg in args)])
    assert result.exit_code == 1
    assert result.output == f"Error: there is no database at {dsn}: {NOT_CREATED}\n"
    assert list(typo.iterdir()) == []


@pytest.mark.parametrize("args", BRINGING_NO_DATA)
def test_a_command_that_brings_no_data_refuses_an_empty_database_and_builds_nothing(
    dsn, dialect, tmp_path, args
):
    store = MemoryStore(dsn)
    assert store.database.get_tables() == []  # an empty SQLite file, an empty PostgreSQL database
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["--dsn", dsn, *(arg.format(out=out) for arg in args)])
    assert result.exit_code == 1
    assert result.output == f"Error: {mask_url(dsn)} holds no memoric schema: {NOT_CREATED}\n"
    assert store.database.get_tables() == []
    assert not out.exists() and list(tmp_path.glob("*.lock")) == []
    store.close()


@pytest.mark.parametrize("args", BRINGING_NO_DATA)
def test_a_command_that_brings_no_data_leaves_another_applications_sqlite_file_as_it_was(tmp_path, args):
    """It refused, but only after its connection had switched the file to WAL (and an empty file
    became a database of 4 KiB)."""
    other, empty = tmp_path / "other.db", tmp_path / "empty.db"
    with contextlib.closing(sqlite3.connect(other)) as connection:
        connection.execute("CREATE TABLE notes (text)")
        connection.commit()
    empty.touch()
    before = {path: path.read_bytes() for path in (other, empty)}
    for path in (other, empty):
        dsn = f"sqlite:///{path}"
        result = CliRunner().invoke(main, ["--dsn", dsn, *(arg.format(out=tmp_path / "out") for arg in args)])
        assert result.output == f"Error: {dsn} holds no memoric schema: {NOT_CREATED}\n"
    assert {path: path.read_bytes() for path in (other, empty)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "other.db"]


@pytest.mark.parametrize(
    "args",
    [
        ["migrate", "current"],
        ["migrate", "history"],
        ["migrate", "pending"],
        ["migrate", "downgrade", "base"],
        ["migrate", "stamp", "head"],
        ["migrate", "upgrade", "--sql"],
    ],
)
@pytest.mark.parametrize(
    "made",
    [
        "CREATE TABLE notes (text)",
        "CREATE TABLE memories (id INTEGER PRIMARY KEY, text)",
        "PRAGMA user_version = 7",
        "CREATE VIEW answer AS SELECT 42",
    ],
    ids=["a table", "a table named memories", "a user version only", "a view only"],
)
def test_a_migrate_command_that_builds_nothing_leaves_another_applications_sqlite_file_as_it_was(
    tmp_path, args, made
):
    """They read the history (or refused), after their connection had switched the file to WAL:
    another application's database changed by a command that changed nothing (a table named
    `memories`, or no table at all, was taken for memoric's)."""
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as connection:
        connection.execute(made)
        connection.commit()
    before = other.read_bytes()
    CliRunner().invoke(main, ["--dsn", f"sqlite:///{other}", *args])
    assert other.read_bytes() == before
    # A preview runs the upgrade, rolled back, under the migrations lock; a table named like
    # memoric's is looked at under the lock too (the foreign-table guard).
    if args[-1] != "--sql" and "memories" not in made:
        assert [path.name for path in tmp_path.iterdir()] == ["other.db"], "no lock file beside it"
    with contextlib.closing(sqlite3.connect(other)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_sqlite_file_memoric_builds_its_schema_in_runs_in_wal_mode(tmp_path):
    new, other = tmp_path / "new.db", tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as connection:
        connection.execute("CREATE TABLE notes (text)")
        connection.commit()
    for path in (new, other):
        assert CliRunner().invoke(main, ["--dsn", f"sqlite:///{path}", "migrate", "upgrade"]).exit_code == 0
        assert CliRunner().invoke(main, ["--dsn", f"sqlite:///{path}", "stats"]).exit_code == 0
        with contextlib.closing(sqlite3.connect(path)) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_tables_that_mark_a_database_as_memorics_are_its_own():
    assert {Memory._meta.table_name, HISTORY_TABLE} == OWN_TABLES


def test_a_reading_command_on_the_default_database_creates_not_even_its_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["stats"])
    assert result.exit_code == 1 and result.output.startswith("Error: cannot open database sqlite:///")
    assert not (tmp_path / "home").exists()
    assert CliRunner().invoke(main, ["migrate", "upgrade"]).exit_code == 0
    assert (tmp_path / "home" / ".memoric" / "memoric.db").is_file()


def test_a_bad_url_from_the_environment_is_named_as_coming_from_there(monkeypatch):
    monkeypatch.setenv("MEMORIC_DATABASE_URL", "postgresql://agent:s3cret@db:99999/memories")
    result = CliRunner().invoke(main, ["stats"])
    assert result.exit_code == 1
    assert result.output.endswith("from 1 to 65535 (the URL of $MEMORIC_DATABASE_URL)\n")
    assert "s3cret" not in result.output


def test_the_commands_that_bring_data_build_a_database_not_there_yet(tmp_path, dialect):
    dsn = f"sqlite:///{tmp_path / 'new.db'}"
    assert CliRunner().invoke(main, ["--dsn", dsn, "demo", "--json"]).exit_code == 0
    export = tmp_path / "demo.jsonl"
    assert CliRunner().invoke(main, ["--dsn", dsn, "export", str(export)]).exit_code == 0
    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    assert CliRunner().invoke(main, ["--dsn", restored, "import", str(export)]).exit_code == 0
    assert CliRunner().invoke(main, ["--dsn", restored, "stats"]).exit_code == 0


# --- the SQLite warning: once, where it matters -------------------------------------------


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["stats"], True),
        (["init-db"], True),
        (["demo"], True),
        (["stats", "--json"], False),
        (["demo", "--json"], False),
        (["migrate", "current"], False),
        (["run-policies"], False),
        (["recall", "--user", "ada"], False),
        (["export"], False),
    ],
)
def test_the_sqlite_warning_is_shown_once_where_it_matters(built, dialect, args, shown):
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEMORIC_")}
    result = subprocess.run(
        [sys.executable, "-c", CLI, "--dsn", built, *args], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "development/testing only" in line]
    assert len(warnings) == (1 if shown and dialect == "sqlite" else 0), result.stderr
    assert "development/testing only" not in result.stdout


def test_the_sqlite_warning_is_silenced_by_config_or_environment(built, tmp_path, monkeypatch):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    config = tmp_path / "quiet.yaml"
    config.write_text("database: {sqlite_warning: false}\n")
    quiet = CliRunner().invoke(main, ["--dsn", built, "--config", str(config), "stats"])
    monkeypatch.setenv("MEMORIC_SQLITE_WARNING", "off")
    silenced = CliRunner().invoke(main, ["--dsn", built, "stats"])
    for result in (quiet, silenced):
        assert result.exit_code == 0, result.output
        assert "development/testing only" not in result.output
