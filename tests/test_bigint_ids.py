"""Ids are 64-bit on both dialects: past 2**31 - 1 a store keeps saving, importing and copying.

PostgreSQL's SERIAL columns stopped at 2,147,483,647 while SQLite's INTEGER key goes to
2**63 - 1: a SQLite export with larger ids could not be loaded into PostgreSQL, and a store
whose sequence reached the end refused every save. Migration 004 makes both id columns and
their sequences BIGINT on PostgreSQL; its rollback refuses while an id needs the extra bits.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from memoric.db import policy_queries
from memoric.db.store import MemoryStore
from memoric.errors import MemoricError, MigrationError, ValidationError
from memoric.migrate import Migrations
from memoric.transfer import export_jsonl, import_jsonl
from tests.helpers.chain import FOURTH, HEAD, SHIPPED, THIRD, all_rows, id_counters, schema

PAST_32_BITS = 2**31
LARGEST = 2**63 - 1
ID_COLUMNS = (("memories", "id"), ("memory_clusters", "cluster_id"))


def id_columns(store: MemoryStore) -> dict[str, str]:
    """{table: the declared type of its id column}, as the catalogue reports it."""
    found = store.dialect.columns(store.database, ["memories", "memory_clusters"])
    return {
        "memories": found["memories"]["id"].type,
        "memory_clusters": found["memory_clusters"]["cluster_id"].type,
    }


def move_counters_to(store: MemoryStore, last: int, tables=ID_COLUMNS) -> None:
    """Make the id counters of `tables` hand out `last + 1` next, as after saving that many rows."""
    for table, column in tables:
        if store.is_postgres:
            store.database.execute_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), {last})"
            )
        else:
            store.database.execute_sql("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (last, table))


@pytest.mark.parametrize("how", ["chain", "models"])
def test_saves_go_on_past_two_billion_ids(store, how):
    if how == "chain":
        Migrations(store).upgrade()
    else:
        Migrations(store).init_db()
    store.insert_memory(user_id="ada", content="first")
    store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=[])
    move_counters_to(store, PAST_32_BITS - 1)

    memory_id = store.insert_memory(user_id="ada", content="the two-billionth")
    cluster_id = store.upsert_cluster(user_id="ada", topic="u", category="c", memory_ids=[memory_id])
    assert (memory_id, cluster_id) == (PAST_32_BITS, PAST_32_BITS)
    assert store.get_memory(memory_id)["content"] == "the two-billionth"
    assert store.get_clusters(user_id="ada", topic="u")[0]["memory_ids"] == [memory_id]


def test_an_export_with_64_bit_ids_imports_on_both_dialects(store):
    Migrations(store).upgrade()
    header = {"type": "header", "format": "memoric-export", "format_version": 1}
    memory = {"type": "memory", "id": LARGEST, "user_id": "ada", "content": "the last id there is"}
    cluster = {
        "type": "cluster",
        "cluster_id": PAST_32_BITS,
        "user_id": "ada",
        "topic": "t",
        "category": "c",
        "memory_ids": [LARGEST],
        "memory_count": 1,
        "summary": "",
    }
    import_jsonl(store, [json.dumps(line) for line in (header, memory, cluster)])
    assert store.get_memory(LARGEST)["content"] == "the last id there is"
    assert store.get_clusters(user_id="ada")[0]["memory_ids"] == [LARGEST]
    again = io.StringIO()
    export_jsonl(store, again)
    assert json.loads(again.getvalue().splitlines()[1])["id"] == LARGEST


def test_upgrade_from_003_widens_the_ids_and_keeps_every_row(store, new_dsn):
    migrations = Migrations(store)
    migrations.upgrade(THIRD)
    at_003 = schema(store)
    ids = [store.insert_memory(user_id="ada", content=f"m{n}", metadata={"n": n}) for n in range(5)]
    store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids)
    before = all_rows(store)
    narrow = id_columns(store)

    assert migrations.upgrade() == SHIPPED[3:]
    assert all_rows(store) == before
    reference = MemoryStore(new_dsn())
    Migrations(reference).init_db()
    assert schema(store) == schema(reference), "the chain builds what the models declare"
    reference.close()
    if store.is_postgres:
        assert narrow == {"memories": "integer", "memory_clusters": "integer"}
        assert id_columns(store) == {"memories": "bigint", "memory_clusters": "bigint"}

    assert migrations.downgrade(THIRD) == list(reversed(SHIPPED[3:]))
    assert schema(store) == at_003
    assert all_rows(store) == before


def test_the_rollback_refuses_while_an_id_needs_64_bits(store):
    migrations = Migrations(store)
    migrations.upgrade()
    store.insert_memory(user_id="ada", content="small")
    wide = store.insert_memory(id=PAST_32_BITS, user_id="ada", content="wide")
    before, built = all_rows(store), schema(store)

    if store.is_postgres:
        with pytest.raises(
            MigrationError, match=rf"memories\.id has reached {PAST_32_BITS}.*cannot be narrowed"
        ):
            migrations.downgrade(THIRD)
        assert (migrations.current(), all_rows(store), schema(store)) == (HEAD, before, built)
    else:
        rolled_back = migrations.downgrade(THIRD)
        assert rolled_back == list(reversed(SHIPPED[3:])), "SQLite's integer key held 64 bits before 004"
        assert store.get_memory(wide)["content"] == "wide"


def test_a_view_on_the_ids_stops_the_upgrade_naming_it_and_changes_nothing(store):
    migrations = Migrations(store)
    migrations.upgrade(THIRD)
    store.insert_memory(user_id="ada", content="kept")
    store.database.execute_sql('CREATE VIEW "ada_notes" AS SELECT "id", "content" FROM "memories"')
    before, at_003 = all_rows(store), schema(store)

    if store.is_postgres:
        with pytest.raises(
            MigrationError, match="view\\(s\\) ada_notes read it: drop them, run this migration"
        ):
            migrations.upgrade(FOURTH)
        assert (migrations.current(), all_rows(store), schema(store)) == (THIRD, before, at_003)
    else:
        assert migrations.upgrade(FOURTH) == [FOURTH], "nothing changes type on SQLite"
    assert store.database.execute_sql('SELECT "content" FROM "ada_notes"').fetchall() == [("kept",)]


HEADER = {"type": "header", "format": "memoric-export", "format_version": 1}


def export_lines(memory_ids: list[int], cluster_ids: list[int]) -> list[str]:
    """An export of ada's memories with these ids, and of clusters with these ids listing all of them."""
    memories = [{"type": "memory", "id": i, "user_id": "ada", "content": f"memory {i}"} for i in memory_ids]
    clusters = [
        {"type": "cluster", "cluster_id": i, "user_id": "ada", "topic": f"topic {i}", "category": "c",
         "memory_ids": memory_ids, "memory_count": len(memory_ids), "summary": ""}
        for i in cluster_ids
    ]  # fmt: skip
    return [json.dumps(line) for line in (HEADER, *memories, *clusters)]


def refused_new_ids(table: str, needed: int, top: int) -> str:
    return re.escape(
        f"{table} needs {needed} new ids but has only {LARGEST - top} left: ids end at {LARGEST} "
        f"and it has used them up to {top}; nothing was written"
    )


def test_new_ids_that_would_pass_the_largest_id_are_refused_before_any_counter_moves(store):
    Migrations(store).upgrade()
    store.insert_memory(user_id="ada", content="first")
    store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=[1])
    lines = export_lines([1, 2, 3], [1, 2])
    move_counters_to(store, LARGEST - 1, tables=[("memory_clusters", "cluster_id")])
    counters, before = id_counters(store), all_rows(store)
    with pytest.raises(ValidationError, match=refused_new_ids("memory_clusters", 2, LARGEST - 1)):
        import_jsonl(store, lines, new_ids=True)
    assert (id_counters(store), all_rows(store)) == (counters, before), "the memories' counter too"

    move_counters_to(store, 10)
    move_counters_to(store, LARGEST - 2, tables=[("memories", "id")])
    counters = id_counters(store)
    with pytest.raises(ValidationError, match=refused_new_ids("memories", 3, LARGEST - 2)):
        import_jsonl(store, lines, new_ids=True)
    assert (id_counters(store), all_rows(store)) == (counters, before)

    move_counters_to(store, LARGEST - 3, tables=[("memories", "id")])
    assert import_jsonl(store, lines, new_ids=True) == {"memories": 3, "clusters": 2, "skipped": 0}
    ids = sorted(memory["id"] for memory in store.get_memories(user_id="ada", limit=None))
    assert ids == [1, LARGEST - 2, LARGEST - 1, LARGEST]
    assert store.get_clusters(user_id="ada", topic="topic 2")[0]["memory_ids"] == [
        LARGEST - 2, LARGEST - 1, LARGEST
    ]  # fmt: skip


def test_an_import_keeping_ids_up_to_the_largest_is_taken_whole_near_the_top(store):
    Migrations(store).upgrade()
    move_counters_to(store, LARGEST - 5)
    lines = export_lines([LARGEST - 1, LARGEST], [LARGEST])
    assert import_jsonl(store, lines) == {"memories": 2, "clusters": 1, "skipped": 0}
    assert import_jsonl(store, lines) == {"memories": 0, "clusters": 0, "skipped": 3}
    assert store.get_memory(LARGEST)["content"] == f"memory {LARGEST}"


SAVES = {
    "insert_memory": lambda store: store.insert_memory(user_id="ada", content="one more"),
    "insert_memories": lambda store: store.insert_memories([{"user_id": "ada", "content": "more"}]),
    "write_summaries": lambda store: policy_queries.write_summaries(
        store, [({"user_id": "ada", "content": "a summary", "tier": "long_term"}, [1])]
    ),
    "upsert_cluster": lambda store: store.upsert_cluster(
        user_id="ada", topic="new", category="c", memory_ids=[1]
    ),
    "upsert_clusters": lambda store: store.upsert_clusters(
        user_id="ada", clusters=[{"topic": "new", "category": "c", "memory_ids": [1], "summary": ""}]
    ),
}


@pytest.mark.parametrize("save", SAVES)
def test_a_save_once_the_largest_id_is_handed_out_says_no_id_left(store, save):
    Migrations(store).upgrade()
    store.insert_memory(user_id="ada", content="first")
    store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=[1])
    move_counters_to(store, LARGEST)
    before = all_rows(store)
    table = "memory_clusters" if "cluster" in save else "memories"
    message = f"no id left: {table} has handed out the largest id there is ({LARGEST})"
    with pytest.raises(MemoricError, match=re.escape(message)):
        SAVES[save](store)
    assert all_rows(store) == before
