"""An application's own migration chain for the tests of it: its files, its history, memoric's rows."""

from __future__ import annotations

from pathlib import Path

from memoric.db.store import MemoryStore
from memoric.migrate import APP_HISTORY_TABLE, Migrations, default_migrate_dir
from tests.helpers.chain import LABELS, tables

MESSAGE = "Add sentiment field to memories"
SENTIMENT = "001_add_sentiment_field_to_memories"
ADD_FIELD = '    migrator.add_fields("memories", sentiment=pw.FloatField(null=True))'
REMOVE_FIELD = '    migrator.remove_fields("memories", "sentiment")'
SENTIMENT_FILE = f'''"""{MESSAGE}"""

import peewee as pw


def migrate(migrator, database, *, fake=False):
{ADD_FIELD}


def rollback(migrator, database, *, fake=False):
{REMOVE_FIELD}
'''
ENVIRONMENT = ("MEMORIC_DATABASE_URL", "MEMORIC_APP_MIGRATIONS")


def clear_environment(monkeypatch) -> None:
    """No database URL or app directory from the environment of the test run."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def app_chain(directory: Path, **files: str) -> Path:
    """An application's migrations directory holding `files` (name -> source)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (directory / f"{name}.py").write_text(source, encoding="utf-8")
    return directory


def fill_in(path: Path) -> None:
    """Edit a generated template as a user would: add the field, and remove it on rollback."""
    text = path.read_text(encoding="utf-8")
    text = text.replace(f'    """Apply: {MESSAGE}"""', f'    """Apply: {MESSAGE}"""\n{ADD_FIELD}')
    text = text.replace(f'    """Undo: {MESSAGE}"""', f'    """Undo: {MESSAGE}"""\n{REMOVE_FIELD}')
    path.write_text(text, encoding="utf-8")


def app_history(store: MemoryStore) -> list[str]:
    if APP_HISTORY_TABLE not in tables(store):
        return []
    rows = store.database.execute_sql(f'SELECT name FROM "{APP_HISTORY_TABLE}" ORDER BY id').fetchall()
    return [name for (name,) in rows]


def memoric_rows(store: MemoryStore) -> dict[str, list]:
    """memoric's own columns of every row of its tables (an added column left out)."""
    return {
        "memories": [
            {key: m[key] for key in ("id", "user_id", "thread_id", "content", "metadata", "tier")}
            for m in store.get_memories(limit=None)
        ],
        "clusters": store.get_clusters(limit=None),
    }


def both_chains(store: MemoryStore, tmp_path: Path) -> Migrations:
    """memoric's chain and an app chain of two migrations (a column on memories, a table), empty database."""
    app = app_chain(tmp_path / "app", **{SENTIMENT: SENTIMENT_FILE, "002_labels": LABELS})
    return Migrations(store, app_dir=app)


def shipped_listing() -> list[str]:
    """The files of memoric's own chain, which no app migration may touch."""
    return sorted(path.name for path in default_migrate_dir().iterdir())
