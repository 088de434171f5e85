"""A table of the same name that is not the chain's is refused, never adopted, on both dialects.

Migration 001 creates its tables with `IF NOT EXISTS`, and SQLite reads a double-quoted name
that is no column as a string, so `migrate upgrade` on a file holding another application's
`memories` used to report "at head" (indexes on constants) and a later `downgrade base` dropped
that application's table. Now upgrade, `--sql`, stamp, init-db and the facade all refuse it
before writing anything, naming the table and what differs; and after every migration no index
on the chain's tables may name a column the table lacks.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate import Migrations, history_model
from tests.helpers.chain import HEAD, LABELS, SHIPPED, chain, history_names, indexes, schema, tables
from tests.helpers.dialects import one_line_error

THEIRS = 'CREATE TABLE "memories" ("id" INTEGER PRIMARY KEY, "user_id" TEXT, "body" TEXT, "created_at" TEXT)'
MISSING = (
    "missing columns namespace, thread_id, content, tier, score, "
    "metadata, related_threads, summarized, updated_at"
)


@pytest.fixture
def theirs(store):
    """Another application's `memories` table with one row; returns how it looks."""
    store.database.execute_sql(THEIRS)
    store.database.execute_sql("INSERT INTO \"memories\" VALUES (1, 'x', 'their row', 'today')")
    return snapshot(store)


def snapshot(store: MemoryStore) -> dict:
    """Every table, the foreign table's columns, indexes and rows."""
    return {
        "tables": tables(store),
        "memories": schema(store, ["memories"]),
        "rows": store.database.execute_sql('SELECT * FROM "memories" ORDER BY 1').fetchall(),
    }


def assert_refused(message: str) -> None:
    assert "table memories already exists and is not the one 001_initial_schema creates" in message
    assert MISSING in message
    assert "column user_id is " in message and "nothing was changed" in message


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.upgrade(),
        lambda m: m.upgrade("001"),
        lambda m: m.sql("upgrade", "head"),
        lambda m: m.stamp("head"),
        lambda m: m.init_db(),
        lambda m: m.ensure_schema(auto_migrate=True),
        lambda m: m.ensure_schema(),
    ],
    ids=["upgrade", "upgrade-001", "sql", "stamp", "init_db", "ensure_schema-auto", "ensure_schema"],
)
def test_another_applications_memories_table_is_refused_before_anything_is_written(store, theirs, call):
    migrations = Migrations(store)
    with pytest.raises(MigrationError) as refused:
        call(migrations)
    assert_refused(str(refused.value))
    assert snapshot(store) == theirs
    assert migrations.current() is None


@pytest.mark.parametrize(
    "args",
    [("migrate", "upgrade"), ("migrate", "upgrade", "--sql"), ("migrate", "stamp", "head"), ("init-db",)],
    ids=["upgrade", "sql", "stamp", "init-db"],
)
def test_the_cli_refuses_it_in_one_line(cli, store, theirs, args):
    assert_refused(one_line_error(cli(*args)))
    assert snapshot(store) == theirs


def test_the_facade_refuses_it(dsn, store, theirs):
    with Memoric(dsn=dsn, auto_migrate=True) as memoric, pytest.raises(MigrationError, match=MISSING):
        memoric.save("ada", "hello")
    assert snapshot(store) == theirs


def test_downgrade_base_after_a_refusal_leaves_their_table(cli, store, theirs):
    one_line_error(cli("migrate", "upgrade"))
    result = cli("migrate", "downgrade", "base")
    assert (result.exit_code, "Nothing to roll back" in result.stdout) == (0, True), result.output
    assert snapshot(store) == theirs


def test_a_column_of_another_type_is_refused(store):
    store.create_schema()
    store.database.execute_sql('ALTER TABLE "memories" DROP COLUMN "score"')
    store.database.execute_sql('ALTER TABLE "memories" ADD COLUMN "score" TEXT NOT NULL DEFAULT \'high\'')
    before = tables(store)
    with pytest.raises(
        MigrationError, match=r"(?i)table memories .*column score is text not null, expected integer"
    ):
        Migrations(store).upgrade()
    assert tables(store) == before


def test_any_migration_that_creates_a_table_is_checked_and_extra_required_columns_refused(store, tmp_path):
    """Not only memoric's tables: an application's migration creating `labels` is checked too."""
    migrations = Migrations(store, migrate_dir=chain(tmp_path / "chain", **{"090_labels": LABELS}))
    migrations.upgrade(HEAD)
    store.database.execute_sql(
        'CREATE TABLE "labels" ("id" INTEGER PRIMARY KEY, "memory_id" INTEGER NOT NULL, '
        '"note" TEXT NOT NULL, "owner" TEXT NOT NULL)'
    )
    with pytest.raises(
        MigrationError,
        match=r"(?i)table labels already exists and is not the one 090_labels creates: .*owner",
    ):
        migrations.upgrade()
    assert migrations.current() == HEAD
    store.database.execute_sql('ALTER TABLE "labels" DROP COLUMN "owner"')
    assert migrations.upgrade() == ["090_labels"], "the same shape is adopted"


def test_memorics_own_tables_built_from_the_models_are_adopted_with_their_data(store):
    store.create_schema()
    memory_id = store.insert_memory(user_id="ada", content="kept")
    store.database.execute_sql('ALTER TABLE "memories" ADD COLUMN "importance" INTEGER')
    assert Migrations(store).upgrade() == SHIPPED
    assert store.get_memory(memory_id)["content"] == "kept"


def test_an_index_on_a_column_the_table_lacks_fails_its_migration(store, tmp_path):
    """SQLite would build it on the string 'no_such_column'; PostgreSQL fails on its own."""
    bad = """
def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE INDEX "idx_memories_nothing" ON "memories" ("user_id", "no_such_column")')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP INDEX "idx_memories_nothing"')
"""
    migrations = Migrations(store, migrate_dir=chain(tmp_path / "chain", **{"090_bad_index": bad}))
    migrations.upgrade(HEAD)
    with pytest.raises(MigrationError, match=r"090_bad_index failed and was undone.*no_such_column"):
        migrations.upgrade()
    assert "idx_memories_nothing" not in indexes(store, "memories")
    assert history_names(store) == SHIPPED


def test_expression_partial_and_quoted_string_indexes_pass_the_check(store, tmp_path):
    good = """
def migrate(migrator, database, *, fake=False):
    migrator.sql(
        'CREATE INDEX "idx_memories_lower" ON "memories" ((lower("content"))) WHERE "tier" = \\'"x"\\''
    )


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP INDEX "idx_memories_lower"')
"""
    migrations = Migrations(store, migrate_dir=chain(tmp_path / "chain", **{"090_good_index": good}))
    assert migrations.upgrade() == [*SHIPPED, "090_good_index"]
    assert "idx_memories_lower" in indexes(store, "memories")


def test_an_index_an_old_version_built_on_a_constant_stops_the_next_migration(store, theirs):
    """A database the old code adopted (SQLite): its constant indexes fail the next migration."""
    if store.is_postgres:
        pytest.skip("PostgreSQL never builds an index on a missing column")
    # What the old code's create_schema did: memory_clusters, and indexes on constants, as 001 made them.
    store.database.create_tables([store.Memory, store.MemoryCluster], safe=True)
    history = history_model(store.database)
    history.create_table()
    history.insert_many([{"name": name} for name in SHIPPED[:2]]).execute()
    with pytest.raises(
        MigrationError,
        match=r'003_never_reuse_ids failed.*index idx_memories_user_tier on memories names "tier"',
    ):
        Migrations(store).upgrade()
    assert store.database.execute_sql('SELECT * FROM "memories"').fetchall() == theirs["rows"]
    assert history_names(store) == SHIPPED[:2]


def test_a_clean_database_still_builds_through_001(store):
    runner = CliRunner()
    result = runner.invoke(main, ["--dsn", store.dsn, "migrate", "upgrade"])
    assert result.exit_code == 0, result.output
    assert history_names(store) == SHIPPED


# --- a history table of another application ----------------------------------------------------

THEIR_HISTORY = (
    'CREATE TABLE "migratehistory" ("id" INTEGER PRIMARY KEY, "name" VARCHAR(255) NOT NULL, '
    '"migrated_at" TIMESTAMP NOT NULL)'
)
FOREIGN_HISTORY = (
    "the history table migratehistory lists migrations memoric's chain does not have (001_users, "
    "002_orders): it belongs to another application, or the chain was edited; give memoric a "
    "database or schema of its own"
)


@pytest.fixture
def their_history(store):
    """Another peewee-migrate application's `migratehistory` (001_users, 002_orders); returns how it looks."""
    store.database.execute_sql(THEIR_HISTORY)
    store.database.execute_sql(
        "INSERT INTO \"migratehistory\" VALUES (1, '001_users', '2024-01-02 03:04:05'), "
        "(2, '002_orders', '2024-01-02 03:04:06')"
    )
    return history_snapshot(store)


def history_snapshot(store: MemoryStore) -> dict:
    """Every table, the history table's indexes and rows."""
    return {
        "tables": tables(store),
        "indexes": indexes(store, "migratehistory"),
        "rows": store.database.execute_sql('SELECT id, name FROM "migratehistory" ORDER BY 1').fetchall(),
    }


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.upgrade(),
        lambda m: m.downgrade("base"),
        lambda m: m.stamp("base"),
        lambda m: m.stamp("head"),
        lambda m: m.sql("upgrade", "head"),
        lambda m: m.init_db(),
        lambda m: m.ensure_schema(auto_migrate=True),
        lambda m: m.current(),
        lambda m: m.pending(),
    ],
    ids=[
        "upgrade",
        "downgrade",
        "stamp-base",
        "stamp-head",
        "sql",
        "init_db",
        "ensure_schema",
        "current",
        "pending",
    ],
)
def test_another_applications_history_is_named_before_anything_is_replayed(store, their_history, call):
    with pytest.raises(MigrationError) as refused:
        call(Migrations(store))
    assert str(refused.value) == FOREIGN_HISTORY
    assert history_snapshot(store) == their_history


def test_history_marks_their_migrations_unknown(store, their_history):
    rows = Migrations(store).history()
    assert [(row["name"], row["applied"], row["known"]) for row in rows] == [
        *[(name, False, True) for name in SHIPPED],
        ("001_users", True, False),
        ("002_orders", True, False),
    ]


def test_the_facade_names_their_history(store, their_history):
    with Memoric(dsn=store.dsn, auto_migrate=True) as memoric, pytest.raises(MigrationError) as refused:
        memoric.save("ada", "not written")
    assert str(refused.value) == FOREIGN_HISTORY
    assert history_snapshot(store) == their_history


@pytest.mark.parametrize(
    "args",
    [("migrate", "upgrade"), ("migrate", "stamp", "base"), ("migrate", "current"), ("init-db",)],
    ids=["upgrade", "stamp-base", "current", "init-db"],
)
def test_the_cli_names_their_history_in_one_line(cli, store, their_history, args):
    assert one_line_error(cli(*args)) == f"Error: {FOREIGN_HISTORY}"
    assert history_snapshot(store) == their_history


def test_the_cli_history_lists_their_migrations_as_unknown(cli, store, their_history):
    result = cli("migrate", "history")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == [
        "unknown  001_users  2024-01-02 03:04:05 UTC",
        "unknown  002_orders  2024-01-02 03:04:06 UTC",
    ]
    assert history_snapshot(store) == their_history
