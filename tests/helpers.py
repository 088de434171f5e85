"""The helpers the test modules share: dialect selection, the CLI's error line, a settable clock,
snapshots and reference rankings, the migration chain's names and schema readers, transfer data,
and the concurrency workload. Fixtures live in conftest.py; no test module imports another.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from memoric import Memoric
from memoric.db import transfer_queries
from memoric.db.jsonfilter import contains
from memoric.db.models import UTC
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.migrate import HISTORY_TABLE, LOCK_NAME, default_migrate_dir
from memoric.migrate.runner import intercepted
from memoric.scoring import score_memory
from memoric.testing_citus import CITUS_SOURCE_VARIABLE, citus_version

# --- dialects and the CLI ------------------------------------------------------------------------

ALL_DIALECTS = ("sqlite", "postgresql")
# A third target: PostgreSQL distributed by Citus, for the modules marked `citus`.
CITUS = "citus"


def selected_targets() -> list[str]:
    """The targets MEMORIC_TEST_DIALECTS names; unset: both dialects, and Citus where it is to be had."""
    raw = os.environ.get("MEMORIC_TEST_DIALECTS")
    if raw is None:
        return [*ALL_DIALECTS, *([CITUS] if citus_to_be_had() else [])]
    chosen = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = set(chosen) - {*ALL_DIALECTS, CITUS}
    if unknown:
        raise pytest.UsageError(f"MEMORIC_TEST_DIALECTS: unknown dialect(s) {sorted(unknown)}")
    return chosen


def selected_dialects() -> list[str]:
    """The dialects every database test runs on (sqlite, postgresql)."""
    return [name for name in selected_targets() if name != CITUS]


@functools.cache
def citus_to_be_had() -> bool:
    """Whether Citus is installed for the embedded PostgreSQL, or a source tree to build it is named."""
    return bool(os.environ.get(CITUS_SOURCE_VARIABLE)) or citus_version() is not None


requires_postgres = pytest.mark.skipif(
    "postgresql" not in selected_dialects(), reason="PostgreSQL not selected in MEMORIC_TEST_DIALECTS"
)


def refusal(check: Callable, *args, **kwargs) -> str:
    """The message of the ValidationError `check(*args, **kwargs)` raises: what an entry point must say."""
    with pytest.raises(ValidationError) as raised:
        check(*args, **kwargs)
    return str(raised.value)


def one_line_error(result) -> str:
    """The CLI's one `Error:` line of a failed command (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# --- a settable clock, snapshots, reference rankings ----------------------------------------

NOW = dt.datetime(2024, 6, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)


class Clock:
    """A clock the test moves by hand (no sleeps)."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


def ago(now: dt.datetime = NOW, **delta) -> dict:
    """created_at/updated_at arguments for a memory last updated `delta` before `now`."""
    moment = now - dt.timedelta(**delta)
    return {"created_at": moment, "updated_at": moment}


def memory_snapshot(store) -> list[tuple]:
    """Every memory as a comparable tuple (ids included), in id order."""
    return [
        (
            memory["id"],
            memory["user_id"],
            memory["namespace"],
            memory["thread_id"],
            memory["content"],
            memory["tier"],
            memory["score"],
            sorted(memory["metadata"].items()),
            memory["summarized"],
            memory["created_at"],
            memory["updated_at"],
        )
        for memory in sorted(store.get_memories(limit=None), key=lambda m: m["id"])
    ]


def cluster_snapshot(store) -> list[tuple]:
    """Every cluster without its timestamps, sorted by key."""
    return sorted(
        (c["cluster_id"], c["user_id"], c["topic"], c["category"], tuple(c["memory_ids"]), c["summary"])
        for c in store.get_clusters(limit=None)
    )


def reference_ranking(memories, formula, now, *, bonus_thread_id=None, keep=lambda memory: True, top_k=10):
    """The exact top-k by brute force: score desc, then newest (created_at, id) first."""
    kept = [memory for memory in memories if keep(memory)]
    scored = [(score_memory(formula, memory, now, bonus_thread_id), memory) for memory in kept]
    scored.sort(key=lambda pair: (pair[0], pair[1]["created_at"], pair[1]["id"]), reverse=True)
    return [(memory["id"], score) for score, memory in scored[:top_k]]


def matches(memory, pattern) -> bool:
    return contains(memory["metadata"], pattern or {})


# --- the migration chain ------------------------------------------------------------------------

FIRST = "001_initial_schema"
SECOND = "002_merge_thread_indexes"
THIRD = "003_never_reuse_ids"
FOURTH = "004_bigint_ids"
FIFTH = "005_metadata_keys"
POSTINGS = "006_text_postings"
DISTRIBUTE = "007_distribute_on_citus"
USER_METADATA = "008_user_metadata_index"


# The chain shipped with memoric; test-only migrations are numbered after it.
SHIPPED = [FIRST, SECOND, THIRD, FOURTH, FIFTH, POSTINGS, DISTRIBUTE, USER_METADATA]
HEAD = SHIPPED[-1]


MEMORIC_TABLES = ("memories", "memory_clusters", "memory_terms", "memory_documents")
# Tables memoric keeps on one dialect only, derived from the memories (SQLite's metadata keys).
DIALECT_TABLES = {"sqlite": ("memory_metadata_keys",), "postgresql": ()}


def applied(names: list[str]) -> str:
    """What `migrate upgrade` prints for applying `names`."""
    return "".join(f"Applied {name}\n" for name in names)


def sent_statements(database, call: Callable) -> list[tuple[str, object]]:
    """Run `call`; every (sql, params) it sent through `database`, in order."""
    sent = []

    def record(real, sql, params=None, *args, **kwargs):
        sent.append((sql, params))
        return real(sql, params, *args, **kwargs)

    with intercepted(database, record):
        call()
    return sent


def executed_plans(store: MemoryStore, call: Callable) -> list[str]:
    """The plans of the statements `call` sent, one after another, as they ran (steps not run say so)."""
    plan = []
    for sql, params in sent_statements(store.database, call):
        rows = store.database.execute_sql(
            f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", params
        ).fetchall()
        plan += [line for (line,) in rows]
    return plan


def steps_run(plan: list[str]) -> list[str]:
    """The lines of `plan` but the steps PostgreSQL never executed."""
    return [line for line in plan if "never executed" not in line]


def most_rows_read(lines: list[str]) -> float:
    """The most rows any of these plan lines says its step returned (`actual rows=`)."""
    return max(float(n) for line in lines for n in re.findall(r"actual rows=([\d.]+)", line))


def skip_unless_postgresql_decides(store: MemoryStore) -> None:
    """Skip a test of PostgreSQL's plans on SQLite, and on Citus, where each shard plans its own."""
    if store.is_sqlite:
        pytest.skip("SQLite's metadata keys hold the user already")
    if store.dialect.routes_by_user(store.database, "memories"):
        pytest.skip("on Citus the user's equality stays plain to route the statement; each shard plans")


def memoric_tables(store: MemoryStore) -> set[str]:
    """Every table memoric's schema has on the store's dialect."""
    return {*MEMORIC_TABLES, *DIALECT_TABLES[store.dialect.name]}


ADD_IMPORTANCE = '''"""Test-only: an `importance` column with an index."""

import peewee as pw


def migrate(migrator, database, *, fake=False):
    migrator.add_fields("memories", importance=pw.IntegerField(default=0))
    migrator.sql('CREATE INDEX IF NOT EXISTS "idx_memories_importance" ON "memories" ("importance")')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP INDEX IF EXISTS "idx_memories_importance"')
    migrator.remove_fields("memories", "importance")
'''


def shipped_files() -> list[Path]:
    return sorted(default_migrate_dir().glob("[0-9][0-9][0-9]_*.py"))


def chain(directory: Path, **extra: str) -> Path:
    """A migrations directory: the shipped chain plus `extra` files (name -> source) after its head."""
    directory.mkdir(parents=True, exist_ok=True)
    shipped = shipped_files()
    for path in shipped:
        shutil.copy(path, directory / path.name)
    for name, source in extra.items():
        assert name[:3] > shipped[-1].name[:3], f"test-only {name} must come after the shipped head"
        (directory / f"{name}.py").write_text(source, encoding="utf-8")
    return directory


def tables(store: MemoryStore) -> set[str]:
    """The tables of the database, SQLite's own (`sqlite_sequence`) left out."""
    return {table for table in store.database.get_tables() if not table.startswith("sqlite_")}


def schema(store: MemoryStore, table_names=MEMORIC_TABLES) -> dict:
    """Columns (type, nullability, default, primary key), indexes, SQLite's AUTOINCREMENT, per table;
    and SQLite's derived tables and triggers as stored."""
    tables = {
        table: {
            "columns": columns(store, table),
            "indexes": indexes(store, table),
            "autoincrement": autoincrement(store, table),
        }
        for table in table_names
    }
    return {**tables, "sqlite objects": sqlite_objects(store)}


def sqlite_objects(store: MemoryStore) -> list[tuple] | None:
    """SQLite: (type, name, SQL) of every trigger and dialect table, as stored; None on PostgreSQL."""
    if store.is_postgres:
        return None
    names = DIALECT_TABLES["sqlite"]
    marks = ", ".join("?" * len(names))
    sql = f"SELECT type, name, sql FROM sqlite_master WHERE type = 'trigger' OR name IN ({marks})"
    sql += " ORDER BY name"
    return store.database.execute_sql(sql, names).fetchall()


def autoincrement(store: MemoryStore, table: str) -> bool | None:
    """SQLite: whether the table's stored definition says AUTOINCREMENT; None on PostgreSQL."""
    if store.is_postgres:
        return None
    row = store.database.execute_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return row is not None and "AUTOINCREMENT" in row[0].upper()


def columns(store: MemoryStore, table: str) -> list[tuple]:
    database = store.database
    if store.is_sqlite:
        rows = database.execute_sql(f'PRAGMA table_info("{table}")').fetchall()
        return [
            (name, kind.upper(), bool(notnull), default, bool(pk))
            for _, name, kind, notnull, default, pk in rows
        ]
    rows = database.execute_sql(
        "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s "
        "ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [tuple(row) for row in rows]


def indexes(store: MemoryStore, table: str) -> dict[str, tuple]:
    database = store.database
    if store.is_sqlite:
        found = {}
        for _, name, unique, *_ in database.execute_sql(f'PRAGMA index_list("{table}")').fetchall():
            info = database.execute_sql(f'PRAGMA index_info("{name}")').fetchall()
            found[name] = (bool(unique), tuple(column for _, _, column in sorted(info)))
        return found
    rows = database.execute_sql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s",
        (table,),
    ).fetchall()
    return dict(rows)


def id_counters(store: MemoryStore) -> dict:
    """Where every id counter stands: SQLite's `sqlite_sequence` rows, or each PostgreSQL sequence's
    last value ({} where there are none yet)."""
    if store.is_sqlite:
        if not store.database.table_exists("sqlite_sequence"):
            return {}
        return dict(store.database.execute_sql("SELECT name, seq FROM sqlite_sequence").fetchall())
    query = "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = current_schema()"
    return dict(store.database.execute_sql(query).fetchall())


def history_names(store: MemoryStore) -> list[str]:
    rows = store.database.execute_sql(f'SELECT name FROM "{HISTORY_TABLE}" ORDER BY id').fetchall()
    return [name for (name,) in rows]


def all_rows(store: MemoryStore) -> dict[str, list]:
    """Every row of the memories and clusters tables (the other tables are derived from them)."""
    return {
        table: store.database.execute_sql(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
        for table in ("memories", "memory_clusters")
    }


# --- the CLI in a child process -----------------------------------------------------------------

CLI = "import sys; from memoric.cli import main; sys.exit(main())"


WAITING = "Waiting for the migration lock"


def start_cli(dsn: str, *args: str, cwd: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "MEMORIC_DATABASE_URL"}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "--dsn", dsn, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(process: subprocess.Popen, text: str, timeout: float = 60) -> str:
    """stderr of `process` up to `text` (fails if the process ends or the time runs out first).

    Reads the raw pipe so that no line can sit unseen in a Python buffer while select() waits.
    """
    descriptor, seen = process.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        ready = remaining > 0 and select.select([descriptor], [], [], remaining)[0]
        chunk = os.read(descriptor, 4096) if ready else b""
        if not chunk:
            process.kill()
            pytest.fail(f"never printed {text!r}; stderr so far: {seen.decode(errors='replace')!r}")
        seen += chunk
    return seen.decode()


def run_twice_at_once(store: MemoryStore, dsn: str, *args: str, cwd: Path) -> list[str]:
    """Two `memoric --dsn DSN ARGS` started while `store` holds the migration lock, released once
    both wait for it; their standard outputs, sorted (both must exit 0)."""
    with store.lock(LOCK_NAME):
        processes = [start_cli(dsn, *args, cwd=cwd) for _ in range(2)]
        for process in processes:
            read_until(process, WAITING)
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    return sorted(out for out, _ in outputs)


# --- transfer: a database full of awkward values ------------------------------------------------

T0 = dt.datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


TRICKY_METADATA = {"int": 1, "float": 1.0, "big": 2**62, "neg": -0.5, "bool": False, "none": None,
                   "list": [1, "1", 1.5, [True]], "nested": {"a.b": {"%s": "'; DROP TABLE memories; --"}},
                   "unicode": "żółw 🐢", "huge_float": 1e16, "tiny_float": -1.5e-300,
                   "floats": [2.5e300, 123456789012345678.0], "e+": "1e+16"}  # fmt: skip


def fill(store: MemoryStore) -> None:
    store.insert_memories(
        [
            {
                "user_id": f"user{i % 3}",
                "thread_id": f"t{i % 4}" if i % 5 else None,
                "namespace": "ns" if i % 7 == 0 else None,
                "tier": store.tiers[i % 3],
                "score": i % 101,
                "content": f"memory {i} — with ünïcode",
                "metadata": {**TRICKY_METADATA, "i": i},
                "related_threads": [f"t{(i + 1) % 4}"] if i % 2 else [],
                "summarized": i % 9 == 0,
                "created_at": T0 - dt.timedelta(hours=i),
                "updated_at": T0 - dt.timedelta(minutes=i),
            }
            for i in range(2500)
        ]
    )
    store.delete_memories(memory_ids=[5, 6, 7])  # ids with holes must survive
    store.upsert_cluster(user_id="user1", topic="a", category="general", memory_ids=[2, 8], summary="two")
    store.upsert_cluster(user_id="user2", topic="b", category="x", memory_ids=[3])


def snapshot(store: MemoryStore) -> list[list]:
    """Every memory and every cluster, in id order."""
    return [list(transfer_queries.iter_memories(store)), transfer_queries.all_clusters(store)]


def same_types(a, b) -> bool:
    """Whether two equal values have the same types all the way down (true is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(same_types(value, b[key]) for key, value in a.items())
    if isinstance(a, list):
        return all(map(same_types, a, b))
    return True


def assert_identical(got, expected) -> None:
    """Equal, and of the same JSON types all the way down."""
    assert got == expected
    assert same_types(got, expected), "equal values of different types"


HEADER = {"type": "header", "format": "memoric-export", "format_version": 1}


def dump_lines(records: list[dict], header: dict = HEADER) -> str:
    """The text of an export holding `header` and then these records, one JSON line each."""
    return "".join(json.dumps(record) + "\n" for record in (header, *records))


# --- concurrency: writers and an agent's configuration --------------------------------------------

WRITERS = 8


INSERTS_PER_WRITER = 500


def run_in_threads(count, target):
    errors = []

    def guarded(index):
        try:
            target(index)
        except Exception as exc:  # collected and asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def save_as_writer(memoric: Memoric, writer: int) -> None:
    """INSERTS_PER_WRITER memories of user `w<writer>` through `save`, as assert_every_write_landed reads."""
    for n in range(INSERTS_PER_WRITER):
        memoric.save(f"w{writer}", f"w{writer} n{n}", metadata={"writer": writer, "n": n})


def assert_every_write_landed(store):
    assert store.count_memories() == WRITERS * INSERTS_PER_WRITER
    for writer in range(WRITERS):
        rows = store.get_memories(user_id=f"w{writer}", limit=None)
        assert sorted(m["metadata"]["n"] for m in rows) == list(range(INSERTS_PER_WRITER))


AGENT_CONFIG = {
    "tiers": [
        {"name": "short_term", "expire_after_days": 7},
        {"name": "mid_term", "expire_after_days": 30, "trim_chars": 60},
        {"name": "long_term"},
    ],
    "summarization": {"min_records": 4, "max_chars": 300},
    "policies": {"batch_size": 50},
}


def agent_memoric(dsn: str, now: dt.datetime = NOW) -> Memoric:
    return Memoric(dsn, config=AGENT_CONFIG, clock=Clock(now))


def end_state(memoric: Memoric) -> tuple[list, list]:
    """Every memory (summaries without their ids: who writes first is free) and every cluster but its id."""
    memories = [
        (None, *row[1:]) if row[7] == [("kind", "thread_summary")] else row
        for row in memory_snapshot(memoric.db)
    ]
    clusters = sorted(row[1:] for row in cluster_snapshot(memoric.db))
    return sorted(memories, key=repr), clusters


# --- an application's own table in a migration -------------------------------------------------

LABELS = """
import peewee as pw


class Label(pw.Model):
    id = pw.AutoField()
    memory_id = pw.IntegerField()
    note = pw.TextField()

    class Meta:
        table_name = "labels"


def migrate(migrator, database, *, fake=False):
    migrator.sql(
        'CREATE TABLE IF NOT EXISTS "labels" ("id" INTEGER PRIMARY KEY, "memory_id" INTEGER NOT NULL, '
        '"note" TEXT NOT NULL)'
    )
    migrator.orm.add(Label)


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "labels"')
    migrator.orm.remove(Label)
"""


class LyingText(str):
    """A str subclass with no hash, equal to anything, whose methods lie about its characters."""

    __hash__ = None

    def __eq__(self, other):
        return True

    def __str__(self):
        return "lie"

    def lower(self):
        return "lie"

    def strip(self, chars=None):
        return ""


class PrintedText(str):
    """A str subclass that prints as another text (hashable, as a dict key must be)."""

    def __str__(self):
        return "lie"

    def __format__(self, spec):
        return "lie"


LOCK_WAITERS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def wait_for_a_lock_waiter(store, waiters: int = 1, unless: threading.Thread | None = None) -> None:
    """Return once `waiters` other sessions of the database wait for a lock, or the thread
    `unless` has ended without waiting (PostgreSQL; on SQLite a writer waits in BEGIN, which
    nothing shows, so this returns at once)."""
    if store.dialect.name == "sqlite":
        return
    stop = time.monotonic() + 60
    while _lock_waiters(store) < waiters:
        if unless is not None and not unless.is_alive():
            return
        assert time.monotonic() < stop, f"{waiters} sessions never waited for a lock"


def _lock_waiters(store) -> int:
    """Sessions waiting for a lock now (inside a transaction too: PostgreSQL keeps one view of
    the activity for a whole transaction unless it is cleared)."""
    store.database.execute_sql("SELECT pg_stat_clear_snapshot()")
    return store.database.execute_sql(LOCK_WAITERS).fetchone()[0]


def while_held(store, first: Callable[[Callable[[], None]], None], second: Callable[[], None]) -> list:
    """Run `first(pause)` in a thread until it calls `pause()` (holding whatever it holds), then
    `second()` in another until it waits for a lock (`wait_for_a_lock_waiter`) or ends; then let
    `first` go on. Each thread closes its connection of `store` at its end. The failures of
    both, in the order they came."""
    paused, go, failures = threading.Event(), threading.Event(), []

    def pause() -> None:
        paused.set()
        go.wait()

    def run(work, *args) -> None:
        try:
            work(*args)
        except BaseException as exc:  # reported by the caller
            failures.append(exc)
            paused.set()  # a first that failed before its pause must not hang the test
        finally:
            store.close()

    holder = threading.Thread(target=run, args=(first, pause))
    holder.start()
    paused.wait()
    waiter = threading.Thread(target=run, args=(second,))
    waiter.start()
    wait_for_a_lock_waiter(store, unless=waiter)
    go.set()
    for thread in (holder, waiter):
        thread.join()
    return failures
