"""The migration chain on SQLite and PostgreSQL: schema, targets, failures, locking, drafts."""

from __future__ import annotations

import threading
from pathlib import Path

import peewee
import pytest

from memoric import Memoric
from memoric.db.dialects import citus
from memoric.db.models import (
    CLUSTER_INDEXES,
    GIN_INDEXES,
    MEMORY_INDEXES,
    JSONDocumentField,
    Memory,
)
from memoric.db.store import MemoryStore
from memoric.errors import LockTimeout, MemoricError, MigrationError
from memoric.migrate import (
    APP_HISTORY_TABLE,
    HISTORY_TABLE,
    LOCK_NAME,
    Migrations,
    history_model,
)
from tests.helpers import (
    ADD_IMPORTANCE,
    DISTRIBUTE,
    FIFTH,
    FIRST,
    FOURTH,
    HEAD,
    POSTINGS,
    SECOND,
    SHIPPED,
    THIRD,
    all_rows,
    chain,
    columns,
    history_names,
    indexes,
    memoric_tables,
    schema,
    shipped_files,
    tables,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster


FAILS_HALFWAY = '''"""Test-only: creates a table and an index, then fails."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "half_done" ("id" INTEGER PRIMARY KEY)')
    migrator.sql('CREATE INDEX "idx_memories_half" ON "memories" ("content")')
    migrator.sql('INSERT INTO "no_such_table" VALUES (1)')


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "half_done"')
'''


# --- helpers ---------------------------------------------------------------------------------


# --- upgrade, downgrade, the exact schema ----------------------------------------------------


def test_the_shipped_chain_is_first_then_head():
    assert [path.stem for path in shipped_files()] == SHIPPED


def test_upgrade_from_empty_builds_the_models_schema(store, model_schema):
    assert Migrations(store).upgrade() == SHIPPED
    assert tables(store) == {*memoric_tables(store), HISTORY_TABLE}
    assert schema(store) == model_schema
    memory_indexes = set(indexes(store, "memories"))
    assert set(MEMORY_INDEXES) <= memory_indexes
    assert set(CLUSTER_INDEXES) <= set(indexes(store, "memory_clusters"))
    assert (set(GIN_INDEXES) <= memory_indexes) is store.is_postgres
    assert bool(set(GIN_INDEXES) & memory_indexes) is store.is_postgres


def test_column_types_per_dialect(store):
    Migrations(store).upgrade()
    by_name = {column[0]: column for column in columns(store, "memories")}
    if store.is_postgres:
        assert by_name["metadata"][1:5] == ("jsonb", None, "NO", "'{}'::jsonb")
        assert by_name["related_threads"][4] == "'[]'::jsonb"
        assert by_name["created_at"][1] == "timestamp with time zone"
        assert by_name["summarized"][1:] == ("boolean", None, "NO", "false")
        assert by_name["user_id"][1:4] == ("character varying", 128, "NO")
        assert by_name["namespace"][3] == "YES"
    else:
        assert by_name["metadata"][1:4] == ("TEXT", True, "'{}'")
        assert by_name["related_threads"][3] == "'[]'"
        assert by_name["created_at"][1] == "DATETIME"
        assert by_name["score"][1:4] == ("INTEGER", True, "50")
        assert by_name["namespace"][2] is False


def test_migrated_schema_serves_the_store(store):
    Migrations(store).upgrade()
    memory_id = store.insert_memory(user_id="ada", content="likes tea", metadata={"topic": "food"})
    assert [m["id"] for m in store.get_memories(user_id="ada", where_metadata={"topic": "food"})] == [
        memory_id
    ]
    assert store.upsert_cluster(user_id="ada", topic="food", category="general", memory_ids=[memory_id]) > 0


def test_downgrade_base_leaves_only_the_history_table_and_upgrade_again(store, model_schema):
    migrations = Migrations(store)
    migrations.upgrade()
    assert migrations.downgrade("base") == list(reversed(SHIPPED))
    assert tables(store) == {HISTORY_TABLE}
    assert history_names(store) == []
    assert migrations.current() is None
    assert migrations.upgrade() == SHIPPED
    assert schema(store) == model_schema


def test_upgrade_adopts_tables_that_already_exist(store, model_schema):
    store.create_schema()
    assert Migrations(store).upgrade() == SHIPPED
    assert schema(store) == model_schema


def test_data_survives_downgrade_and_upgrade_of_a_later_migration(store, tmp_path):
    migrations = Migrations(
        store, migrate_dir=chain(tmp_path / "chain", **{"090_add_importance": ADD_IMPORTANCE})
    )
    assert migrations.upgrade(HEAD) == SHIPPED
    ids = [store.insert_memory(user_id="ada", content=f"memory {n}", metadata={"n": n}) for n in range(3)]
    cluster_id = store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids)
    before = store.get_memories(user_id="ada")

    assert migrations.upgrade() == ["090_add_importance"]
    values = store.database.execute_sql('SELECT importance FROM "memories" ORDER BY id').fetchall()
    assert values == [(0,), (0,), (0,)]
    assert "idx_memories_importance" in indexes(store, "memories")
    assert migrations.downgrade(confirm_data_loss=True) == ["090_add_importance"]
    assert "importance" not in {column[0] for column in columns(store, "memories")}
    assert store.get_memories(user_id="ada") == before
    assert migrations.upgrade() == ["090_add_importance"]
    assert store.get_memories(user_id="ada") == before
    assert store.get_clusters(user_id="ada")[0]["cluster_id"] == cluster_id
    assert set(MEMORY_INDEXES) <= set(indexes(store, "memories"))


# --- 002: one thread index instead of two ----------------------------------------------------

THREAD_INDEX, OLD_THREAD_INDEX = "idx_memories_user_thread", "idx_memories_user_thread_created"
THREAD_INDEXES_AT_001 = {
    THREAD_INDEX: ("user_id", "thread_id"),
    OLD_THREAD_INDEX: ("user_id", "thread_id", "created_at"),
}
THREAD_INDEXES_AT_002 = {THREAD_INDEX: ("user_id", "thread_id", "created_at")}


def thread_indexes(store: MemoryStore) -> dict[str, tuple[str, ...]]:
    """The thread indexes of `memories` with their columns in order, from the catalogue."""
    return {
        index.name: tuple(index.columns)
        for index in store.database.get_indexes("memories")
        if index.name.startswith(THREAD_INDEX)
    }


def index_oid(store: MemoryStore, name: str) -> int:
    """PostgreSQL: the index's object id, which a rename keeps and a rebuild does not."""
    return store.database.execute_sql("SELECT to_regclass(%s)::oid", (f'"{name}"',)).fetchone()[0]


def fill_threads(store: MemoryStore) -> dict[str, list]:
    """Memories in three threads of two users and a cluster; returns every row of both tables."""
    ids = [
        store.insert_memory(
            user_id=("ada", "bob")[n % 2], thread_id=f"t{n % 3}", content=f"memory {n}", metadata={"n": n}
        )
        for n in range(12)
    ]
    store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids[::2])
    return all_rows(store)


@pytest.fixture
def schema_at_first(new_dsn) -> dict:
    """The schema the first shipped migration alone builds, on this dialect."""
    reference = MemoryStore(new_dsn())
    Migrations(reference).upgrade(FIRST)
    built = schema(reference)
    reference.close()
    return built


def test_002_upgrade_leaves_one_thread_index_and_the_data_unchanged(store, model_schema, schema_at_first):
    migrations = Migrations(store)
    assert migrations.upgrade(FIRST) == [FIRST]
    assert schema(store) == schema_at_first
    assert thread_indexes(store) == THREAD_INDEXES_AT_001
    before = fill_threads(store)
    old_oid = index_oid(store, OLD_THREAD_INDEX) if store.is_postgres else None

    assert migrations.upgrade() == SHIPPED[1:]
    assert thread_indexes(store) == THREAD_INDEXES_AT_002
    assert OLD_THREAD_INDEX not in indexes(store, "memories")
    assert schema(store) == model_schema
    assert all_rows(store) == before
    if store.is_postgres:
        assert index_oid(store, THREAD_INDEX) == old_oid, "renamed, not rebuilt"
    thread = store.get_memories(user_id="ada", thread_id="t0")
    assert [m["content"] for m in thread] == ["memory 6", "memory 0"]


def test_002_downgrade_restores_both_001_thread_indexes(store, model_schema, schema_at_first):
    migrations = Migrations(store)
    assert migrations.upgrade() == SHIPPED
    before = fill_threads(store)
    # On Citus, 007's undo rebuilds the tables: 002's rename is checked from 002.
    assert migrations.downgrade(SECOND) == list(reversed(SHIPPED[2:]))
    oid = index_oid(store, THREAD_INDEX) if store.is_postgres else None

    assert migrations.downgrade("001") == [SECOND]
    assert migrations.current() == FIRST
    assert thread_indexes(store) == THREAD_INDEXES_AT_001
    assert schema(store) == schema_at_first
    assert all_rows(store) == before
    if store.is_postgres:
        assert index_oid(store, OLD_THREAD_INDEX) == oid, "renamed back, not rebuilt"

    assert migrations.upgrade() == SHIPPED[1:]
    assert thread_indexes(store) == THREAD_INDEXES_AT_002
    assert schema(store) == model_schema
    assert all_rows(store) == before


def test_002_renames_on_postgresql_and_rebuilds_on_sqlite(store):
    migrations = Migrations(store)
    migrations.upgrade(FIRST)
    statements = migrations.sql("upgrade", SECOND)
    renames = [s for s in statements if f'ALTER INDEX "{OLD_THREAD_INDEX}" RENAME TO "{THREAD_INDEX}"' in s]
    builds = [s for s in statements if s.lstrip().upper().startswith("CREATE INDEX")]
    if store.is_postgres:
        assert (len(renames), builds) == (1, [])
    else:
        assert renames == []
        assert builds == [
            f'CREATE INDEX "{THREAD_INDEX}" ON "memories" ("user_id", "thread_id", "created_at")'
        ]
    assert thread_indexes(store) == THREAD_INDEXES_AT_001, "--sql changes nothing"
    assert migrations.current() == FIRST


# --- failures --------------------------------------------------------------------------------


def test_a_failing_migration_leaves_schema_and_history_unchanged(store, tmp_path):
    migrations = Migrations(
        store, migrate_dir=chain(tmp_path / "chain", **{"090_fails_halfway": FAILS_HALFWAY})
    )
    assert migrations.upgrade(HEAD) == SHIPPED
    before = schema(store)
    with pytest.raises(MigrationError, match="090_fails_halfway") as failure:
        migrations.upgrade()
    assert isinstance(failure.value.__cause__, peewee.DatabaseError)
    assert "unchanged" in str(failure.value)
    assert "half_done" not in tables(store)
    assert schema(store) == before
    assert history_names(store) == SHIPPED
    assert migrations.pending() == ["090_fails_halfway"]
    store.insert_memory(user_id="ada", content="the store still works")


def test_failure_in_a_later_migration_keeps_the_earlier_ones_of_the_run(store, tmp_path):
    directory = chain(
        tmp_path / "chain", **{"090_add_importance": ADD_IMPORTANCE, "091_fails": FAILS_HALFWAY}
    )
    with pytest.raises(
        MigrationError,
        match=r"091_fails.*completed before it: 001_initial_schema, 002_merge_thread_indexes, 003_never_r",
    ):
        Migrations(store, migrate_dir=directory).upgrade()
    assert history_names(store) == [*SHIPPED, "090_add_importance"]
    assert "half_done" not in tables(store)


def test_a_failing_rollback_is_undone_and_named(store, tmp_path):
    broken = ADD_IMPORTANCE.replace(
        'migrator.remove_fields("memories", "importance")', "migrator.sql('DROP TABLE \"no_such_table\"')"
    )
    migrations = Migrations(store, migrate_dir=chain(tmp_path / "chain", **{"090_add_importance": broken}))
    migrations.upgrade()
    with pytest.raises(
        MigrationError, match=r"rollback of migration 090_add_importance failed.*no_such_table"
    ):
        migrations.downgrade()
    assert migrations.current() == "090_add_importance"
    assert "idx_memories_importance" in indexes(store, "memories")


def test_an_applied_migration_whose_file_is_gone_cannot_be_rolled_back(store, tmp_path):
    directory = chain(tmp_path / "chain", **{"090_add_importance": ADD_IMPORTANCE})
    Migrations(store, migrate_dir=directory).upgrade()
    (directory / "090_add_importance.py").unlink()
    migrations = Migrations(store, migrate_dir=directory)
    row = migrations.history()[-1]
    assert (row["name"], row["applied"], row["known"]) == ("090_add_importance", True, False)
    edited = r"lists migrations memoric's chain does not have \(090_add_importance\):.*the chain was edited"
    for call in (migrations.pending, migrations.downgrade, migrations.upgrade):
        with pytest.raises(MigrationError, match=edited):
            call()


def test_missing_directory_is_a_migration_error(store, tmp_path):
    with pytest.raises(MigrationError, match="does not exist"):
        Migrations(store, migrate_dir=tmp_path / "nowhere").upgrade()
    assert not (tmp_path / "nowhere").exists()


def test_refuses_to_run_inside_an_open_transaction(store):
    with store.database.atomic(), pytest.raises(MigrationError, match="transaction"):
        Migrations(store).upgrade()


# --- targets, history, stamp, sql ------------------------------------------------------------


@pytest.fixture
def longer(store, tmp_path) -> Migrations:
    """The shipped chain plus two test-only migrations after its head, on an empty database."""
    third = ADD_IMPORTANCE
    fourth = ADD_IMPORTANCE.replace("importance", "weight")
    return Migrations(
        store, migrate_dir=chain(tmp_path / "chain", **{"090_importance": third, "091_weight": fourth})
    )


def test_relative_and_named_targets(longer):
    assert longer.upgrade("+1") == [FIRST]
    assert longer.upgrade("091_weight") == [*SHIPPED[1:], "090_importance", "091_weight"]
    assert longer.downgrade("-2") == ["091_weight", "090_importance"]
    assert longer.upgrade("90") == ["090_importance"]
    assert longer.current() == "090_importance"
    assert longer.upgrade("002") == []
    assert longer.downgrade("001_initial_schema") == ["090_importance", *reversed(SHIPPED[1:])]
    assert longer.current() == FIRST
    assert longer.upgrade("head") == [*SHIPPED[1:], "090_importance", "091_weight"]
    assert longer.downgrade("head") == []
    assert longer.downgrade("8") == ["091_weight", "090_importance"]
    assert longer.downgrade() == [HEAD]
    assert longer.downgrade("base") == list(reversed(SHIPPED[:-1]))
    assert longer.current() is None


@pytest.mark.parametrize(
    ("method", "target", "message"),
    [
        (
            "upgrade",
            "nonsense",
            "unknown migration target 'nonsense'.*"
            "001_initial_schema, 002_merge_thread_indexes, 003_never_reuse_ids, 004_bigint_ids, "
            "005_metadata_keys, 006_text_postings, 007_distribute_on_citus, 008_user_metadata_index, "
            "090_importance, 091_weight",
        ),
        ("upgrade", "009", "unknown migration target '009'"),
        ("upgrade", "+0", "unknown migration target"),
        ("upgrade", "+11", "only 10 migration"),
        ("upgrade", "-1", "use `downgrade -1`"),
        ("downgrade", "-1", "only 0 migration"),
        ("downgrade", "+1", "use `upgrade \\+1`"),
        ("stamp", "090_nope", "unknown migration target"),
    ],
)
def test_bad_targets_are_migration_errors(longer, method, target, message):
    with pytest.raises(MigrationError, match=message):
        getattr(longer, method)(target)
    assert longer.current() is None


def test_history_pending_and_current(longer):
    assert longer.current() is None
    assert longer.pending() == [*SHIPPED, "090_importance", "091_weight"]
    assert HISTORY_TABLE not in tables(longer.store), "reading the state writes nothing"
    longer.upgrade("+9")
    history = longer.history()
    assert [(row["name"], row["applied"]) for row in history] == [
        (FIRST, True),
        (SECOND, True),
        (THIRD, True),
        (FOURTH, True),
        (FIFTH, True),
        (POSTINGS, True),
        (DISTRIBUTE, True),
        (HEAD, True),
        ("090_importance", True),
        ("091_weight", False),
    ]
    assert history[0]["applied_at"].utcoffset().total_seconds() == 0
    assert history[9]["applied_at"] is None
    assert longer.pending() == ["091_weight"]
    assert longer.current() == "090_importance"


def test_history_names_are_unique(store):
    Migrations(store).upgrade()
    with pytest.raises(peewee.IntegrityError):
        store.database.execute_sql(
            f"INSERT INTO \"{HISTORY_TABLE}\" (name, migrated_at) VALUES ('{HEAD}', CURRENT_TIMESTAMP)"
        )


def test_stamp_moves_the_version_without_ddl(longer):
    store = longer.store
    longer.upgrade()
    built = schema(store)
    assert longer.stamp("-1") == "090_importance"
    assert longer.stamp("-2") == DISTRIBUTE
    assert longer.stamp("+1") == HEAD
    assert longer.stamp("090") == "090_importance"
    assert history_names(store) == [*SHIPPED, "090_importance"]
    assert longer.stamp("head") == "091_weight"
    assert longer.pending() == []
    assert longer.stamp("base") is None
    assert history_names(store) == []
    assert schema(store) == built


def test_adopting_an_existing_database_with_stamp(store, model_schema):
    store.create_schema()
    memory_id = store.insert_memory(user_id="ada", content="kept")
    migrations = Migrations(store)
    assert migrations.stamp("head") == HEAD
    assert migrations.upgrade() == []
    assert store.get_memory(memory_id)["content"] == "kept"
    assert schema(store) == model_schema


def test_sql_shows_the_statements_and_changes_nothing(longer):
    store = longer.store
    statements = longer.sql("upgrade", "head")
    assert tables(store) == set()
    assert longer.pending() == [*SHIPPED, "090_importance", "091_weight"]
    text = "\n".join(statements)
    assert 'CREATE TABLE IF NOT EXISTS "memories"' in text
    assert ("USING GIN" in text) is store.is_postgres
    assert 'CREATE INDEX IF NOT EXISTS "idx_memories_weight"' in text
    assert f"'{FIRST}'" in text and f"'{HEAD}'" in text, "the history rows, parameters inlined"
    assert not any(s.lstrip().upper().startswith(("SAVEPOINT", "RELEASE")) for s in statements)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert all("create_distributed_table(" in s for s in selects), "only Citus's calls that distribute tables"
    assert bool(selects) is (store.is_postgres and citus.installed(store.database))

    longer.upgrade()
    assert longer.sql("upgrade", "head") == []
    down = longer.sql("downgrade", "-1")
    assert any('DROP INDEX IF EXISTS "idx_memories_weight"' in s for s in down)
    assert "weight" in {column[0] for column in columns(store, "memories")}
    assert longer.current() == "091_weight"
    with pytest.raises(MigrationError, match="direction"):
        longer.sql("sideways", "head")


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
        match=rf"7 pending .*\({', '.join(SHIPPED[1:])}\); run `memoric migrate upgrade`",
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
    assert store.database.pragma("foreign_keys") == 1, "the connection's setting is restored"


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


@pytest.fixture
def facade():
    core = pytest.importorskip("memoric.core")
    if not all(hasattr(core.Memoric, name) for name in ("init_db", "migrate")):
        pytest.skip("the Memoric facade has no migration members yet")
    return core.Memoric


def test_facade_builds_an_empty_database_on_first_use(facade, new_dsn):
    memoric = facade(dsn=new_dsn())
    memoric.save("ada", "likes tea")
    assert memoric.migrations.current() == HEAD
    assert memoric.migrate() == []
    memoric.close()


def test_facade_refuses_a_database_behind_head_unless_auto_migrate(facade, new_dsn):
    dsn = new_dsn()
    store = MemoryStore(dsn)
    store.create_schema()
    store.close()
    memoric = facade(dsn=dsn)
    with pytest.raises(MigrationError, match="memoric migrate upgrade"):
        memoric.save("ada", "likes tea")
    memoric.close()
    memoric = facade(dsn=dsn, auto_migrate=True)
    memoric.save("ada", "likes tea")
    assert memoric.migrations.current() == HEAD
    memoric.close()


def test_facade_init_db_records_head(facade, new_dsn):
    memoric = facade(dsn=new_dsn())
    memoric.init_db()
    assert memoric.migrations.pending() == []
    assert memoric.migrate() == []
    memoric.close()


# --- stamp records only what exists --------------------------------------------------------------

STAMP_MISSING = f"cannot stamp {FIRST}: tables memories, memory_clusters do not exist"
RECORDED_MISSING = (
    f"the history says {FIRST} is applied but tables memories, memory_clusters do not exist; the history "
    f"says {POSTINGS} is applied but tables memory_documents, memory_terms do not exist: "
    "run `memoric migrate stamp base` then `memoric migrate upgrade`"
)


@pytest.mark.parametrize("target", ["head", "1", "+2", FIRST])
def test_stamp_refuses_migrations_whose_tables_do_not_exist(store, target):
    """Stamp writes history, never DDL: over an empty database it used to leave head and no tables."""
    migrations = Migrations(store)
    with pytest.raises(MigrationError) as refused:
        migrations.stamp(target)
    assert STAMP_MISSING in str(refused.value) and "nothing was changed" in str(refused.value)
    assert tables(store) == set()


def test_stamp_names_only_the_missing_table(store):
    store.create_schema()
    store.database.execute_sql('DROP TABLE "memory_clusters"')
    with pytest.raises(MigrationError, match=f"cannot stamp {FIRST}: table memory_clusters does not exist"):
        Migrations(store).stamp("head")
    assert tables(store) == memoric_tables(store) - {"memory_clusters"}


@pytest.mark.parametrize("auto_migrate", [False, True])
def test_a_history_at_head_without_the_tables_is_named_with_the_way_out(store, auto_migrate):
    """What an earlier stamp on an empty database left: every call failed on `no such table`."""
    history = history_model(store.database)
    history.create_table()
    history.insert_many([{"name": name} for name in SHIPPED]).execute()
    with Memoric(dsn=store.dsn, auto_migrate=auto_migrate) as memoric:
        with pytest.raises(MigrationError) as refused:
            memoric.save("ada", "not written")
        assert str(refused.value) == RECORDED_MISSING
        assert tables(store) == {HISTORY_TABLE}
        memoric.migrations.stamp("base")
        assert memoric.migrate() == SHIPPED
        assert memoric.save("ada", "written") == 1
