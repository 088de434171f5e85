"""Migration targets, history, stamp and SQL previews, on SQLite and PostgreSQL; a stamp records
only migrations whose tables exist."""

from __future__ import annotations

import re

import peewee
import pytest

from memoric import Memoric
from memoric.db.dialects import citus
from memoric.errors import MigrationError
from memoric.migrate import (
    HISTORY_TABLE,
    Migrations,
    history_model,
)
from tests.helpers.chain import (
    ADD_IMPORTANCE,
    FIRST,
    HEAD,
    POSTINGS,
    SHIPPED,
    chain,
    columns,
    history_names,
    memoric_tables,
    schema,
    tables,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster


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
    with pytest.raises(MigrationError, match=re.escape(
        "upgrade target '002' is behind the database, which has 003_never_reuse_ids applied: "
        "use `downgrade 002` to roll back"
    )):  # fmt: skip
        longer.upgrade("002")
    assert longer.upgrade("090_importance") == [], "where the database is: nothing to do"
    assert longer.downgrade("001_initial_schema") == ["090_importance", *reversed(SHIPPED[1:])]
    assert longer.current() == FIRST
    for target in ("head", "091", "002"):
        with pytest.raises(MigrationError, match=re.escape(
            f"downgrade target {target!r} is ahead of the database, which lacks 002_merge_thread_indexes: "
            f"use `upgrade {target}` to apply it"
        )):  # fmt: skip
            longer.downgrade(target)
    assert longer.downgrade("001") == [], "where the database is: nothing to do"
    assert longer.current() == FIRST
    assert longer.upgrade("head") == [*SHIPPED[1:], "090_importance", "091_weight"]
    assert longer.downgrade("head") == []
    assert longer.downgrade(str(int(HEAD[:3]))) == ["091_weight", "090_importance"]
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
            "009_fold_unicode_terms, 010_rewrite_misread_metadata, 090_importance, 091_weight",
        ),
        ("upgrade", "089", "unknown migration target '089'"),
        ("upgrade", "+0", "unknown migration target"),
        ("upgrade", "+13", "only 12 migration"),
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
    longer.upgrade(f"+{len(SHIPPED) + 1}")
    history = longer.history()
    assert [(row["name"], row["applied"]) for row in history] == [
        *((name, True) for name in SHIPPED),
        ("090_importance", True),
        ("091_weight", False),
    ]
    assert history[0]["applied_at"].utcoffset().total_seconds() == 0
    assert history[-1]["applied_at"] is None
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
    assert longer.stamp("-2") == SHIPPED[-2]
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
