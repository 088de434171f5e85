"""The migration chain on SQLite and PostgreSQL: upgrade and downgrade to the exact schema, 002's
index merge, and failures that leave nothing half-done."""

from __future__ import annotations

import peewee
import pytest

from memoric.db.models import (
    CLUSTER_INDEXES,
    GIN_INDEXES,
    MEMORY_INDEXES,
)
from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate import (
    HISTORY_TABLE,
    Migrations,
)
from tests.helpers.chain import (
    ADD_IMPORTANCE,
    FIRST,
    HEAD,
    SECOND,
    SHIPPED,
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
