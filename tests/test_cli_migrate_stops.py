"""`memoric migrate upgrade` stopped midway (Ctrl-C, SIGTERM) says which migrations it applied
before the stop, as the database records them: each commits on its own and stays; the one
running is undone; the rerun goes on from there. On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import signal
import time

import pytest

from memoric.db.store import MemoryStore
from memoric.migrate import APP_HISTORY_TABLE, LOCK_NAME, Migrations
from tests.helpers.app_chain import app_chain, app_history
from tests.helpers.chain import HEAD, columns, table_migration
from tests.helpers.cli_process import WAITING, read_until, run_cli, start_cli
from tests.helpers.dialects import requires_postgres

REST = (
    "what it had begun of the next was undone; `memoric migrate upgrade` goes on from there "
    "(`memoric migrate current` shows where the database stands)."
)
# An application migration that stops its own process as it runs (never while replayed).
STOPS_ITSELF = """import os
import signal


def migrate(migrator, database, *, fake=False):
    if not fake:
        database.execute_sql('CREATE TABLE "halfway" ("n" INTEGER)')
        os.kill(os.getpid(), signal.{name})


def rollback(migrator, database, *, fake=False):
    pass
"""


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_upgrade_names_the_migrations_it_kept(store, tmp_path, number):
    Migrations(store).upgrade(HEAD)
    app = app_chain(
        tmp_path / "app",
        **{
            "001_notes": table_migration("notes"),
            "002_labels": table_migration("labels"),
            "003_stops": STOPS_ITSELF.format(name=signal.Signals(number).name),
        },
    )
    stopped = run_cli(store.dsn, "--app-dir", str(app), "migrate", "upgrade", cwd=tmp_path)
    assert stopped.returncode == 128 + number, stopped.stderr
    how = "Interrupted" if number == signal.SIGINT else "Stopped by SIGTERM"
    assert stopped.stderr.splitlines() == [
        f"{how}: it applied app:001_notes, app:002_labels, which stay applied; {REST}"
    ]
    assert app_history(store) == ["001_notes", "002_labels"]
    assert "halfway" not in store.database.get_tables()


def test_an_upgrade_stopped_before_any_migration_says_so(store, tmp_path):
    Migrations(store).upgrade(HEAD)
    app = app_chain(tmp_path / "app", **{"001_stops": STOPS_ITSELF.format(name="SIGTERM")})
    stopped = run_cli(store.dsn, "--app-dir", str(app), "migrate", "upgrade", cwd=tmp_path)
    assert stopped.returncode == 128 + signal.SIGTERM
    assert stopped.stderr == f"Stopped by SIGTERM: it applied no migration; {REST}\n"
    assert app_history(store) == []


def test_an_upgrade_stopped_while_another_holds_the_lock_claims_nothing_of_its_work(store, tmp_path):
    """The history grows while a run waits for the lock: what another run applied meanwhile is
    not this one's."""
    app = app_chain(tmp_path / "app", **{"001_notes": table_migration("notes")})
    Migrations(store, app_dir=app).upgrade()
    (app / "002_labels.py").write_text(table_migration("labels"), encoding="utf-8")
    with store.lock(LOCK_NAME):
        waiting = start_cli(store.dsn, "--app-dir", str(app), "migrate", "upgrade", cwd=tmp_path)
        read_until(waiting, WAITING)
        # what another run holding the lock commits meanwhile: 002's table and history row
        store.database.execute_sql('CREATE TABLE "labels" ("body" TEXT)')
        recorded = "(name, migrated_at) VALUES ('002_labels', CURRENT_TIMESTAMP)"
        store.database.execute_sql(f'INSERT INTO "{APP_HISTORY_TABLE}" {recorded}')
        waiting.send_signal(signal.SIGTERM)
        _, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 128 + signal.SIGTERM
    assert stderr.endswith(f"Stopped by SIGTERM: it applied no migration; {REST}\n")
    assert app_history(store) == ["001_notes", "002_labels"]


@requires_postgres
@pytest.mark.parametrize(
    "numbers",
    [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGTERM, signal.SIGINT)],
    ids=["SIGINT", "SIGTERM", "SIGTERM then SIGINT"],
)
def test_an_upgrade_waiting_for_another_sessions_lock_stops_at_once(new_postgres_url, tmp_path, numbers):
    """An agent's open transaction held `memories`; the upgrade's ALTER waited for it, and neither
    SIGTERM nor Ctrl-C ended the wait (the driver's wait runs no Python handler): the statement
    is now cancelled, the migration undone, and the command stops as any other, with the status
    of the stop that came first (Python runs the handlers of waiting signals by number)."""
    store = MemoryStore(new_postgres_url())
    Migrations(store).upgrade(HEAD)
    app = app_chain(tmp_path / "app", **{"001_mood": ADD_MOOD})
    agent = MemoryStore(store.dsn)
    with agent.atomic():
        agent.count_memories()  # the agent's transaction holds a lock on memories
        upgrading = start_cli(store.dsn, "--app-dir", str(app), "migrate", "upgrade", cwd=tmp_path)
        wait_for_a_lock_wait(store)
        for number in numbers:
            upgrading.send_signal(number)
        _, stderr = upgrading.communicate(timeout=120)
    assert upgrading.returncode == 128 + numbers[0], stderr
    assert stderr.splitlines()[-1].startswith(f"{stopped_by(numbers[0])}: it applied no migration")
    assert app_history(store) == [] and "mood" not in {c[0] for c in columns(store, "memories")}
    for opened in (agent, store):
        opened.close()


ADD_MOOD = """import peewee as pw


def migrate(migrator, database, *, fake=False):
    migrator.add_fields("memories", mood=pw.CharField(max_length=20, null=True))


def rollback(migrator, database, *, fake=False):
    migrator.remove_fields("memories", "mood")
"""


def wait_for_a_lock_wait(store: MemoryStore, seconds: float = 60) -> None:
    """Return once a session of the store's database waits for a lock (fail after `seconds`)."""
    waiting = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + seconds
    with contextlib.closing(MemoryStore(store.dsn)) as observer:
        while observer.database.execute_sql(waiting).fetchone()[0] == 0:
            assert time.monotonic() < deadline, "no session ever waited for a lock"
            observer.database.execute_sql("SELECT pg_sleep(0.02)")


def stopped_by(number: int) -> str:
    return "Interrupted" if number == signal.SIGINT else "Stopped by SIGTERM"
