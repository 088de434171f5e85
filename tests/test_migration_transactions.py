"""A migration runs in one transaction memoric opens and closes, with its history row, on SQLite and
PostgreSQL. A statement of the migration's own that would end or begin a transaction (COMMIT, END,
ROLLBACK, BEGIN, ...) is refused before it runs, so the migration fails and is undone, previews
included. One memoric cannot see coming (the driver's own cursor) is found afterwards, and the
error says what was kept instead of calling the migration undone."""

from __future__ import annotations

import pytest

from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate import Migrations
from tests.helpers.app_chain import app_chain, app_history, clear_environment
from tests.helpers.chain import HEAD, SHIPPED, history_names, tables
from tests.helpers.dialects import requires_postgres

ENDED = "migration app:001_notes ended the transaction memoric runs it in (a COMMIT or ROLLBACK of its own)"
UNDONE = "migration app:001_notes failed and was undone (schema and history unchanged): "
CREATE = 'CREATE TABLE "notes" ("body" TEXT)'


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    clear_environment(monkeypatch)


def notes_migration(*statements: str, through: str = "database.execute_sql") -> str:
    """An application migration that runs `statements` one by one: itself (`database.execute_sql`,
    or the driver's cursor: `database.cursor().execute`) or queued for peewee-migrate to run after
    it (`migrator.sql`)."""
    body = "".join(f"    {through}({sql!r})\n" for sql in statements)
    return (
        f"def migrate(migrator, database, *, fake=False):\n    if fake:\n        return\n{body}\n\n"
        "def rollback(migrator, database, *, fake=False):\n"
        "    database.execute_sql('DROP TABLE \"notes\"')\n"
    )


def app_migrations(store, tmp_path, *statements: str, **how) -> Migrations:
    """The store's migrations at memoric's head, with an application migration running `statements`."""
    source = notes_migration(*statements, **how)
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_notes": source}))
    migrations.upgrade(HEAD)
    return migrations


def upgrade_with(store, tmp_path, *statements: str, **how) -> str:
    """The error of an upgrade through such a migration."""
    with pytest.raises(MigrationError) as failed:
        app_migrations(store, tmp_path, *statements, **how).upgrade()
    return str(failed.value)


STATEMENTS = [
    "COMMIT",
    "commit and chain",
    "END",
    "ROLLBACK",
    "BEGIN",
    "START TRANSACTION",
    "ABORT",
    "PREPARE TRANSACTION 'x'",
]


@pytest.mark.parametrize("through", ["database.execute_sql", "migrator.sql"])
@pytest.mark.parametrize("statement", STATEMENTS)
def test_a_statement_ending_or_beginning_a_transaction_is_refused_before_it_runs(
    store, tmp_path, through, statement
):
    message = upgrade_with(
        store,
        tmp_path,
        CREATE,
        f"  /* why not */ {statement}",
        "INSERT INTO \"notes\" VALUES ('x')",
        through=through,
    )
    first_word = statement.split()[0].upper()
    assert message.startswith(f"{UNDONE}it runs {first_word} itself, which would end or begin a transaction")
    assert "notes" not in tables(store) and app_history(store) == [] and history_names(store) == SHIPPED


def test_a_commit_and_begin_through_the_drivers_cursor_is_found_and_not_said_to_be_undone(store, tmp_path):
    """The driver's cursor is beyond the refusal; the savepoint memoric took is gone afterwards."""
    message = upgrade_with(store, tmp_path, CREATE, "COMMIT", "BEGIN", through="database.cursor().execute")
    assert message.startswith(ENDED)
    assert "notes" in tables(store)  # committed by the migration itself, before its BEGIN
    assert app_history(store) == []


def test_a_savepoint_named_as_memorics_after_a_commit_does_not_pass_for_memorics(store, tmp_path):
    """memoric's savepoint was `memoric_migration`: a migration that committed, then took a
    savepoint of that name, and then failed, was said to be undone while its writes stayed."""
    source = (
        "import peewee as pw\n\n"
        "def migrate(migrator, database, *, fake=False):\n"
        "    if fake:\n        return\n"
        f"    database.execute_sql({CREATE!r})\n"
        "    database.cursor().execute('COMMIT')\n"
        "    database.cursor().execute('BEGIN')\n"
        "    database.cursor().execute('SAVEPOINT memoric_migration')\n"
        "    raise ValueError('and then it fails')\n\n"
        "def rollback(migrator, database, *, fake=False):\n    pass\n"
    )
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_notes": source}))
    migrations.upgrade(HEAD)
    with pytest.raises(MigrationError) as failed:
        migrations.upgrade()
    assert str(failed.value).startswith(ENDED)
    assert "notes" in tables(store) and app_history(store) == []


@requires_postgres
def test_several_statements_in_one_string_are_found_too(new_postgres_url, tmp_path):
    store = MemoryStore(new_postgres_url())
    message = upgrade_with(store, tmp_path, f"{CREATE}; COMMIT; BEGIN; SELECT 1")
    assert message.startswith(ENDED)
    assert "notes" in tables(store) and app_history(store) == []
    store.close()


def test_a_preview_of_a_committing_migration_changes_nothing(store, tmp_path):
    """`migrate upgrade --sql` runs the migrations in a transaction it rolls back: a COMMIT there
    committed the preview, the whole chain included, on PostgreSQL."""
    source = notes_migration(CREATE, "COMMIT", through="migrator.sql")
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_notes": source}))
    with pytest.raises(MigrationError, match="it runs COMMIT itself"):
        migrations.sql("upgrade", "head")
    assert tables(store) == set()


def test_a_preview_a_migration_commits_past_memoric_says_what_it_committed(store, tmp_path):
    """The driver's cursor is beyond the refusal: the preview's one transaction is ended, and
    what ran before in it stays (on a new database, memoric's whole chain); the error says so."""
    migrations = app_migrations(
        store, tmp_path, CREATE, "COMMIT", "BEGIN", through="database.cursor().execute"
    )
    with pytest.raises(MigrationError) as failed:
        migrations.sql("upgrade", "head")
    message = str(failed.value)
    assert message.startswith(ENDED)
    assert "This was a preview, run in one transaction to be rolled back: the migration ended it" in message
    assert "notes" in tables(store) and app_history(store) == []


def test_savepoints_of_the_migrations_own_are_left_to_it(store, tmp_path):
    source = notes_migration(
        CREATE,
        "SAVEPOINT s1",
        "INSERT INTO \"notes\" VALUES ('x')",
        "ROLLBACK /* back */ TO SAVEPOINT s1",
        "RELEASE SAVEPOINT s1",
    )
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_notes": source}))
    assert migrations.upgrade()[-1] == "app:001_notes"
    assert store.database.execute_sql('SELECT COUNT(*) FROM "notes"').fetchone()[0] == 0


@pytest.mark.parametrize("call", ["commit", "rollback", "begin"])
def test_the_databases_own_transaction_calls_are_refused_too(store, tmp_path, call):
    """`database.commit()` reaches the driver without a statement through `execute_sql`: it
    committed what ran before it, a preview's whole chain included."""
    source = (
        "def migrate(migrator, database, *, fake=False):\n"
        f"    database.execute_sql({CREATE!r})\n"
        f"    database.{call}()\n\n"
        "def rollback(migrator, database, *, fake=False):\n    pass\n"
    )
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_notes": source}))
    with pytest.raises(MigrationError, match=rf"it calls database.{call}\(\) itself"):
        migrations.sql("upgrade", "head")
    assert tables(store) == set()
    migrations.upgrade(HEAD)
    with pytest.raises(MigrationError) as failed:
        migrations.upgrade()
    assert str(failed.value).startswith(f"{UNDONE}it calls database.{call}() itself")
    assert "notes" not in tables(store) and app_history(store) == [] and history_names(store) == SHIPPED
    store.database.begin()  # the store's own calls are its own again
    store.database.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        'RELEASE SAVEPOINT "memoric_migration"',
        "release memoric_migration",
        "ROLLBACK TO SAVEPOINT memoric_migration",
        "rollback work to /* x */ MEMORIC_MIGRATION",
    ],
)
def test_memorics_own_savepoint_cannot_be_released_or_rolled_back_to(store, tmp_path, statement):
    """Released, it hid a COMMIT: the migration was then said to have ended the transaction
    whatever it did, and a later COMMIT was not seen."""
    message = upgrade_with(store, tmp_path, CREATE, statement, "INSERT INTO \"notes\" VALUES ('x')")
    assert message.startswith(f"{UNDONE}it runs ")
    assert "on memoric's own savepoint memoric_migration" in message
    assert "notes" not in tables(store) and app_history(store) == [] and history_names(store) == SHIPPED


def test_a_migration_that_keeps_to_its_transaction_is_applied(store, tmp_path):
    migrations = app_migrations(store, tmp_path, CREATE, through="migrator.sql")
    assert migrations.upgrade() == ["app:001_notes"]
    assert app_history(store) == ["001_notes"]


@requires_postgres
def test_a_connection_lost_during_a_migration_is_not_taken_for_a_commit_of_its_own(
    new_postgres_url, tmp_path
):
    """The server rolls back what a lost session wrote: the migration was undone, and memoric,
    which cannot ask a lost connection, does not say the migration ended its transaction."""
    store = MemoryStore(new_postgres_url())
    message = upgrade_with(store, tmp_path, CREATE, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert "ended the transaction" not in message
    assert message.startswith(UNDONE)
    assert "notes" not in tables(store) and app_history(store) == []
    store.close()


@requires_postgres
@pytest.mark.parametrize(
    "statements",
    [
        ["CREATE SCHEMA audit", "SET LOCAL search_path TO audit"],
        ["CREATE SCHEMA audit", "SET search_path TO audit, public"],
        ["CREATE SCHEMA audit", "SELECT set_config('search_path', 'audit', true)"],
        ['CREATE TEMPORARY TABLE "migratehistory" (id INTEGER)'],
    ],
)
def test_a_migration_leading_memorics_names_elsewhere_is_refused_on_postgresql(
    new_postgres_url, tmp_path, statements
):
    """Its history row went to the new schema: the migration's changes were committed while
    its history said it was pending, and every later upgrade failed on them."""
    store = MemoryStore(new_postgres_url())
    message = upgrade_with(store, tmp_path, *statements, f"{CREATE}")
    assert message.startswith(f"{UNDONE}it leaves the session where ")
    assert "notes" not in tables(store) and app_history(store) == [] and history_names(store) == SHIPPED
    assert "audit" not in [row[0] for row in store.database.execute_sql("SELECT nspname FROM pg_namespace")]
    store.close()


@pytest.mark.parametrize("table", ["memories", "memory_terms"])
def test_a_migration_shadowing_memorics_table_with_a_temporary_one_is_refused(store, tmp_path, table):
    message = upgrade_with(store, tmp_path, CREATE, f'CREATE TEMPORARY TABLE "{table}" ("id" INTEGER)')
    assert message.startswith(f'{UNDONE}it leaves the session where "{table}" names a table in schema ')
    assert "notes" not in tables(store) and app_history(store) == []
    assert store.insert_memory(user_id="ada", content="saved where it belongs") > 0


def test_a_temporary_table_named_as_sqlites_metadata_keys_is_refused(tmp_path):
    """The filters of that session read the empty temporary table: a count of 0 for 4 memories."""
    store = MemoryStore(f"sqlite:///{tmp_path / 'keys.db'}")
    shadow = 'CREATE TEMPORARY TABLE "memory_metadata_keys" ("name" TEXT)'
    message = upgrade_with(store, tmp_path, CREATE, shadow)
    assert message.startswith(f'{UNDONE}it leaves the session where "memory_metadata_keys" names a table')
    store.close()


@requires_postgres
def test_a_migration_setting_search_path_back_is_applied(new_postgres_url, tmp_path):
    store = MemoryStore(new_postgres_url())
    statements = [
        "CREATE SCHEMA audit",
        "SET LOCAL search_path TO audit",
        CREATE,
        "SET LOCAL search_path TO public",
    ]
    app_migrations(store, tmp_path, *statements).upgrade()
    assert app_history(store) == ["001_notes"]
    assert store.database.execute_sql('SELECT COUNT(*) FROM audit."notes"').fetchone()[0] == 0
    store.close()


@pytest.mark.parametrize(
    "raised, named",
    [("SystemExit(0)", "SystemExit (0)"), ("__import__('asyncio').CancelledError()", "CancelledError")],
)
def test_a_migration_exiting_the_program_fails_and_is_undone(store, tmp_path, raised, named):
    """sys.exit(0) in a migration ended `memoric migrate upgrade` silently with status 0, the
    migration not applied; asyncio's CancelledError was a traceback."""
    source = notes_migration(CREATE).replace(
        "def rollback", f"    if not fake:\n        raise {raised}\n\n\ndef rollback", 1
    )
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_notes": source}))
    with pytest.raises(MigrationError) as failed:
        migrations.upgrade()
    assert f"{UNDONE}it raised {named}, which ends a program, not a migration" in str(failed.value)
    assert "[completed before it: " in str(failed.value)  # memoric's own, applied in the same run
    assert "notes" not in tables(store) and app_history(store) == [] and history_names(store) == SHIPPED


@requires_postgres
def test_a_percent_sign_the_driver_reads_as_a_parameter_mark_is_named(new_postgres_url, tmp_path):
    """It failed with psycopg2's "tuple index out of range", naming neither the % nor the cure."""
    store = MemoryStore(new_postgres_url())
    message = upgrade_with(store, tmp_path, 'CREATE TABLE "notes" ("body" TEXT DEFAULT \'100%\')')
    assert message.startswith(f"{UNDONE}the database driver read a % in a statement of it as a parameter")
    assert "write %% for a literal %" in message
    assert app_migrations(store, tmp_path, 'CREATE TABLE "notes" ("body" TEXT DEFAULT \'100%%\')').upgrade()
    store.close()


@pytest.mark.parametrize(
    "statement, only_on",
    [
        ("SET DateStyle = 'SQL, DMY'", "postgresql"),
        (
            'CREATE TEMP TRIGGER "swallow" BEFORE INSERT ON main."memories" BEGIN SELECT RAISE(IGNORE); END',
            "sqlite",
        ),
    ],
)
def test_what_a_migration_leaves_in_its_session_ends_with_the_run(new_dsn, tmp_path, statement, only_on):
    """A setting or a temporary trigger of a migration stayed on the connection memoric went on
    using: timestamps read as year 191192026 (and, by extra_float_digits, relevance rounded),
    saves dropped silently."""
    store = MemoryStore(new_dsn())
    if store.dialect.name != only_on:
        pytest.skip(f"{only_on}'s")
    migrations = app_migrations(store, tmp_path, statement)
    memory_id = store.insert_memory(user_id="ada", content="written before", metadata={"n": 0.1 + 0.2})
    migrations.upgrade()
    assert store.get_memory(memory_id)["metadata"] == {"n": 0.30000000000000004}
    saved = store.insert_memory(user_id="ada", content="written after")
    assert store.get_memory(saved)["content"] == "written after"
    store.close()


def test_a_migration_raising_an_exception_that_cannot_say_itself_is_named(store, tmp_path):
    """Its `__str__` failing too, `migrate upgrade` ended in a traceback."""
    source = notes_migration(CREATE).replace(
        "def rollback",
        "    class Mute(Exception):\n        def __str__(self):\n            raise RuntimeError('mute')\n\n"
        "    if not fake:\n        raise Mute()\n\n\ndef rollback",
        1,
    )
    migrations = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_notes": source}))
    with pytest.raises(MigrationError) as failed:
        migrations.upgrade()
    assert str(failed.value).startswith(f"{UNDONE}Mute (its message could not be read)")
    assert "notes" not in tables(store) and app_history(store) == []
