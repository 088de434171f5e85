"""A migration chain on disk and in the database: its files `NNN_name.py` and its history table.

memoric's own chain is shipped with it (package `memoric_migrations`) and recorded in
`migratehistory`; an application's chain lives in a directory of the application's repository and
is recorded in `memoric_app_history`. Both tables are peewee-migrate's, plus a unique name.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import peewee

from memoric.db.models import UTCDateTimeField
from memoric.errors import MigrationError
from memoric.migrate.targets import APP, MEMORIC, Step, cut, shown

HISTORY_TABLE = "migratehistory"
APP_HISTORY_TABLE = "memoric_app_history"
MIGRATIONS_PACKAGE = "memoric_migrations"
FILE_PATTERN = re.compile(r"[0-9]{3}_[^.]+\.py")
LOOKS_LIKE_MIGRATION = re.compile(r"\d.*\.py\s*\Z", re.IGNORECASE | re.DOTALL)
INSTALLED_PACKAGE_DIRS = ("site-packages", "dist-packages")
SHOWN_UNKNOWN = 10


def default_migrate_dir() -> Path:
    """The chain shipped with memoric (package `memoric_migrations`; `migrations/` in a checkout)."""
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent.parent / "migrations"


def _is_migration_file(path: Path) -> bool:
    """A file named NNN_name.py: three ASCII digits, a printable name without dots."""
    return FILE_PATTERN.fullmatch(path.name) is not None and path.stem.isprintable() and path.is_file()


def _not_a_directory(path: Path) -> str:
    """Why `path`, which is no directory, cannot hold a chain: it is something else, or nothing."""
    return "is not a directory" if path.exists() else "does not exist"


def migration_names(directory: Path) -> list[str]:
    """The migrations of the chain in `directory`, in order (its files `NNN_name.py`).

    An entry that looks meant as a migration but is not one (`3_x.py`, `003-x.py`,
    `٠٠٣_x.py`, a directory) is an error: skipping it would leave it silently unapplied.
    """
    where = str(directory)
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {where!r} {_not_a_directory(directory)}")
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


def history_model(database: peewee.Database, table: str = HISTORY_TABLE) -> type[peewee.Model]:
    """The history table `table` bound to `database`: peewee-migrate's columns plus a unique name."""

    class MigrationHistory(peewee.Model):
        id = peewee.AutoField()
        name = peewee.CharField(max_length=255)
        migrated_at = UTCDateTimeField(default=lambda: dt.datetime.now(dt.UTC))

        class Meta:
            table_name = table

    MigrationHistory.add_index(MigrationHistory.name, unique=True, name=history_index(table))
    MigrationHistory.bind(database)
    return MigrationHistory


def history_index(table: str) -> str:
    """The unique index on the names of history table `table`."""
    return f"{table}_name_unique"


@dataclass(frozen=True)
class Chain:
    """One chain: its label in targets (`memoric`, `app`), its directory and its history table."""

    label: str
    directory: Path
    table: str

    def names(self) -> list[str]:
        """The chain's migrations in order; MigrationError when its directory is unusable."""
        if self.label == APP and not self.directory.is_dir():
            problem = _not_a_directory(self.directory)
            raise MigrationError(
                f"the application migrations directory {str(self.directory)!r} {problem}: create it, "
                "or let `memoric migrate revision -m MESSAGE` create it with the first migration"
            )
        return migration_names(self.directory)

    def applied(self, database: peewee.Database) -> list[tuple[Step, dt.datetime]]:
        """(migration, applied at) of the applied migrations, oldest first; [] before the first run."""
        if not database.table_exists(self.table):
            return []
        model = history_model(database, self.table)
        return [(Step(self.label, row.name), row.migrated_at) for row in model.select().order_by(model.id)]

    def refuse_unknown(self, applied: list[str], names: list[str]) -> None:
        """MigrationError when the history lists migrations the chain lacks: replaying them cannot work.

        Such a history is another application's peewee-migrate table of the same name, or the
        chain lost or renamed files; either way no run may read or change it.
        """
        unknown = [name for name in applied if name not in names]
        if not unknown:
            return
        shown_names = ", ".join(map(cut, unknown[:SHOWN_UNKNOWN]))
        if len(unknown) > SHOWN_UNKNOWN:
            shown_names += f" and {len(unknown) - SHOWN_UNKNOWN} more"
        owner = "memoric's chain" if self.label == MEMORIC else "the application's chain"
        reason = self._renumbered(unknown, names) or (
            "it belongs to another application, or the chain was edited; give memoric a database or "
            "schema of its own"
        )
        raise MigrationError(
            f"the history table {self.table} lists migrations {owner} does not have ({shown_names}): {reason}"
        )

    def _renumbered(self, unknown: list[str], names: list[str]) -> str | None:
        """How to record the recorded migrations whose files now bear another number
        (`002_add_score` recorded, `003_add_score` on disk), or None for none such."""
        by_rest = {name[3:]: name for name in names}
        found = [
            (name, by_rest[name[3:]])
            for name in unknown
            if FILE_PATTERN.fullmatch(f"{name}.py") and name[3:] in by_rest
        ]
        if not found:
            return None
        renamed = ", ".join(f"{cut(old)} to {cut(new)}" for old, new in found[:SHOWN_UNKNOWN])
        updates = "; ".join(self._rename_row(old, new) for old, new in found[:SHOWN_UNKNOWN])
        return (
            f"they look renumbered ({renamed}: same name, another number); a database that applied a "
            f"migration keeps its name, so rename its row there too: {updates}"
        )

    def _rename_row(self, old: str, new: str) -> str:
        quoted_old, quoted_new = (name.replace("'", "''") for name in (old, new))
        return f"UPDATE {self.table} SET name = '{quoted_new}' WHERE name = '{quoted_old}'"

    def refuse_copies(self, applied: list[str], names: list[str]) -> None:
        """MigrationError when a pending migration is an applied one copied byte for byte under
        another number (`cp` where `mv` was meant): applying it would run that migration twice."""
        done = set(applied)
        by_rest: dict[str, list[str]] = {}
        for name in applied:
            by_rest.setdefault(name[3:], []).append(name)
        for name in names:
            twins = [] if name in done else by_rest.get(name[3:], [])
            source = self._source(name) if twins else None
            original = next(
                (twin for twin in twins if source is not None and self._source(twin) == source), None
            )
            if original is not None:
                raise MigrationError(
                    f"{cut(name)} is pending and a copy of {cut(original)}, which is applied (same name, "
                    "same content, another number): it would run a second time. Remove the copy; if "
                    f"the migration was meant to be renumbered, remove {cut(original)} instead and "
                    f"rename its row: {self._rename_row(original, name)}"
                )

    def _source(self, name: str) -> bytes | None:
        """The bytes of migration `name`'s file; None when it cannot be read (its run says why)."""
        try:
            return (self.directory / f"{name}.py").read_bytes()
        except OSError:
            return None


def memoric_chain(directory: Path | None = None) -> Chain:
    """memoric's chain: the shipped one, or `directory` in its place."""
    return Chain(MEMORIC, directory if directory is not None else default_migrate_dir(), HISTORY_TABLE)


def app_chain(directory: Path, memoric: Chain) -> Chain:
    """The application's chain in `directory`; MigrationError when that is memoric's own chain."""
    try:
        where, shipped = directory.expanduser().resolve(), default_migrate_dir().resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise MigrationError(
            f"the application migrations directory {str(directory)!r} is unusable: {exc}"
        ) from exc
    if where == memoric.directory.resolve() or where.is_relative_to(shipped):
        raise MigrationError(
            f"the application migrations directory {str(directory)!r} is memoric's own chain "
            "or inside it: give the application's migrations a directory of its own in its repository"
        )
    return Chain(APP, directory.expanduser(), APP_HISTORY_TABLE)


def app_migrations_recorded(database: peewee.Database) -> list[str]:
    """The application migrations the database records as applied, whether or not a chain is configured."""
    return [step.name for step, _ in Chain(APP, Path(), APP_HISTORY_TABLE).applied(database)]


def refuse_installed(directory: Path) -> None:
    """MigrationError when new migration files in `directory` would land in an installed package."""
    where = directory.expanduser().resolve()
    if any(part in INSTALLED_PACKAGE_DIRS for part in where.parts):
        raise MigrationError(
            f"refusing to write a migration into {str(where)!r}: it is inside an installed package "
            f"({' or '.join(INSTALLED_PACKAGE_DIRS)}), where a reinstall would lose it; keep the "
            "application's migrations in its own repository"
        )
