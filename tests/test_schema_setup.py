"""Building a database's schema: init_db and ensure_schema, the facade on first use, the migration
lock, SQLite's foreign keys during migrations, and new migration files."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import peewee
import pytest

from memoric import Memoric
from memoric.db.models import (
    JSONDocumentField,
    Memory,
)
from memoric.db.store import MemoryStore
from memoric.errors import ConfigError, LockTimeout, MemoricError, MigrationError
from memoric.migrate import (
    APP_HISTORY_TABLE,
    HISTORY_TABLE,
    LOCK_NAME,
    Migrations,
)
from tests.helpers.chain import (
    ADD_IMPORTANCE,
    FIRST,
    HEAD,
    SHIPPED,
    chain,
    columns,
    history_names,
    indexes,
    schema,
    table_migration,
    tables,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster


# --- init_db and ensure_schema ---------------------------------------------------------------


def test_init_db_then_upgrade_is_a_no_op(store, model_schema):
    migrations = Migrations(store)
    migrations.init_db()
    assert migrations.current() == HEAD
    assert schema(store) == model_schema
    assert migrations.upgrade() == []
    migrations.init_db()
    assert history_names(store) == SHIPPED


def test_init_db_refuses_a_database_behind_head(store, tmp_path):
    migrations = Migrations(
        store, migrate_dir=chain(tmp_path / "chain", **{"090_add_importance": ADD_IMPORTANCE})
    )
    migrations.upgrade(HEAD)
    with pytest.raises(MigrationError, match=f"at {HEAD}, behind head.*memoric migrate upgrade"):
        migrations.init_db()
    assert history_names(store) == SHIPPED


def test_ensure_schema_builds_an_empty_database_through_the_chain(store):
    migrations = Migrations(store)
    migrations.ensure_schema()
    assert history_names(store) == SHIPPED
    migrations.ensure_schema()
    assert history_names(store) == SHIPPED


def test_ensure_schema_refuses_a_database_behind_head(store, tmp_path):
    directory = chain(tmp_path / "chain", **{"090_add_importance": ADD_IMPORTANCE})
    Migrations(store, migrate_dir=directory).upgrade(HEAD)
    migrations = Migrations(store, migrate_dir=directory)
    with pytest.raises(
        MigrationError,
        match=r"1 pending .*\(090_add_importance\); run `memoric migrate upgrade`.*auto_migrate",
    ):
        migrations.ensure_schema()
    assert migrations.current() == HEAD
    migrations.ensure_schema(auto_migrate=True)
    assert migrations.current() == "090_add_importance"


def test_ensure_schema_refuses_a_database_at_the_first_shipped_migration(store):
    migrations = Migrations(store)
    migrations.upgrade(FIRST)
    with pytest.raises(
        MigrationError,
        match=rf"{len(SHIPPED) - 1} pending .*\({', '.join(SHIPPED[1:])}\); run `memoric migrate upgrade`",
    ):
        migrations.ensure_schema()
    assert migrations.current() == FIRST
    migrations.ensure_schema(auto_migrate=True)
    assert history_names(store) == SHIPPED


def test_ensure_schema_refuses_tables_without_history(store):
    store.create_schema()
    with pytest.raises(MigrationError, match="memoric migrate upgrade"):
        Migrations(store).ensure_schema()
    Migrations(store).ensure_schema(auto_migrate=True)
    assert history_names(store) == SHIPPED


STOPPING = """
def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "half_built" ("id" INTEGER)')
    if not fake:
        raise {stop}


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "half_built"')
"""


@pytest.mark.parametrize("stop", ["KeyboardInterrupt", "RuntimeError('disk full')"])
def test_a_first_build_stopped_midway_leaves_the_database_empty_and_is_built_next_time(store, tmp_path, stop):
    """A stop (Ctrl-C, SIGTERM) or a failure in the last migration of a first build: the ones
    applied before it are rolled back, so the next call builds the database instead of refusing
    it as behind head."""
    directory = chain(tmp_path / "chain", **{"090_stops": STOPPING.format(stop=stop)})
    expected = KeyboardInterrupt if stop == "KeyboardInterrupt" else MigrationError
    with pytest.raises(expected, match=None if stop == "KeyboardInterrupt" else "the build was rolled back"):
        Migrations(store, migrate_dir=directory).ensure_schema()
    assert Migrations(store, migrate_dir=directory).current() is None
    assert tables(store) <= {"migratehistory"}
    (directory / "090_stops.py").unlink()
    Migrations(store, migrate_dir=directory).ensure_schema()
    assert history_names(store) == SHIPPED


ADOPTING = table_migration("legacy", '"x" INTEGER', adopt=True)
FILLING = table_migration("notes", then='INSERT INTO "notes" ("body") VALUES (\'written meanwhile\')')


def test_a_first_build_that_fails_keeps_a_table_it_adopted_with_its_rows(store, tmp_path):
    """Rolling back the build would drop a table that held rows before it: it stays where it
    stopped instead, and says so."""
    store.database.execute_sql('CREATE TABLE "legacy" ("x" INTEGER)')
    store.database.execute_sql('INSERT INTO "legacy" ("x") VALUES (42)')
    steps = {"090_adopt_legacy": ADOPTING, "091_fails": STOPPING.format(stop="RuntimeError('disk full')")}
    directory = chain(tmp_path / "chain", **steps)
    with pytest.raises(
        MigrationError, match=r"disk full.*; the build stopped there: run `memoric migrate upgrade`"
    ):
        Migrations(store, migrate_dir=directory).ensure_schema()
    assert store.database.execute_sql('SELECT "x" FROM "legacy"').fetchall() == [(42,)]
    assert Migrations(store, migrate_dir=directory).current() == "090_adopt_legacy"


def test_a_first_build_stopped_after_rows_arrived_keeps_them(store, tmp_path):
    """Rows written while the build ran (here by one of its migrations; on PostgreSQL also by
    another process once memoric's chain is applied) are never rolled back with it."""
    steps = {"090_notes": FILLING, "091_stops": STOPPING.format(stop="KeyboardInterrupt")}
    directory = chain(tmp_path / "chain", **steps)
    with pytest.raises(KeyboardInterrupt):
        Migrations(store, migrate_dir=directory).ensure_schema()
    assert store.database.execute_sql('SELECT "body" FROM "notes"').fetchall() == [("written meanwhile",)]
    assert Migrations(store, migrate_dir=directory).current() == "090_notes"


def test_ensure_schema_after_downgrade_base_rebuilds(store):
    migrations = Migrations(store)
    migrations.upgrade()
    migrations.downgrade("base")
    migrations.ensure_schema()
    assert migrations.current() == HEAD


# --- locking ---------------------------------------------------------------------------------


def test_a_held_lock_times_out_and_reports_waiting(store):
    waits = []
    other = MemoryStore(store.dsn)
    try:
        with other.lock(LOCK_NAME):
            migrations = Migrations(store, lock_timeout=0.2, on_wait=lambda: waits.append(1))
            with pytest.raises(LockTimeout, match="migrations"):
                migrations.upgrade()
    finally:
        other.close()
    assert waits == [1]
    assert migrations.current() is None
    assert migrations.upgrade() == SHIPPED


def test_concurrent_upgrades_in_threads_apply_each_migration_once(store, tmp_path):
    directory = chain(tmp_path / "chain", **{"090_add_importance": ADD_IMPORTANCE})
    holder = MemoryStore(store.dsn)
    both_waiting = threading.Barrier(3)
    results, errors = [], []

    def upgrade():
        worker = MemoryStore(store.dsn)
        try:
            results.append(Migrations(worker, migrate_dir=directory, on_wait=both_waiting.wait).upgrade())
        except Exception as exc:
            errors.append(exc)
        finally:
            worker.close()

    with holder.lock(LOCK_NAME):
        threads = [threading.Thread(target=upgrade) for _ in range(2)]
        for thread in threads:
            thread.start()
        both_waiting.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=60)
    holder.close()
    assert errors == []
    assert sorted(results, key=len) == [[], [*SHIPPED, "090_add_importance"]]
    assert history_names(store) == [*SHIPPED, "090_add_importance"]


# --- SQLite: foreign keys stay off during migrations -----------------------------------------

PARENT_CHILD = """
def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "parent" ("id" INTEGER PRIMARY KEY, "name" TEXT)')
    migrator.sql(
        'CREATE TABLE "child" ("id" INTEGER PRIMARY KEY, '
        '"parent_id" INTEGER NOT NULL REFERENCES "parent" ("id") ON DELETE CASCADE)'
    )
    migrator.sql("INSERT INTO parent VALUES (1, 'p')")
    migrator.sql("INSERT INTO child VALUES (1, 1)")


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "child"')
    migrator.sql('DROP TABLE "parent"')
"""
REBUILD_PARENT = """
def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "parent_new" ("id" INTEGER PRIMARY KEY, "name" TEXT NOT NULL DEFAULT \\'\\')')
    migrator.sql('INSERT INTO "parent_new" SELECT "id", "name" FROM "parent"')
    migrator.sql('DROP TABLE "parent"')
    migrator.sql('ALTER TABLE "parent_new" RENAME TO "parent"')


def rollback(migrator, database, *, fake=False):
    pass
"""
ORPHAN = """
def migrate(migrator, database, *, fake=False):
    migrator.sql("INSERT INTO child VALUES (2, 99)")


def rollback(migrator, database, *, fake=False):
    pass
"""


@pytest.fixture
def sqlite_only(dialect):
    if dialect != "sqlite":
        pytest.skip("SQLite foreign-key handling")


@pytest.mark.usefixtures("sqlite_only")
def test_sqlite_table_rebuild_does_not_cascade_even_with_foreign_keys_on(store, tmp_path):
    store.database.pragma("foreign_keys", 1)
    directory = chain(tmp_path / "chain", **{"090_parent_child": PARENT_CHILD, "091_rebuild": REBUILD_PARENT})
    Migrations(store, migrate_dir=directory).upgrade()
    assert store.database.execute_sql("SELECT COUNT(*) FROM child").fetchone() == (1,)
    # the run ends its session, and what it left there: the next call has memoric's own settings
    assert store.database.pragma("foreign_keys") == 0


@pytest.mark.usefixtures("sqlite_only")
def test_sqlite_foreign_key_violation_fails_the_migration(store, tmp_path):
    directory = chain(tmp_path / "chain", **{"090_parent_child": PARENT_CHILD, "091_orphan": ORPHAN})
    migrations = Migrations(store, migrate_dir=directory)
    with pytest.raises(MigrationError, match=r"091_orphan.*foreign key violations"):
        migrations.upgrade()
    assert migrations.current() == "090_parent_child"
    assert store.database.execute_sql("SELECT COUNT(*) FROM child").fetchone() == (1,)


@pytest.mark.usefixtures("sqlite_only")
def test_sqlite_store_connections_do_not_enforce_foreign_keys(store):
    assert store.database.pragma("foreign_keys") == 0


@pytest.mark.usefixtures("sqlite_only")
def test_a_store_that_builds_its_schema_in_another_applications_file_goes_on_in_wal_mode(tmp_path):
    """The file was opened in its own journal mode, memoric's tables not yet there: the store
    that built them switches it, not only the next process to open it."""
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE notes (text)")
        connection.commit()
    store = MemoryStore(f"sqlite:///{path}")
    try:
        assert store.database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "delete"
        Migrations(store).upgrade()
        assert store.database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


# --- new migration files ---------------------------------------------------------------------


def load(path: Path) -> dict:
    scope: dict = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), scope)
    return scope


def test_create_writes_the_template_into_the_app_chain(store, tmp_path):
    migrations = Migrations(store, app_dir=tmp_path / "app")
    path = migrations.create("Add importance, please!")
    assert path == tmp_path / "app" / "001_add_importance_please.py"
    scope = load(path)
    assert {"migrate", "rollback", "pw"} <= set(scope), "the template imports peewee as pw"
    assert "fake=False" in path.read_text()
    assert migrations.pending() == [*SHIPPED, "app:001_add_importance_please"]
    assert migrations.upgrade() == [*SHIPPED, "app:001_add_importance_please"]
    assert migrations.downgrade() == ["app:001_add_importance_please"]
    assert migrations.create("next").name == "002_next.py"
    with pytest.raises(MigrationError, match="message"):
        migrations.create("  !! ")


def test_auto_draft_at_head_finds_no_changes(store, tmp_path):
    with pytest.raises(MigrationError, match="no changes"):
        Migrations(store, app_dir=tmp_path / "app").create("nothing", auto=True)
    assert not (tmp_path / "app").exists(), "nothing written, not even the directory"


def test_auto_draft_from_empty_chain_builds_the_models_schema(store, tmp_path, model_schema):
    (tmp_path / "empty").mkdir()
    migrations = Migrations(store, migrate_dir=tmp_path / "empty", app_dir=tmp_path / "drafts")
    path = migrations.create("initial", auto=True)
    source = path.read_text()
    assert "DRAFT" in source
    assert "mf.JSONDocumentField" in source and "pw_pext" not in source
    assert "USING GIN" in source and "isinstance(database, pw.PostgresqlDatabase)" in source
    assert migrations.upgrade() == ["app:001_initial"]
    store.dialect.distribute(store.database)  # on Citus, what 007 does to the tables; elsewhere nothing
    drafted = {**schema(store), "sqlite objects": model_schema["sqlite objects"]}
    assert drafted == model_schema, "a draft holds the models' tables (SQLite's keys index is not one)"
    with pytest.raises(MigrationError, match="no changes"):
        migrations.create("again", auto=True)
    assert migrations.downgrade("base") == ["app:001_initial"]
    assert tables(store) == {APP_HISTORY_TABLE}


def test_auto_draft_adds_a_json_field_and_an_index(store, tmp_path):
    class Memory2(Memory):
        labels = JSONDocumentField(default=list, constraints=[peewee.SQL("DEFAULT '[]'")])

        class Meta:
            table_name = "memories"

    Memory2.add_index(Memory2.user_id, Memory2.labels, name="idx_memories_user_labels")
    migrations = Migrations(store, app_dir=tmp_path / "app")
    path = migrations.create("labels", auto=[Memory2])
    source = path.read_text()
    assert "labels=mf.JSONDocumentField(constraints=[SQL(\"DEFAULT '[]'\")], default=list)" in source
    assert "idx_memories_user_labels" in source
    assert "remove_fields('memories', 'labels')" in source
    assert "memory_clusters" not in source, "a table the models do not name is left alone"
    migrations.upgrade()
    assert "labels" in {column[0] for column in columns(store, "memories")}
    assert "idx_memories_user_labels" in indexes(store, "memories")
    store.insert_memory(user_id="ada", content="after the draft")
    migrations.downgrade(confirm_data_loss=True)
    assert "labels" not in {column[0] for column in columns(store, "memories")}
    assert store.count_memories(user_id="ada") == 1


def test_store_errors_are_memoric_errors(store):
    store.database.execute_sql(f'CREATE TABLE "{HISTORY_TABLE}" ("oops" INTEGER)')
    with pytest.raises(MemoricError):
        Migrations(store).current()


# --- the facade ------------------------------------------------------------------------------


def test_facade_builds_an_empty_database_on_first_use(new_dsn):
    memoric = Memoric(dsn=new_dsn())
    memoric.save("ada", "likes tea")
    assert memoric.migrations.current() == HEAD
    assert memoric.migrate() == []
    memoric.close()


def test_facade_with_create_false_refuses_an_empty_database_and_creates_nothing(new_dsn, dialect, tmp_path):
    dsn = new_dsn()
    with Memoric(dsn=dsn, create=False) as memoric:
        if dialect == "sqlite":
            with pytest.raises(ConfigError, match=r"there is no database at .*: nothing was created"):
                memoric.db.count_memories()
            assert list(tmp_path.iterdir()) == []
            sqlite3.connect(memoric.store.database_file).close()  # an empty SQLite file
        with pytest.raises(MigrationError, match="holds no memoric schema: nothing was created"):
            memoric.db.count_memories()
        assert tables(memoric.store) == set()
        assert list(tmp_path.glob("*.lock")) == []
    with Memoric(dsn=dsn) as memoric:
        memoric.save("ada", "likes tea")
    with Memoric(dsn=dsn, create=False) as memoric:
        assert memoric.db.count_memories() == 1


def test_facade_refuses_a_database_behind_head_unless_auto_migrate(new_dsn):
    dsn = new_dsn()
    store = MemoryStore(dsn)
    store.create_schema()
    store.close()
    memoric = Memoric(dsn=dsn)
    with pytest.raises(MigrationError, match="memoric migrate upgrade"):
        memoric.save("ada", "likes tea")
    memoric.close()
    memoric = Memoric(dsn=dsn, auto_migrate=True)
    memoric.save("ada", "likes tea")
    assert memoric.migrations.current() == HEAD
    memoric.close()


def test_facade_init_db_records_head(new_dsn):
    memoric = Memoric(dsn=new_dsn())
    memoric.init_db()
    assert memoric.migrations.pending() == []
    assert memoric.migrate() == []
    memoric.close()
