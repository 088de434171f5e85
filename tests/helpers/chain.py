"""The migration chain's names, the schema readers, an application's own migration, and a facade on a
schema built from the models and stamped at head."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from memoric.migrate import HISTORY_TABLE, Migrations, default_migrate_dir
from memoric.migrate.transactions import intercepted

FIRST = "001_initial_schema"
SECOND = "002_merge_thread_indexes"
THIRD = "003_never_reuse_ids"
FOURTH = "004_bigint_ids"
FIFTH = "005_metadata_keys"
POSTINGS = "006_text_postings"
DISTRIBUTE = "007_distribute_on_citus"
USER_METADATA = "008_user_metadata_index"
UNICODE_TERMS = "009_fold_unicode_terms"
MISREAD_METADATA = "010_rewrite_misread_metadata"


# The chain shipped with memoric; test-only migrations are numbered after it.
SHIPPED = [
    FIRST, SECOND, THIRD, FOURTH, FIFTH, POSTINGS, DISTRIBUTE, USER_METADATA, UNICODE_TERMS, MISREAD_METADATA
]
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


def table_migration(table: str, columns: str = '"body" TEXT', *, adopt: bool = False, then: str = "") -> str:
    """Source of a test-only migration that creates `table` (or, with `adopt`, keeps one already
    there), then runs the SQL `then`; its rollback drops the table."""
    create = "CREATE TABLE IF NOT EXISTS" if adopt else "CREATE TABLE"
    statements = [f'{create} "{table}" ({columns})', *([then] if then else [])]
    body = "".join(f"    migrator.sql({sql!r})\n" for sql in statements)
    drop = f'DROP TABLE "{table}"'
    return (
        f"def migrate(migrator, database, *, fake=False):\n{body}\n\n"
        f"def rollback(migrator, database, *, fake=False):\n    migrator.sql({drop!r})\n"
    )


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


def facade(store, **options) -> Memoric:
    """A Memoric on the store's database, its schema (built from the models) stamped at head."""
    migrations = Migrations(store)
    if migrations.current() is None:
        migrations.stamp("head")
    return Memoric(store.dsn, **options)


def built(dsn: str) -> Memoric:
    """A Memoric whose database was built through the migration chain."""
    memoric = Memoric(dsn)
    memoric.ensure_schema()
    return memoric
