"""A migration runs in a transaction memoric opens and closes; one that ends it itself (a COMMIT or a
ROLLBACK of its own) has had what it wrote kept, out of memoric's reach, and is stopped and named
as such instead of being reported as undone, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate import Migrations
from tests.helpers.app_chain import app_chain, app_history, clear_environment
from tests.helpers.chain import HEAD, SHIPPED, history_names, tables
from tests.helpers.dialects import requires_postgres

ENDED = (
    r"migration app:001_notes ended the transaction memoric runs it in \(a COMMIT or ROLLBACK of its own\)"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    clear_environment(monkeypatch)


def notes_migration(*statements: str, through: str = "database.execute_sql") -> str:
    """An application migration that runs `statements` one by one, itself (`database.execute_sql`)
    or queued for peewee-migrate to run after it (`migrator.sql`)."""
    body = "".join(f"    {through}({sql!r})\n" for sql in statements)
    return (
        f"def migrate(migrator, database, *, fake=False):\n{body}\n\n"
        "def rollback(migrator, database, *, fake=False):\n"
        "    database.execute_sql('DROP TABLE \"notes\"')\n"
    )


def upgrade_with(store, tmp_path, *statements: str, **how) -> pytest.ExceptionInfo:
    source = notes_migration(*statements, **how)
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_notes": source}))
    migrations.upgrade(HEAD)
    with pytest.raises(MigrationError) as failed:
        migrations.upgrade()
    return failed


@pytest.mark.parametrize("through", ["database.execute_sql", "migrator.sql"])
def test_a_migration_that_commits_then_fails_is_not_said_to_be_undone(store, tmp_path, through):
    statements = ('CREATE TABLE "notes" ("body" TEXT)', "COMMIT", 'INSERT INTO "no_such_table" VALUES (1)')
    failed = upgrade_with(store, tmp_path, *statements, through=through)
    message = str(failed.value)
    assert "was undone" not in message
    assert message.startswith(ENDED.replace("\\", ""))
    assert "notes" in tables(store)  # committed by the migration itself: memoric says it was kept
    assert app_history(store) == [] and history_names(store) == SHIPPED


@pytest.mark.parametrize("ending", ["COMMIT", "ROLLBACK"])
def test_a_migration_that_ends_its_transaction_is_stopped_before_it_is_recorded(store, tmp_path, ending):
    failed = upgrade_with(store, tmp_path, ending, 'CREATE TABLE "notes" ("body" TEXT)')
    assert failed.match(ENDED)
    assert "notes" in tables(store)  # written after the migration's own COMMIT: kept
    assert app_history(store) == []


def test_a_migration_that_keeps_to_its_transaction_is_applied(store, tmp_path):
    migrations = Migrations(
        store,
        app_dir=app_chain(
            tmp_path / "app", **{"001_notes": notes_migration('CREATE TABLE "notes" ("body" TEXT)')}
        ),
    )
    assert migrations.upgrade()[-1] == "app:001_notes"
    assert app_history(store) == ["001_notes"]


@requires_postgres
def test_a_connection_lost_during_a_migration_is_not_taken_for_a_commit_of_its_own(
    new_postgres_url, tmp_path
):
    """The server rolls back what a lost session wrote: the migration was undone, and memoric,
    which cannot ask a lost connection, does not say the migration ended its transaction."""
    store = MemoryStore(new_postgres_url())
    failed = upgrade_with(
        store, tmp_path, 'CREATE TABLE "notes" ("body" TEXT)', "SELECT pg_terminate_backend(pg_backend_pid())"
    )
    assert "ended the transaction" not in str(failed.value)
    assert str(failed.value).startswith("migration app:001_notes failed and was undone")
    assert "notes" not in tables(store) and app_history(store) == []
    store.close()
