"""A migration chain on disk and in the database: its files `NNN_name.py` and its history table."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
from pathlib import Path

import peewee

from memoric.db.models import UTCDateTimeField
from memoric.errors import MigrationError
from memoric.migrate.targets import shown

HISTORY_TABLE = "migratehistory"
HISTORY_INDEX = "migratehistory_name_unique"
MIGRATIONS_PACKAGE = "memoric_migrations"
FILE_PATTERN = re.compile(r"[0-9]{3}_[^.]+\.py")
LOOKS_LIKE_MIGRATION = re.compile(r"\d.*\.py\s*\Z", re.IGNORECASE | re.DOTALL)


def default_migrate_dir() -> Path:
    """The chain shipped with memoric (package `memoric_migrations`; `migrations/` in a checkout)."""
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent.parent / "migrations"


def _is_migration_file(path: Path) -> bool:
    """A file named NNN_name.py: three ASCII digits, a printable name without dots."""
    return FILE_PATTERN.fullmatch(path.name) is not None and path.stem.isprintable() and path.is_file()


def migration_names(directory: Path) -> list[str]:
    """The migrations of the chain in `directory`, in order (its files `NNN_name.py`).

    An entry that looks meant as a migration but is not one (`3_x.py`, `003-x.py`,
    `٠٠٣_x.py`, a directory) is an error: skipping it would leave it silently unapplied.
    """
    where = str(directory)
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {where!r} does not exist")
    try:
        entries = sorted(directory.iterdir())
        files = [path for path in entries if _is_migration_file(path)]
    except OSError as exc:
        raise MigrationError(f"cannot read migrations directory {where!r}: {exc.strerror}") from exc
    odd = [path.name for path in entries if LOOKS_LIKE_MIGRATION.match(path.name) and path not in files]
    if odd:
        raise MigrationError(
            f"migrations directory {where!r} holds {', '.join(map(shown, odd))}, which "
            "look like migrations but are not files named NNN_name.py (three ASCII digits, a "
            "printable name without dots): rename or remove them"
        )
    return sorted(path.stem for path in files)


def history_model(database: peewee.Database) -> type[peewee.Model]:
    """The history table bound to `database`: peewee-migrate's columns plus a unique name."""

    class MigrationHistory(peewee.Model):
        id = peewee.AutoField()
        name = peewee.CharField(max_length=255)
        migrated_at = UTCDateTimeField(default=lambda: dt.datetime.now(dt.UTC))

        class Meta:
            table_name = HISTORY_TABLE

    MigrationHistory.add_index(MigrationHistory.name, unique=True, name=HISTORY_INDEX)
    MigrationHistory.bind(database)
    return MigrationHistory


def applied(database: peewee.Database) -> list[tuple[str, dt.datetime]]:
    """(name, applied at) of the applied migrations, oldest first; [] before the first run."""
    if not database.table_exists(HISTORY_TABLE):
        return []
    model = history_model(database)
    return [(row.name, row.migrated_at) for row in model.select().order_by(model.id)]
