"""No migration hands an id out again: a SQLite table rebuild (an application's `add_fields` with a
database default, `change_fields`) started the AUTOINCREMENT counter at the highest id stored, so
the id of a memory deleted before it went to the next memory saved, another user's."""

from __future__ import annotations

import pytest

from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate import Migrations
from tests.helpers.app_chain import app_chain, clear_environment
from tests.helpers.chain import HEAD

ADD_MOOD = """import peewee as pw


def migrate(migrator, database, *, fake=False):
    mood = pw.CharField(max_length=20, default="calm", constraints=[pw.SQL("DEFAULT 'calm'")])
    migrator.add_fields("memories", mood=mood)


def rollback(migrator, database, *, fake=False):
    migrator.remove_fields("memories", "mood")
"""
WIDEN_TOPIC = """import peewee as pw


def migrate(migrator, database, *, fake=False):
    summary = pw.TextField(default="", constraints=[pw.SQL("DEFAULT ''")])
    migrator.change_fields("memory_clusters", summary=summary)


def rollback(migrator, database, *, fake=False):
    pass
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    clear_environment(monkeypatch)


def saved_then_forgotten(store: MemoryStore) -> list[int]:
    """Five memories of ada, the last two deleted; the ids of all five."""
    ids = [store.insert_memory(user_id="ada", content=f"secret {n}") for n in range(5)]
    store.delete_memories(memory_ids=ids[3:])
    return ids


@pytest.mark.parametrize("rollback_too", [False, True])
def test_a_rebuilt_memories_table_keeps_its_id_counter(store, tmp_path, rollback_too):
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_mood": ADD_MOOD}))
    migrations.upgrade(HEAD)
    ids = saved_then_forgotten(store)
    migrations.upgrade()
    if rollback_too:
        store.delete_memories(memory_ids=[ids[2]])
        migrations.downgrade("app:base", confirm_data_loss=True)
    assert store.insert_memory(user_id="bob", content="bob's note") == ids[-1] + 1


def test_a_rebuilt_clusters_table_keeps_its_id_counter(store, tmp_path):
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_summary": WIDEN_TOPIC}))
    migrations.upgrade(HEAD)
    memory = store.insert_memory(user_id="ada", content="x")
    clusters = [
        store.upsert_cluster(user_id="ada", topic=f"t{n}", category="c", memory_ids=[memory])
        for n in range(3)
    ]
    for cluster in clusters[1:]:
        store.delete_cluster(cluster_id=cluster)
    migrations.upgrade()
    again = store.upsert_cluster(user_id="bob", topic="t", category="c", memory_ids=[])
    assert again == clusters[-1] + 1


REBUILD_ID = """import peewee as pw


def migrate(migrator, database, *, fake=False):
    migrator.change_fields("memories", id=pw.BigAutoField())


def rollback(migrator, database, *, fake=False):
    pass
"""


def test_a_migration_taking_the_id_counter_away_is_refused(tmp_path):
    """SQLite's `change_fields` of the id rebuilt the table without AUTOINCREMENT: nothing left to
    raise, and the id of the memory deleted last went to the next one saved, after every delete.
    (peewee-migrate cannot write that change for PostgreSQL at all.)"""
    store = MemoryStore(f"sqlite:///{tmp_path / 'ids.db'}")
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_id": REBUILD_ID}))
    migrations.upgrade(HEAD)
    ids = saved_then_forgotten(store)
    with pytest.raises(MigrationError, match="it leaves memories without the counter"):
        migrations.upgrade()
    store.delete_memories(memory_ids=[ids[2]])
    assert store.insert_memory(user_id="bob", content="bob's note") == ids[-1] + 1
    store.close()
