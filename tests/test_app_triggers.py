"""An application's own triggers on memoric's tables survive memoric's and the application's
migrations. SQLite alters most of a table by copying it, and the triggers on the old one went
with it, silently: a save then wrote nothing to the application's audit table. They are now
re-created at the end of the migration that rebuilt their table, unless it dropped them itself.
PostgreSQL alters in place."""

from __future__ import annotations

import pytest

from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate import Migrations
from tests.helpers.app_chain import app_chain, app_history, clear_environment
from tests.helpers.chain import HEAD

AUDIT = """import peewee as pw

SQLITE = [
    'CREATE TABLE "audit" ("memory_id" INTEGER)',
    'CREATE TRIGGER "memories_audit" AFTER INSERT ON "memories" '
    'BEGIN INSERT INTO "audit" VALUES (NEW."id"); END',
]
POSTGRES = [
    'CREATE TABLE "audit" ("memory_id" BIGINT)',
    'CREATE FUNCTION "audit_memory"() RETURNS trigger LANGUAGE plpgsql AS '
    '$$BEGIN INSERT INTO "audit" VALUES (NEW."id"); RETURN NEW; END$$',
    'CREATE TRIGGER "memories_audit" AFTER INSERT ON "memories" '
    'FOR EACH ROW EXECUTE FUNCTION "audit_memory"()',
]


def migrate(migrator, database, *, fake=False):
    for sql in POSTGRES if isinstance(database, pw.PostgresqlDatabase) else SQLITE:
        migrator.sql(sql)


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "audit"')
"""
# A column with a database default: SQLite rebuilds `memories` to add it NOT NULL.
MOOD = """import peewee as pw


def migrate(migrator, database, *, fake=False):
{before}    migrator.add_fields(
        "memories", mood=pw.CharField(max_length=20, default="calm", constraints=[pw.SQL("DEFAULT 'calm'")])
    )


def rollback(migrator, database, *, fake=False):
    migrator.remove_fields("memories", "mood")
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    clear_environment(monkeypatch)


def audited(store: MemoryStore) -> list[int]:
    return [
        memory_id for (memory_id,) in store.database.execute_sql('SELECT "memory_id" FROM "audit" ORDER BY 1')
    ]


def test_an_apps_trigger_survives_a_migration_that_rebuilds_its_table(store, tmp_path):
    app = app_chain(tmp_path / "app", **{"001_audit": AUDIT, "002_mood": MOOD.format(before="")})
    migrations = Migrations(store, app_dir=app)
    migrations.upgrade("app:001")
    first = store.insert_memory(user_id="ada", content="before")
    assert migrations.upgrade() == ["app:002_mood"]
    second = store.insert_memory(user_id="ada", content="after")
    assert audited(store) == [first, second]
    assert migrations.downgrade(confirm_data_loss=True) == ["app:002_mood"]  # a rebuild again, on SQLite
    third = store.insert_memory(user_id="ada", content="after the downgrade")
    assert audited(store) == [first, second, third]


@pytest.mark.parametrize(
    "statement", ['DROP TRIGGER IF EXISTS "memories_audit"', "drop /* gone */ trigger/**/main.MEMORIES_AUDIT"]
)
def test_a_trigger_the_migration_drops_itself_stays_dropped(sqlite_store, tmp_path, statement):
    drop = f"    migrator.sql({statement!r})\n"
    app = app_chain(tmp_path / "app", **{"001_audit": AUDIT, "002_mood": MOOD.format(before=drop)})
    Migrations(sqlite_store, app_dir=app).upgrade()
    sqlite_store.insert_memory(user_id="ada", content="not audited")
    assert audited(sqlite_store) == []


def test_a_migration_removing_a_column_a_trigger_reads_fails_naming_the_trigger(sqlite_store, tmp_path):
    """Removing a column is SQLite's own DROP COLUMN, which refuses while a trigger reads it."""
    reads_mood = AUDIT.replace('VALUES (NEW."id")', 'SELECT NEW."id" WHERE NEW."mood" IS NOT NULL')
    no_mood = (
        "def migrate(migrator, database, *, fake=False):\n    migrator.remove_fields('memories', 'mood')\n"
    )
    app = app_chain(
        tmp_path / "app",
        **{"001_mood": MOOD.format(before=""), "002_audit": reads_mood, "003_no_mood": no_mood},
    )
    migrations = Migrations(sqlite_store, app_dir=app)
    migrations.upgrade("app:002")
    with pytest.raises(
        MigrationError, match=r"app:003_no_mood failed and was undone.*trigger memories_audit"
    ):
        migrations.upgrade()
    assert app_history(sqlite_store) == ["001_mood", "002_audit"]
    sqlite_store.insert_memory(user_id="ada", content="still audited")
    assert len(audited(sqlite_store)) == 1


@pytest.fixture
def sqlite_store(tmp_path):
    store = MemoryStore(f"sqlite:///{tmp_path / 'triggers.db'}", warn_sqlite=False)
    Migrations(store).upgrade(HEAD)
    yield store
    store.close()


TRIGGER = (
    'CREATE TRIGGER "memories_audit" AFTER INSERT ON "memories" '
    'BEGIN INSERT INTO "audit" VALUES ({value}); END'
)
AUDIT_TABLE = """def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "audit" ("memory_id" INTEGER)')
"""


def queued(*statements: str) -> str:
    """Lines of a migration's body queueing `statements` with `migrator.sql`."""
    return "".join(f"    migrator.sql({sql!r})\n" for sql in statements)


def test_a_trigger_the_migration_creates_before_a_rebuild_survives_it(sqlite_store, tmp_path):
    created = queued(TRIGGER.format(value='NEW."id"'))
    app = app_chain(tmp_path / "app", **{"001_audit": AUDIT_TABLE, "002_mood": MOOD.format(before=created)})
    Migrations(sqlite_store, app_dir=app).upgrade()
    memory_id = sqlite_store.insert_memory(user_id="ada", content="audited")
    assert audited(sqlite_store) == [memory_id]


def test_a_trigger_dropped_and_created_anew_before_a_rebuild_comes_back_as_redefined(sqlite_store, tmp_path):
    redefined = queued('DROP TRIGGER "memories_audit"', TRIGGER.format(value='-NEW."id"'))
    app = app_chain(tmp_path / "app", **{"001_audit": AUDIT, "002_mood": MOOD.format(before=redefined)})
    Migrations(sqlite_store, app_dir=app).upgrade()
    memory_id = sqlite_store.insert_memory(user_id="ada", content="audited")
    assert audited(sqlite_store) == [-memory_id]
