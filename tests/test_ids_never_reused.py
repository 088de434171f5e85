"""Ids are never handed out twice, on SQLite and PostgreSQL, however the schema was built.

SQLite without AUTOINCREMENT gives a new row max(rowid) + 1, so the id of a deleted newest
memory came back, and a cluster still listing it then pointed at another user's memory.
Migration 003 rebuilds both tables with AUTOINCREMENT on SQLite (a no-op on PostgreSQL, whose
sequences never go back) and the models declare the same.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db.store import MemoryStore
from memoric.migrate import Migrations
from tests.helpers.chain import SECOND, SHIPPED, THIRD, all_rows, history_names, schema

BUILDS = ("chain", "models")


def build(store: MemoryStore, how: str) -> None:
    """The schema at head, through the migration chain or straight from the models."""
    if how == "chain":
        Migrations(store).upgrade()
    else:
        Migrations(store).init_db()


def sequence(store: MemoryStore) -> dict[str, int] | None:
    """SQLite: {table: last id handed out} from sqlite_sequence; None on PostgreSQL."""
    if store.is_postgres:
        return None
    return dict(store.database.execute_sql("SELECT name, seq FROM sqlite_sequence").fetchall())


@pytest.mark.parametrize("how", BUILDS)
def test_the_id_of_a_deleted_newest_memory_is_never_handed_out_again(store, how):
    build(store, how)
    ids = [store.insert_memory(user_id="alice", content=f"memory {n}") for n in range(3)]
    assert store.delete_memories(memory_ids=[ids[-1]]) == 1
    reopened = MemoryStore(store.dsn)  # a new connection: nothing is remembered in the process
    try:
        new_id = reopened.insert_memory(user_id="bob", content="private note")
    finally:
        reopened.close()
    assert new_id > ids[-1]


@pytest.mark.parametrize("how", BUILDS)
def test_the_id_of_a_deleted_newest_cluster_is_never_handed_out_again(store, how):
    build(store, how)
    memory_id = store.insert_memory(user_id="alice", content="likes tea")
    kept = store.upsert_cluster(user_id="alice", topic="food", category="c", memory_ids=[memory_id])
    newest = store.upsert_cluster(user_id="alice", topic="tea", category="c", memory_ids=[memory_id])
    assert store.delete_cluster(cluster_id=newest) == 1
    new_id = store.upsert_cluster(user_id="bob", topic="cars", category="c", memory_ids=[])
    assert new_id > newest > kept


def test_a_memory_a_cluster_still_lists_never_gets_the_id_of_another(store):
    """At 002 alice's newest memory is deleted while her cluster lists it; 003 keeps that id used."""
    migrations = Migrations(store)
    migrations.upgrade(SECOND)
    ids = [store.insert_memory(user_id="alice", content=f"alice {n}") for n in range(3)]
    store.upsert_cluster(user_id="alice", topic="t", category="c", memory_ids=ids)
    store.delete_memories(memory_ids=[ids[-1]])
    # as memoric before this version left it: a delete kept the clusters listing the memory
    store.MemoryCluster.update(memory_ids=ids, memory_count=3).execute()

    assert migrations.upgrade(THIRD) == [THIRD]
    bob = store.insert_memory(user_id="bob", content="bob's private note")
    listed = store.get_clusters(user_id="alice")[0]["memory_ids"]
    assert bob not in listed
    assert store.get_memory(listed[-1]) is None, "the listed id still resolves to nobody's memory"


def fill(store: MemoryStore) -> list[int]:
    """Two users' memories and clusters; the newest memory and the newest cluster deleted."""
    ids = [
        store.insert_memory(
            user_id=("ada", "bob")[n % 2], thread_id=f"t{n % 3}", content=f"m{n}", metadata={"n": n}
        )
        for n in range(10)
    ]
    store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids[0:8:2])
    newest = store.upsert_cluster(user_id="bob", topic="t", category="c", memory_ids=ids[1:9:2])
    store.delete_memories(memory_ids=[ids[-1]])
    store.delete_cluster(cluster_id=newest)
    return ids


def test_cli_upgrade_from_002_keeps_ids_rows_and_seeds_the_sequence(dsn, store, new_dsn):
    Migrations(store).upgrade(SECOND)
    ids = fill(store)
    before = all_rows(store)
    reference = MemoryStore(new_dsn())
    Migrations(reference).init_db()

    result = CliRunner().invoke(main, ["--dsn", dsn, "migrate", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "\n".join(f"Applied {name}" for name in SHIPPED[2:]) in result.stdout
    assert all_rows(store) == before
    assert schema(store) == schema(reference)
    reference.close()
    if store.is_sqlite:
        assert sequence(store) == {"memories": ids[-2], "memory_clusters": 1}
    assert store.insert_memory(user_id="ada", content="after") > ids[-2]
    assert store.upsert_cluster(user_id="ada", topic="new", category="c", memory_ids=[]) > 1


def test_003_rollback_restores_002_and_upgrade_again_keeps_everything(store, new_dsn):
    at_002 = MemoryStore(new_dsn())
    Migrations(at_002).upgrade(SECOND)
    migrations = Migrations(store)
    migrations.upgrade()
    fill(store)
    before = all_rows(store)

    assert migrations.downgrade(SECOND) == list(reversed(SHIPPED[2:]))
    assert schema(store) == schema(at_002)
    assert all_rows(store) == before
    assert history_names(store)[-1] == SECOND
    assert migrations.upgrade() == SHIPPED[2:]
    assert all_rows(store) == before
    at_002.close()


def test_003_keeps_what_an_application_added_to_the_tables(store):
    """A column, a view and a trigger of the application's own survive the SQLite rebuild."""
    Migrations(store).upgrade(SECOND)
    run = store.database.execute_sql
    run('ALTER TABLE "memories" ADD COLUMN "importance" INTEGER')
    run('CREATE TABLE "audit" ("memory_id" INTEGER)')
    run('CREATE VIEW "ada_memories" AS SELECT "id", "importance" FROM "memories" WHERE "user_id" = \'ada\'')
    if store.is_sqlite:
        run(
            'CREATE TRIGGER "audit_insert" AFTER INSERT ON "memories" '
            'BEGIN INSERT INTO "audit" VALUES (NEW."id"); END'
        )
    memory_id = store.insert_memory(user_id="ada", content="kept")
    run('UPDATE "memories" SET "importance" = 7')

    Migrations(store).upgrade(THIRD)
    assert run('SELECT "id", "importance" FROM "ada_memories"').fetchall() == [(memory_id, 7)]
    later = store.insert_memory(user_id="ada", content="later")
    if store.is_sqlite:
        assert run('SELECT "memory_id" FROM "audit" ORDER BY 1').fetchall() == [(memory_id,), (later,)]


def test_the_facade_never_reuses_an_id(new_dsn):
    with Memoric(dsn=new_dsn()) as memoric:
        first = memoric.save("alice", "one")
        newest = memoric.save("alice", "two")
        memoric.db.delete_memories(memory_ids=[newest])
        assert memoric.save("bob", "three") > newest > first


@pytest.mark.parametrize("how", ["init_db", "ensure_schema"])
def test_tables_left_without_history_go_through_the_chain_and_stop_reusing_ids(store, new_dsn, how):
    """Tables in 002's shape without history (an older version's): init_db and auto_migrate upgrade them."""
    Migrations(store).upgrade(SECOND)
    ids = [store.insert_memory(user_id="ada", content=f"m{n}") for n in range(3)]
    store.database.execute_sql('DROP TABLE "migratehistory"')
    if how == "init_db":
        Migrations(store).init_db()
    else:
        Migrations(store).ensure_schema(auto_migrate=True)
    reference = MemoryStore(new_dsn())
    Migrations(reference).init_db()
    assert schema(store) == schema(reference)
    reference.close()
    assert history_names(store) == SHIPPED
    store.delete_memories(memory_ids=[ids[-1]])
    assert store.insert_memory(user_id="bob", content="new") > ids[-1]
