"""The metadata index: filters answer as the reference does, through every write, on both dialects.

On SQLite `memory_metadata_keys` holds the (name, value) keys of each memory's metadata, kept by
triggers. These tests check that it never misses a match (a pattern's keys are always among the
keys of a document containing it), that every write path leaves it exactly what a rebuild from the
memories gives, that the migration builds it for a database with memories and rolls it back, and
that a filter reads it only when it is selective. On PostgreSQL the same filters run on the GIN
index and must give the same answers.
"""

from __future__ import annotations

import importlib.util
import io

import pytest
from hypothesis import HealthCheck, given, settings

from memoric import Memoric
from memoric.db.dialects import sqlite_keys
from memoric.db.jsonfilter import contains
from memoric.errors import MemoricError
from memoric.migrate import Migrations, default_migrate_dir
from memoric.transfer.export import export_jsonl
from memoric.transfer.writing import copy_database, import_jsonl
from tests.helpers.chain import FIFTH, FOURTH, HEAD, all_rows, schema, tables
from tests.test_jsonfilter import cases

PATTERNS = [
    {"topic": "travel"},
    {"topic": "food", "tags": ["b"]},
    {"tags": ["a"]},
    {"n": 1},
    {"n": 1.0},
    {"flag": True},
    {"flag": None},
    {"nested": {"tier": "gold"}},
    {"items": [{"sku": "x1"}]},
    {"kind": "thread_summary"},
    {"none": "such"},
    {"nested": {}},
]


def metadata_for(i: int) -> dict:
    """A document with scalars, arrays, nested objects and objects in arrays, varied by `i`."""
    return {
        "topic": ["travel", "food", "work"][i % 3],
        "tags": [["a"], ["a", "b"], ["b", "c"], []][i % 4],
        "n": [1, 1.0, 2, True][i % 4],
        "flag": [True, False, None][i % 3],
        "nested": {"tier": ["gold", "silver"][i % 2]},
        "items": [{"sku": f"x{i % 5}"}, {"sku": "y"}],
    }


def posted(store) -> list[tuple]:
    """The keys table's rows, sorted."""
    return sorted(store.database.execute_sql(f"SELECT * FROM {sqlite_keys.TABLE}").fetchall(), key=repr)


def rebuilt(store) -> list[tuple]:
    """The rows the keys table holds when built afresh from the memories."""
    sql = sqlite_keys.keys_of("m.metadata", ", m.user_id, m.id", "memories AS m, ")
    return sorted(set(store.database.execute_sql(sql).fetchall()), key=repr)


def assert_filters_match_the_reference(store) -> None:
    """Every pattern's answer, per user and for everyone, is what the reference finds."""
    rows = store.get_memories(limit=None)
    for pattern in PATTERNS:
        for user in (None, "ada", "bob"):
            expected = [
                r["id"] for r in rows if contains(r["metadata"], pattern) and user in (None, r["user_id"])
            ]
            found = store.get_memories(user_id=user, where_metadata=pattern, limit=None)
            assert [r["id"] for r in found] == expected, (pattern, user)
            assert store.count_memories(user_id=user, where_metadata=pattern) == len(expected)
            page = store.get_memories(user_id=user, where_metadata=pattern, limit=2, offset=1)
            assert [r["id"] for r in page] == expected[1:3], (pattern, user)
    if sqlite_keys.TABLE in tables(store):
        assert posted(store) == rebuilt(store)


def fill(store, count: int = 24) -> list[int]:
    return [
        store.insert_memory(
            user_id=("ada", "bob")[i % 2], thread_id=f"t{i % 3}", content=f"m{i}", metadata=metadata_for(i)
        )
        for i in range(count)
    ]


# --- the index never misses -------------------------------------------------------------------


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=cases)
def test_a_pattern_a_document_contains_has_no_key_the_document_lacks(case):
    """What makes reading only the rarest key's memories exact: it is held by every match."""
    document, pattern = case
    if not isinstance(pattern, dict) or not contains(document, pattern):
        return
    held = set(sqlite_keys.pattern_keys(document))
    missing = [key for key in sqlite_keys.pattern_keys(pattern) if key not in held]
    assert not missing, (document, pattern)


def test_keys_are_names_and_values_with_numbers_as_doubles_and_literals_apart():
    keys = sqlite_keys.pattern_keys({"a": 1, "b": [True, None, "x", 2.5], "c": {"d": False}, "e": [{"f": 0}]})
    assert set(keys) == {
        ("a", 1.0),
        ("b", b"\x01"),
        ("b", b"\x00"),
        ("b", "x"),
        ("b", 2.5),
        ("d", b"\x02"),
        ("f", 0.0),
    }
    assert sqlite_keys.pattern_keys({"big": 2**60, "huge": 1e300, "a": [[1]]}) == (), (
        "numbers past 2**53 and scalars in nested arrays are left to the exact test"
    )


# --- every write keeps it --------------------------------------------------------------------


def test_every_write_path_leaves_filters_exact(db, tmp_path):
    ids = fill(db)
    assert_filters_match_the_reference(db)
    db.insert_memories(
        [{"user_id": "bob", "content": f"b{i}", "metadata": metadata_for(i + 7)} for i in range(20)]
        + [{"id": 10_000, "user_id": "ada", "content": "explicit", "metadata": {"topic": "travel"}}]
    )
    assert_filters_match_the_reference(db)
    db.update_metadata(memory_id=ids[0], new_metadata={"topic": "food", "tags": ["b"]})
    db.update_metadata(memory_id=ids[1], new_metadata={})
    db.update_tier(memory_ids=ids[2:6], new_tier="long_term")
    db.update_content(memory_id=ids[6], new_content="changed")
    assert_filters_match_the_reference(db)
    db.delete_memories(memory_ids=ids[7:12])
    db.delete_memories(user_id="bob", memory_ids=ids[12:16])
    assert_filters_match_the_reference(db)
    mark = db.database.param
    db.database.execute_sql(f"UPDATE memories SET user_id = 'bob' WHERE id = {mark}", (ids[16],))
    db.database.execute_sql(f"UPDATE memories SET id = 20000 WHERE id = {mark}", (ids[17],))
    assert_filters_match_the_reference(db)

    export = io.StringIO()
    export_jsonl(db, export)
    db.truncate()
    assert db.get_memories(where_metadata={"topic": "travel"}, limit=None) == []
    assert_filters_match_the_reference(db)
    import_jsonl(db, export.getvalue().splitlines())
    assert_filters_match_the_reference(db)


def test_a_copy_and_the_policies_keep_it(dsn, new_dsn):
    with Memoric(dsn, auto_migrate=True) as memoric:
        for i in range(12):
            memoric.save("ada", f"fact {i} about the trip", thread_id="t1", metadata=metadata_for(i))
        memoric.run_policies()
        assert_filters_match_the_reference(memoric.db)
        with Memoric(new_dsn(), auto_migrate=True) as target:
            target.ensure_schema()
            copy_database(memoric.db, target.db)
            assert_filters_match_the_reference(target.db)
            assert target.db.get_memories(limit=None) == memoric.db.get_memories(limit=None)
        memoric.forget("ada")
        assert_filters_match_the_reference(memoric.db)


def test_a_bulk_insert_that_fails_in_the_database_leaves_no_key_behind(db):
    taken = db.insert_memory(user_id="ada", content="first", metadata={"topic": "kept"})
    rows = [{"user_id": "ada", "content": "x", "metadata": {"topic": "lost"}}] * 3
    with pytest.raises(MemoricError):
        db.insert_memories([*rows, {"id": taken, "user_id": "ada", "content": "clash"}])
    assert [m["content"] for m in db.get_memories(limit=None)] == ["first"]
    assert db.get_memories(where_metadata={"topic": "lost"}, limit=None) == []
    assert_filters_match_the_reference(db)


# --- the migration -----------------------------------------------------------------------------


def test_the_migration_builds_the_keys_of_existing_memories_and_rolls_back(store):
    migrations = Migrations(store)
    migrations.upgrade(FOURTH)
    at_004, built_tables = schema(store), tables(store)
    fill(store, 60)
    before = all_rows(store)

    assert migrations.upgrade(FIFTH) == [FIFTH]
    assert all_rows(store) == before
    assert_filters_match_the_reference(store)
    if store.is_sqlite:
        assert len(posted(store)) > 60 * 5, "every memory's keys were posted"

    assert migrations.downgrade(FOURTH) == [FIFTH], "dropping an index of the memories needs no confirmation"
    assert (schema(store), tables(store), all_rows(store)) == (at_004, built_tables, before)
    assert_filters_match_the_reference(store)
    assert migrations.upgrade(FIFTH) == [FIFTH]
    assert_filters_match_the_reference(store)


def test_the_migration_builds_in_batches(store):
    """Ids far apart (2**62 among them: the build walks the ids, it does not count through them)."""
    migrations = Migrations(store)
    migrations.upgrade(FOURTH)
    for memory_id in (1, 2, 50_000, 50_001, 130_000, 2**62):
        store.insert_memory(
            id=memory_id, user_id="ada", content="x", metadata={"topic": "travel", "id": memory_id}
        )
    migrations.upgrade()
    found = store.get_memories(user_id="ada", where_metadata={"topic": "travel"}, limit=None)
    assert [m["id"] for m in found] == [2**62, 130_000, 50_001, 50_000, 2, 1]
    if store.is_sqlite:
        assert posted(store) == rebuilt(store)


# --- when the index is read --------------------------------------------------------------------


def test_a_rare_key_is_read_and_a_common_one_walks_the_newest_rows(db):
    if db.is_postgres:
        pytest.skip("PostgreSQL chooses between its GIN index and its B-trees itself")
    db.insert_memories(
        [{"user_id": "ada", "content": f"m{i}", "metadata": {"topic": "common", "n": i}} for i in range(300)]
    )
    rare = db.dialect.metadata_key(db.database, {"topic": "common", "n": 7}, "ada", enough=40)
    assert (rare.name, rare.value) == ("n", 7.0), "the rarest key of the pattern"
    assert db.dialect.metadata_key(db.database, {"topic": "common"}, "ada", enough=40) is None
    assert db.dialect.metadata_key(db.database, {"topic": "absent"}, None, enough=40).value == "absent"
    assert db.dialect.metadata_key(db.database, {"x": {}}, None, enough=40) is None, "no key to read"
    page = db.get_memories(user_id="ada", where_metadata={"topic": "common", "n": 7})
    assert [m["content"] for m in page] == ["m7"]


def test_create_schema_over_memories_posts_their_keys(db):
    """Building the schema where memories exist without the keys table indexes them too."""
    if db.is_postgres:
        pytest.skip("the keys table is SQLite's")
    fill(db)
    sqlite_keys.drop(db.database)
    db.create_schema()
    assert_filters_match_the_reference(db)


def test_a_database_without_the_keys_table_still_filters_exactly(db):
    """A schema drafted from the models alone has no keys table: filters read every memory."""
    if db.is_postgres:
        pytest.skip("the keys table is SQLite's")
    fill(db)
    expected = db.get_memories(where_metadata={"topic": "travel"}, limit=None)
    db.database.execute_sql(f"DROP TABLE {sqlite_keys.TABLE}")  # by hand: its triggers remain
    try:
        assert db.get_memories(where_metadata={"topic": "travel"}, limit=None) == expected
        sqlite_keys.drop(db.database)
        assert db.get_memories(where_metadata={"topic": "travel"}, limit=None) == expected
    finally:
        sqlite_keys.create(db.database)


ADD_WITH_DEFAULT = """
import peewee as pw


def migrate(migrator, database, *, fake=False):
    migrator.add_fields("memories", sentiment=pw.FloatField(default=0.0, constraints=[pw.SQL("DEFAULT 0")]))


def rollback(migrator, database, *, fake=False):
    migrator.remove_fields("memories", "sentiment")
"""


def test_a_migration_that_rebuilds_the_memories_table_keeps_the_index(store, tmp_path):
    """SQLite rebuilds a table to add a column with a default, dropping its triggers with it."""
    migrations = Migrations(store, app_dir=tmp_path / "app")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "001_add_sentiment.py").write_text(ADD_WITH_DEFAULT, encoding="utf-8")
    migrations.upgrade(HEAD)
    ids = fill(store)
    migrations.upgrade()
    store.insert_memory(user_id="ada", content="after", metadata={"topic": "travel"})
    store.update_metadata(memory_id=ids[0], new_metadata={"topic": "work"})
    assert_filters_match_the_reference(store)
    migrations.downgrade("app:base", confirm_data_loss=True)
    store.update_metadata(memory_id=ids[3], new_metadata={"topic": "food"})
    assert_filters_match_the_reference(store)


def test_an_update_of_the_rowid_moves_the_keys(db):
    if db.is_postgres:
        pytest.skip("PostgreSQL rows have no rowid")
    ids = fill(db)
    db.database.execute_sql("UPDATE memories SET rowid = 999 WHERE id = ?", (ids[0],))
    db.database.execute_sql("UPDATE memories SET _rowid_ = 998 WHERE id = ?", (ids[1],))
    assert_filters_match_the_reference(db)


def test_filters_stay_exact_while_a_trigger_is_missing(db):
    """A trigger dropped by hand: the keys may be stale, so filters read every memory in scope."""
    if db.is_postgres:
        pytest.skip("the keys table is SQLite's")
    ids = fill(db)
    db.database.execute_sql("DROP TRIGGER memories_keys_update")
    db.update_metadata(memory_id=ids[0], new_metadata={"topic": "none such"})
    try:
        found = db.get_memories(where_metadata={"topic": "none such"}, limit=None)
        assert [m["id"] for m in found] == [ids[0]]
    finally:
        sqlite_keys.repair(db.database)
    assert_filters_match_the_reference(db)


def triggers_of_005() -> tuple[str, ...]:
    """The trigger DDL migration 005 wrote (the version before key deletes used the primary key)."""
    path = default_migrate_dir() / f"{FIFTH}.py"
    spec = importlib.util.spec_from_file_location("migration_005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CREATE_TRIGGERS


def test_an_upgrade_with_nothing_to_apply_brings_older_triggers_up_to_date(new_dsn):
    """A database whose triggers migration 005 wrote (each key delete read the whole keys table)
    gets today's from `migrate upgrade`, even at head, and its keys stay exact."""
    memoric = Memoric(new_dsn())
    if memoric.db.is_postgres:
        pytest.skip("the keys table is SQLite's")
    memoric.migrate()
    store = memoric.db
    ids = fill(store)
    for trigger in sqlite_keys.TRIGGERS:
        store.database.execute_sql(f"DROP TRIGGER {trigger}")
    for statement in triggers_of_005():
        store.database.execute_sql(statement)
    assert not sqlite_keys.current(store.database)
    assert memoric.migrations.upgrade() == []
    assert sqlite_keys.current(store.database)
    store.delete_memories(memory_ids=ids[:5])
    store.update_metadata(memory_id=ids[5], new_metadata={"topic": "moved"})
    assert_filters_match_the_reference(store)
    memoric.close()
