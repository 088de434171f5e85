"""Faults: killed processes, dropped connections, unusable directories.

A process SIGKILLed in the middle of a bulk insert, an import, a policy run or a migration leaves
whole batches / whole summary chunks / no trace of the migration, and the next run completes.
The children announce the point they reached on stdout and then block reading stdin, so the kill
lands there (no sleeps). A dropped PostgreSQL connection fails one call and the next reconnects;
an unusable SQLite directory is one clear line from the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psycopg2
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db import policy_queries, transfer_queries
from memoric.db.store import MemoryStore
from memoric.migrate import Migrations
from memoric.transfer import export_memoric
from tests.helpers.chain import SHIPPED, chain, history_names, tables
from tests.helpers.cli_process import CLI
from tests.helpers.concurrency import AGENT_CONFIG, agent_memoric, end_state
from tests.helpers.dialects import one_line_error, requires_postgres
from tests.helpers.reference import NOW, ago
from tests.helpers.transfer_data import fill, snapshot

BATCH = 1000

BULK_WRITER = """
import sys
from memoric.db.store import MemoryStore
store = MemoryStore(sys.argv[1])
for b in range(1000):
    rows = [{"user_id": "ada", "content": f"b{b} r{r}", "metadata": {"b": b}} for r in range(1000)]
    store.insert_memories(rows)
    print(f"batch {b}", flush=True)
"""


def test_sigkill_during_bulk_insert_keeps_whole_batches(db, dialect):
    writer = subprocess.Popen([sys.executable, "-c", BULK_WRITER, db.dsn], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        assert writer.stdout.readline().startswith("batch")
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    count = db.count_memories()
    assert count >= 3 * BATCH and count % BATCH == 0
    batches = {m["metadata"]["b"] for m in db.get_memories(limit=None)}
    assert batches == set(range(count // BATCH))
    if dialect == "sqlite":
        assert db.database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.insert_memories([{"user_id": "ada", "content": "after the crash"}]) == 1
    assert db.count_memories() == count + 1


def killed_at(child: subprocess.Popen, announcement: str) -> str:
    """SIGKILL `child` once it has printed a line starting with `announcement`; that line."""
    line = child.stdout.readline()
    assert line.startswith(announcement), line
    child.send_signal(signal.SIGKILL)
    child.wait()
    return line


# --- an import ---------------------------------------------------------------------------------

IMPORTER = """
import sys
from memoric.db.store import MemoryStore
from memoric.transfer import import_jsonl

def after_batch(rows):
    print(f"imported {rows}", flush=True)
    sys.stdin.readline()

with open(sys.argv[2], encoding="utf-8") as lines:
    import_jsonl(MemoryStore(sys.argv[1]), lines, progress=after_batch)
"""


def test_sigkill_during_an_import_keeps_whole_batches_and_the_rerun_completes(new_dsn, tmp_path):
    source = Memoric(new_dsn())
    source.ensure_schema()
    fill(source.db)
    path = tmp_path / "all.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        export_memoric(source, out)
    target = Memoric(new_dsn())
    target.ensure_schema()

    child = subprocess.Popen(
        [sys.executable, "-c", IMPORTER, target.db.dsn, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed_at(child, "imported") == "imported 1000\n"
    written = list(transfer_queries.iter_memories(target.db))
    everything = list(transfer_queries.iter_memories(source.db))
    # Where the table keeps no id counter (SQLite without AUTOINCREMENT) the file's highest
    # memory and cluster are written first: those rows hold the file's ids back from agents.
    assert written in (everything[:1000], [*everything[:1000], everything[-1]])
    clusters = transfer_queries.all_clusters(target.db)
    assert clusters in ([], transfer_queries.all_clusters(source.db)[-1:])
    assert (len(written) == 1001) == (len(clusters) == 1)

    result = CliRunner().invoke(main, ["--dsn", target.db.dsn, "import", str(path)])
    assert result.exit_code == 0, result.output + result.stderr
    assert f"Imported {2497 - len(written)} memories and {2 - len(clusters)} clusters" in result.stdout
    assert snapshot(target.db) == snapshot(source.db)


# --- a policy run ----------------------------------------------------------------------------

POLICY_RUNNER = """
import datetime as dt, json, sys
from memoric import Memoric
from memoric.policies import extractive_summary
from tests.helpers.reference import Clock

calls = []

def summarizer(memories, max_chars):
    calls.append(len(memories))
    if len(calls) == int(sys.argv[4]):
        print(f"summarizing thread {len(calls)}", flush=True)
        sys.stdin.readline()
    return extractive_summary(memories, max_chars)

clock = Clock(dt.datetime.fromisoformat(sys.argv[3]))
memoric = Memoric(sys.argv[1], config=json.loads(sys.argv[2]), clock=clock, summarizer=summarizer)
print(json.dumps(memoric.run_policies()), flush=True)
"""
USERS_TO_SUMMARIZE = 60  # two chunks of users: 50 summarized per transaction, then 10


def policy_rows() -> list[dict]:
    """Per user: a long-term thread to summarize, short-term memories to move, a mid-term one to trim."""
    rows = []
    for u in range(USERS_TO_SUMMARIZE):
        user = f"user{u:02d}"
        rows += [
            {
                "user_id": user,
                "thread_id": "t",
                "tier": "long_term",
                "content": f"{user} fact {n}.",
                **ago(days=n),
            }
            for n in range(5)
        ]
        rows += [{"user_id": user, "content": f"{user} old note {n}", **ago(days=8 + n)} for n in range(2)]
        rows.append({"user_id": user, "tier": "mid_term", "content": "long " * 40, **ago(days=1)})
    return rows


def policy_database(dsn: str) -> Memoric:
    memoric = agent_memoric(dsn)
    memoric.ensure_schema()
    memoric.db.insert_memories(policy_rows())
    return memoric


def run_policy_child(dsn: str, block_at: int) -> subprocess.Popen:
    arguments = [dsn, json.dumps(AGENT_CONFIG), NOW.isoformat(), str(block_at)]
    return subprocess.Popen(
        [sys.executable, "-c", POLICY_RUNNER, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_sigkill_during_a_policy_run_keeps_whole_chunks_and_the_next_run_completes(new_dsn):
    expected = policy_database(new_dsn())
    expected.run_policies()
    memoric = policy_database(new_dsn())

    child = run_policy_child(memoric.db.dsn, block_at=51)
    killed_at(child, "summarizing thread 51")
    summaries = memoric.db.get_memories(where_metadata={"kind": "thread_summary"}, limit=None)
    hidden = memoric.db.get_memories(summarized=True, limit=None)
    assert len(summaries) == 50, "the first chunk of 50 users is committed, the second not at all"
    assert {m["user_id"] for m in hidden} == {m["user_id"] for m in summaries}
    assert len(hidden) == 5 * 50
    assert memoric.stats()["by_tier"] == {"short_term": 0, "mid_term": 2 * 60 + 60, "long_term": 5 * 60 + 50}
    assert policy_queries.count_in_slices(memoric.db, slices=[("mid_term", None, None)], longer_than=60) == 0

    child = run_policy_child(memoric.db.dsn, block_at=0)
    output, _ = child.communicate()
    assert child.returncode == 0
    assert json.loads(output) == {
        "migrated": {"short_term": 0, "mid_term": 0},
        "trimmed": 0,
        "summarized": 50,
        "summaries_created": 10,
    }
    assert end_state(memoric) == end_state(expected)


# --- a migration -----------------------------------------------------------------------------

BLOCKS_HALFWAY = '''"""Test-only: creates a table, writes a row, then (when asked) waits to be killed."""

import os
import sys


def wait_to_be_killed():
    if os.environ.get("MEMORIC_TEST_BLOCK_MIGRATION"):
        print("migrating: table created, row written", flush=True)
        sys.stdin.readline()


def migrate(migrator, database, *, fake=False):
    migrator.sql("CREATE TABLE agent_notes (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
    migrator.sql("INSERT INTO agent_notes (id, note) VALUES (1, 'half done')")
    migrator.run(wait_to_be_killed)
    migrator.sql("CREATE INDEX idx_agent_notes_note ON agent_notes (note)")


def rollback(migrator, database, *, fake=False):
    migrator.sql("DROP TABLE agent_notes")
'''


def test_sigkill_during_a_migration_leaves_schema_and_history_as_they_were(new_dsn, tmp_path):
    directory = chain(tmp_path / "migrations", **{"090_agent_notes": BLOCKS_HALFWAY})
    memoric = Memoric(new_dsn())
    memoric.save("ada", "saved before the migration")
    before = snapshot(memoric.db)
    command = [
        sys.executable,
        "-c",
        CLI,
        "--dsn",
        memoric.db.dsn,
        "migrate",
        "upgrade",
        "--dir",
        str(directory),
    ]
    child = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MEMORIC_TEST_BLOCK_MIGRATION": "1"},
    )
    killed_at(child, "migrating: table created")

    store = MemoryStore(memoric.db.dsn)
    assert history_names(store) == SHIPPED
    assert "agent_notes" not in tables(store)
    assert snapshot(store) == before
    if store.is_sqlite:
        assert store.database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"

    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "Applied 090_agent_notes" in rerun.stdout
    assert Migrations(store, migrate_dir=directory).current() == "090_agent_notes"
    assert store.database.execute_sql("SELECT note FROM agent_notes").fetchall() == [("half done",)]
    assert snapshot(store) == before


# --- dropped connections and unusable directories ----------------------------------------------


@requires_postgres
def test_the_facade_goes_on_after_the_server_ended_its_postgresql_connection(new_postgres_url):
    memoric = Memoric(new_postgres_url())
    memoric.save("ada", "before", thread_id="t1")
    backend = memoric.db.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    admin = psycopg2.connect(memoric.db.dsn)
    admin.autocommit = True
    admin.cursor().execute("SELECT pg_terminate_backend(%s, 10000)", (backend,))  # waits for its end
    admin.close()
    assert [m["content"] for m in memoric.retrieve("ada", thread_id="t1")] == ["before"]
    memoric.save("ada", "after", thread_id="t1")
    assert memoric.run_policies()["migrated"] == {"short_term": 0, "mid_term": 0}
    assert memoric.stats()["total"] == 2


def test_the_cli_names_a_missing_sqlite_directory_in_one_line(tmp_path):
    missing = tmp_path / "missing"
    for command in (["stats"], ["export"], ["migrate", "upgrade"], ["recall", "--user", "ada"]):
        error = one_line_error(CliRunner().invoke(main, ["--dsn", f"sqlite:///{missing / 'm.db'}", *command]))
        assert "does not exist" in error and str(missing) in error
    assert not missing.exists()


def test_the_cli_names_a_read_only_sqlite_directory_in_one_line(read_only_dir):
    for command in (["stats"], ["init-db"], ["import", "-"]):
        result = CliRunner().invoke(
            main, ["--dsn", f"sqlite:///{read_only_dir / 'm.db'}", *command], input=""
        )
        assert "not writable" in one_line_error(result)
    assert os.listdir(read_only_dir) == []


def test_copy_into_a_read_only_directory_writes_nothing_to_the_source(tmp_path, read_only_dir):
    source = Memoric(f"sqlite:///{tmp_path / 'source.db'}")
    source.save("ada", "a memory")
    before = snapshot(source.db)
    result = CliRunner().invoke(
        main, ["copy", "--from", source.db.dsn, "--to", f"sqlite:///{read_only_dir / 'm.db'}"]
    )
    assert "not writable" in one_line_error(result)
    assert snapshot(source.db) == before
