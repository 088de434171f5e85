"""A downgrade that would drop tables or columns holding data needs a confirmation, on both dialects.

`migrate downgrade base` used to drop every memory with exit 0. Now the downgrade runs in one
transaction; when it would drop a table with rows or a column with non-null values it is undone
and refused (DataLossRefused names what and how much) unless confirmed: the library's
`confirm_data_loss=True`, the CLI's `--yes` or its prompt on a terminal. What is dropped is
found by comparing the catalogue before and after, so an application's own migrations are
guarded as well.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import peewee
import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from memoric.errors import DataLossRefused, MigrationError
from memoric.migrate import Migrations, guards
from tests.helpers.app_chain import app_chain
from tests.helpers.chain import (
    ADD_IMPORTANCE,
    FIFTH,
    FIRST,
    HEAD,
    SHIPPED,
    all_rows,
    chain,
    history_names,
    schema,
    table_migration,
    tables,
)
from tests.helpers.cli_process import CLI, read_until
from tests.helpers.dialects import one_line_error

NOTES = '''"""Test-only: an application's own table, filled by the migration."""


def migrate(migrator, database, *, fake=False):
    migrator.sql('CREATE TABLE "agent_notes" ("id" INTEGER PRIMARY KEY, "note" TEXT)')
    migrator.sql("INSERT INTO \\"agent_notes\\" VALUES (1, 'one'), (2, 'two')")


def rollback(migrator, database, *, fake=False):
    migrator.sql('DROP TABLE "agent_notes"')
'''
NULLABLE_IMPORTANCE = ADD_IMPORTANCE.replace("pw.IntegerField(default=0)", "pw.IntegerField(null=True)")


def fill(store: MemoryStore, memories: int = 24) -> None:
    ids = [store.insert_memory(user_id="ada", content=f"memory {n}") for n in range(memories)]
    store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids)


def state(store: MemoryStore) -> tuple:
    """Everything a refused downgrade must leave as it was."""
    return history_names(store), tables(store), schema(store), all_rows(store)


def test_downgrade_of_an_empty_database_needs_no_confirmation(store):
    migrations = Migrations(store)
    migrations.upgrade()
    assert migrations.downgrade("base") == list(reversed(SHIPPED))
    assert history_names(store) == []


def test_downgrade_base_with_memories_is_refused_and_changes_nothing(store):
    migrations = Migrations(store)
    migrations.upgrade()
    fill(store)
    before = state(store)
    with pytest.raises(DataLossRefused) as refused:
        migrations.downgrade("base")
    assert isinstance(refused.value, MigrationError)
    assert refused.value.losses == {"memories": 24, "memory_clusters": 1}
    assert "downgrade base would drop data: memories (24 rows), memory_clusters (1 row)" in str(refused.value)
    assert "confirm_data_loss=True" in str(refused.value)
    assert state(store) == before

    assert migrations.downgrade("base", confirm_data_loss=True) == SHIPPED[::-1]
    assert tables(store) == {"migratehistory"}


def test_a_downgrade_that_drops_nothing_needs_no_confirmation(store):
    migrations = Migrations(store)
    migrations.upgrade()
    fill(store)
    rows = all_rows(store)
    assert migrations.downgrade("001") == list(reversed(SHIPPED[1:]))
    assert all_rows(store) == rows


def test_a_dropped_column_with_values_is_refused_one_with_only_nulls_is_not(store, tmp_path):
    filled = Migrations(store, migrate_dir=chain(tmp_path / "filled", **{"090_importance": ADD_IMPORTANCE}))
    filled.upgrade(HEAD)
    fill(store, memories=3)
    filled.upgrade()
    with pytest.raises(DataLossRefused, match=r"memories\.importance \(3 values\)") as refused:
        filled.downgrade()
    assert refused.value.losses == {"memories.importance": 3}
    assert filled.current() == "090_importance"
    assert filled.downgrade(confirm_data_loss=True) == ["090_importance"]

    empty = Migrations(
        store, migrate_dir=chain(tmp_path / "empty", **{"090_importance": NULLABLE_IMPORTANCE})
    )
    empty.upgrade()
    assert empty.downgrade() == ["090_importance"]


def test_an_applications_own_table_is_guarded_too(store, tmp_path):
    migrations = Migrations(store, migrate_dir=chain(tmp_path / "chain", **{"090_agent_notes": NOTES}))
    migrations.upgrade()
    with pytest.raises(DataLossRefused, match=r"agent_notes \(2 rows\)"):
        migrations.downgrade()
    assert "agent_notes" in tables(store)
    assert migrations.downgrade(confirm_data_loss=True) == ["090_agent_notes"]


TERM_WEIGHT = """import peewee as pw


def migrate(migrator, database, *, fake=False):
    migrator.add_fields("memory_terms", weight=pw.FloatField(null=True))


def rollback(migrator, database, *, fake=False):
    pass
"""


def test_an_applications_column_on_a_derived_table_is_guarded_when_the_table_goes(store, tmp_path):
    """The text postings are derived from the memories, and dropped without a confirmation; a
    column an application added to them is not, and went with them unasked."""
    Migrations(store).upgrade()
    memories = Migrations(store, app_dir=app_chain(tmp_path / "app", **{"001_term_weight": TERM_WEIGHT}))
    memories.upgrade()
    fill(store, memories=3)
    postings = int(store.database.execute_sql('SELECT COUNT(*) FROM "memory_terms"').fetchone()[0])
    rolled_back = ["app:001_term_weight", *reversed(SHIPPED[5:])]
    assert memories.downgrade(FIFTH) == rolled_back  # the weights all NULL: nothing lost
    memories.upgrade()
    store.database.execute_sql('UPDATE "memory_terms" SET "weight" = 0.5')
    before = state(store)
    with pytest.raises(DataLossRefused, match=rf"memory_terms\.weight \({postings} values\)"):
        memories.downgrade(FIFTH)
    assert state(store) == before


def test_a_failing_rollback_undoes_the_whole_downgrade(store, tmp_path):
    breaks = NOTES.replace('DROP TABLE "agent_notes"', 'DROP TABLE "no_such_table"')
    directory = chain(tmp_path / "chain", **{"090_agent_notes": breaks, "091_importance": ADD_IMPORTANCE})
    migrations = Migrations(store, migrate_dir=directory)
    migrations.upgrade()
    with pytest.raises(
        MigrationError, match="rollback of migration 090_agent_notes failed; the whole downgrade"
    ):
        migrations.downgrade("base", confirm_data_loss=True)
    assert history_names(store) == [*SHIPPED, "090_agent_notes", "091_importance"]
    assert "importance" in {row[0] for row in schema(store)["memories"]["columns"]}


def test_the_facade_migrations_are_guarded(dsn):
    with Memoric(dsn=dsn) as memoric:
        memoric.save("ada", "likes tea")
        with pytest.raises(DataLossRefused, match=r"memories \(1 row\)"):
            memoric.migrations.downgrade("base")
        assert memoric.retrieve("ada")[0]["content"] == "likes tea"


# --- the command line ------------------------------------------------------------------------


def test_cli_refuses_in_one_line_without_a_terminal_and_yes_confirms(cli, store):
    Migrations(store).upgrade()
    fill(store)
    before = state(store)
    error = one_line_error(cli("migrate", "downgrade", "base"))
    assert "downgrade base would drop data: memories (24 rows), memory_clusters (1 row)" in error
    assert "--yes" in error
    assert state(store) == before

    result = cli("migrate", "downgrade", "base", "--yes")
    assert result.exit_code == 0, result.output
    assert "".join(f"Rolled back {name}\n" for name in reversed(SHIPPED)) in result.stdout
    assert tables(store) == {"migratehistory"}


def test_cli_downgrade_of_an_empty_database_asks_nothing(cli, store):
    Migrations(store).upgrade()
    result = cli("migrate", "downgrade", "base")
    assert result.exit_code == 0, result.output
    assert history_names(store) == []


def test_cli_sql_is_unaffected(cli, store):
    Migrations(store).upgrade()
    fill(store)
    before = state(store)
    result = cli("migrate", "downgrade", "base", "--sql")
    assert result.exit_code == 0, result.output
    assert 'DROP TABLE IF EXISTS "memories";' in result.stdout
    assert state(store) == before


@pytest.mark.parametrize(
    ("answer", "exit_code", "said"),
    [
        ("y", 0, ""),
        ("n", 1, "Error: downgrade base not confirmed: nothing was changed\n"),
    ],
)
def test_cli_asks_on_a_terminal(dsn, store, tmp_path, answer, exit_code, said):
    """A no at the prompt was click's "Aborted!" with exit 1."""
    Migrations(store).upgrade()
    fill(store)
    before = state(store)
    terminal, terminal_side = pty.openpty()
    env = {key: value for key, value in os.environ.items() if key != "MEMORIC_DATABASE_URL"}
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "--dsn", dsn, "migrate", "downgrade", "base"],
        stdin=terminal_side,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
        text=True,
    )
    os.close(terminal_side)
    try:
        read_until(process, "memories (24 rows), memory_clusters (1 row). Drop them? [y/N]")
        os.write(terminal, f"{answer}\n".encode())
        stdout, stderr = process.communicate(timeout=120)
    finally:
        os.close(terminal)
    assert process.returncode == exit_code, stderr
    assert stderr.endswith(said) and "Traceback" not in stderr
    if exit_code == 0:
        assert f"Rolled back {FIRST}" in stdout
        assert tables(store) == {"migratehistory"}
    else:
        assert state(store) == before


EMPTY_NOTES = table_migration("notes")


def test_a_row_written_after_the_downgrade_counted_the_rows_is_never_dropped_with_them(
    store, tmp_path, monkeypatch
):
    """Between counting an empty table and dropping it another connection tries to write a row
    into it: it waits for the downgrade (here until its lock timeout), or its row stays."""
    directory = chain(tmp_path / "chain", **{"090_notes": EMPTY_NOTES})
    Migrations(store, migrate_dir=directory).upgrade("head")
    real_holding_data = guards.holding_data
    written = []

    def counted_then_written(run, gone):
        losses = real_holding_data(run, gone)
        other = MemoryStore(store.dsn)
        try:
            if other.is_postgres:
                other.database.execute_sql("SET lock_timeout = '300ms'")
            else:
                other.database.execute_sql("PRAGMA busy_timeout = 300")
            other.database.execute_sql('INSERT INTO "notes" ("body") VALUES (\'written meanwhile\')')
            written.append(True)
        except peewee.OperationalError:
            written.append(False)  # it waited for the downgrade's lock
        finally:
            other.close()
        return losses

    monkeypatch.setattr(guards, "holding_data", counted_then_written)
    Migrations(store, migrate_dir=directory).downgrade(HEAD)
    if written == [True]:
        rows = store.database.execute_sql('SELECT "body" FROM "notes"').fetchall()
        assert rows == [("written meanwhile",)]
    else:
        assert written == [False]
        assert "notes" not in tables(store)
