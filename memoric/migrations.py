"""The versioned schema: memoric's peewee-migrate chain, run safely.

`Migrations(store)` wraps peewee-migrate's Router with what it lacks: a cross-process lock around
every run (so concurrent runs apply each migration once), a unique history table, targets
(`head`, `base`, a name or its number, `+N`, `-N`), errors that name the migration at fault, the
exact SQL of a run without changing anything, and drafts generated from the models.
Each migration runs in one transaction with its history row: a failure rolls back both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path

import peewee
from peewee_migrate import Migrator, Router, auto

from memoric.db import catalogue, models
from memoric.db.connection import driver_errors, failure_reason, first_line
from memoric.db.models import GIN_INDEXES, UTCDateTimeField
from memoric.db.store import MemoryStore
from memoric.errors import DataLossRefused, MigrationError

log = logging.getLogger("memoric.migrations")
log.addHandler(logging.NullHandler())

HISTORY_TABLE = "migratehistory"
HISTORY_INDEX = "migratehistory_name_unique"
LOCK_NAME = "migrations"
MIGRATIONS_PACKAGE = "memoric_migrations"
FILE_PATTERN = re.compile(r"[0-9]{3}_[^.]+\.py")
LOOKS_LIKE_MIGRATION = re.compile(r"\d.*\.py\s*\Z", re.IGNORECASE | re.DOTALL)
# Targets and file names take ASCII digits only: str.isdigit() and \d also accept "²" and "٣".
RELATIVE_TARGET = re.compile(r"([+-])(0*[1-9][0-9]*)")
NUMBER_TARGET = re.compile(r"[0-9]+")
MAX_COUNT_DIGITS = 9
SLUG_BYTES = 80
SHOWN_TARGET_CHARS = 60
READ_ONLY_SQL = re.compile(r"^\s*(SELECT|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|END)\b", re.IGNORECASE)
PRAGMA_READ = re.compile(r"^\s*PRAGMA\b[^=]*$", re.IGNORECASE)


def default_migrate_dir() -> Path:
    """The chain shipped with memoric (package `memoric_migrations`; `migrations/` in a checkout)."""
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "migrations"


def _is_migration_file(path: Path) -> bool:
    """A file named NNN_name.py: three ASCII digits, a printable name without dots."""
    return FILE_PATTERN.fullmatch(path.name) is not None and path.stem.isprintable() and path.is_file()


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


# --- targets ---------------------------------------------------------------------------------


def _position(target: str, names: list[str]) -> int:
    """The index in `names` an absolute target stands for: -1 is base."""
    if target == "head":
        return len(names) - 1
    if target == "base":
        return -1
    matches = [i for i, name in enumerate(names) if name == target or _number_matches(name, target)]
    if len(matches) > 1:
        ambiguous = ", ".join(names[i] for i in matches)
        raise MigrationError(f"migration target {_shown(target)} is ambiguous: it matches {ambiguous}")
    if not matches:
        raise _unknown_target(target, names)
    return matches[0]


def _number_matches(name: str, target: str) -> bool:
    """Whether `target` is the number of migration `name` (ASCII digits; leading zeros optional)."""
    return NUMBER_TARGET.fullmatch(target) is not None and target.lstrip("0") == name[:3].lstrip("0")


def _cut(text: str) -> str:
    """`text` cut short for an error message when it is very long."""
    return text if len(text) <= SHOWN_TARGET_CHARS else text[: SHOWN_TARGET_CHARS - 3] + "..."


def _shown(target) -> str:
    """A target as error messages show it: quoted and escaped (one line), cut short when very long."""
    return repr(_cut(target) if isinstance(target, str) else target)


def _unknown_target(target, names: list[str]) -> MigrationError:
    known = ", ".join(names) if names else "(the chain is empty)"
    return MigrationError(
        f"unknown migration target {_shown(target)}: use head, base, +N, -N, a migration name or its number; "
        f"migrations: {known}"
    )


def _relative(target: str, names: list[str]) -> tuple[str, int] | None:
    """('+', N) or ('-', N) for a relative target, None for an absolute one.

    N is ASCII digits; one too large to mean anything stands as a count no chain reaches.
    """
    if not isinstance(target, str) or not target:
        raise _unknown_target(target, names)
    match = RELATIVE_TARGET.fullmatch(target)
    if match is None:
        return None
    digits = match.group(2).lstrip("0")
    return match.group(1), int(digits) if len(digits) <= MAX_COUNT_DIGITS else 10**MAX_COUNT_DIGITS


def upgrade_plan(target: str, names: list[str], done: list[str]) -> list[str]:
    """The migrations `upgrade(target)` applies, in order."""
    pending = [name for name in names if name not in done]
    relative = _relative(target, names)
    if relative is None:
        position = _position(target, names)
        return [name for name in names[: position + 1] if name not in done]
    sign, count = relative
    if sign == "-":
        raise MigrationError(
            f"upgrade target {_shown(target)} goes backwards: use `downgrade {_cut(target)}`"
        )
    if count > len(pending):
        raise MigrationError(f"cannot upgrade {_cut(target)}: only {len(pending)} migration(s) pending")
    return pending[:count]


def downgrade_plan(target: str, names: list[str], done: list[str]) -> list[str]:
    """The migrations `downgrade(target)` rolls back, latest first."""
    latest_first = list(reversed(done))
    relative = _relative(target, names)
    if relative is None:
        keep = set(names[: _position(target, names) + 1])
        return [name for name in latest_first if name not in keep]
    sign, count = relative
    if sign == "+":
        raise MigrationError(f"downgrade target {_shown(target)} goes forwards: use `upgrade {_cut(target)}`")
    if count > len(done):
        raise MigrationError(f"cannot downgrade {_cut(target)}: only {len(done)} migration(s) applied")
    return latest_first[:count]


def stamp_plan(target: str, names: list[str], done: list[str]) -> tuple[list[str], list[str]]:
    """(names to record as applied, names to forget) so that the history stands at `target`."""
    relative = _relative(target, names)
    if relative is None:
        wanted = names[: _position(target, names) + 1]
        return [n for n in wanted if n not in done], [n for n in done if n not in wanted]
    if relative[0] == "+":
        return upgrade_plan(target, names, done), []
    return [], downgrade_plan(target, names, done)


# --- running peewee-migrate ------------------------------------------------------------------


class _NoRows:
    """The cursor a migration sees while it is only replayed to rebuild the ORM snapshot."""

    rowcount = 0
    lastrowid = None
    description = ()

    def fetchone(self):
        return None

    def fetchall(self):
        return []

    def fetchmany(self, size=None):
        return []

    def __iter__(self):
        return iter(())


@contextlib.contextmanager
def _intercepted(database: peewee.Database, handler: Callable) -> Iterator[None]:
    """Route this thread's `execute_sql` calls on `database` through `handler(real, sql, params)`.

    Other threads keep the real method: peewee-migrate's own replay patches
    `peewee.Database.execute_sql` for the whole process, which would swallow their writes.
    """
    real = database.execute_sql
    owner = threading.get_ident()
    had_own = "execute_sql" in vars(database)

    def execute_sql(sql, params=None, *args, **kwargs):
        if threading.get_ident() != owner:
            return real(sql, params, *args, **kwargs)
        return handler(real, sql, params, *args, **kwargs)

    database.execute_sql = execute_sql
    try:
        yield
    finally:
        if had_own:
            database.execute_sql = real
        else:
            del database.execute_sql


def _no_rows(real, sql, params=None, *args, **kwargs):
    return _NoRows()


class _Migrator(Migrator):
    """peewee-migrate's Migrator; each migration ends with checks of what it built.

    SQLite: no index may name a column its table lacks (SQLite would index a string constant
    instead of failing), and `PRAGMA foreign_key_check` must find nothing.
    """

    def __call__(self):
        super().__call__()
        database = self.__database__
        misread = catalogue.misread_index_columns(database, [model._meta.table_name for model in self.orm])
        if misread:
            raise MigrationError("; ".join(misread))
        if isinstance(database, peewee.SqliteDatabase):
            broken = database.execute_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise MigrationError(f"foreign key violations after the migration: {broken[:5]}")


class _Router(Router):
    """peewee-migrate's Router with memoric's history table and a replay safe for other threads."""

    def __init__(self, database: peewee.Database, migrate_dir: Path, names: list[str]) -> None:
        super().__init__(
            database,
            migrate_dir=migrate_dir,
            migrate_table=HISTORY_TABLE,
            logger=log,
            migrator_class=_Migrator,
        )
        self.names = names

    @property
    def todo(self) -> list[str]:
        return self.names

    @property
    def done(self) -> list[str]:
        """The applied migrations; [] before the first run, without creating the history table."""
        if not self.database.table_exists(HISTORY_TABLE):
            return []
        return super().done

    @cached_property
    def model(self) -> type[peewee.Model]:
        """The history table, created (with its unique index) on the first run."""
        model = history_model(self.database)
        indexes = {index.name for index in self.database.get_indexes(HISTORY_TABLE)}
        if HISTORY_INDEX not in indexes:
            model.create_table(safe=True)
        return model

    def run_one(self, name, migrator, *, fake=True, downgrade=False, force=False):
        """Run a migration; a fake run replays it into `migrator.orm` without touching the database."""
        if not fake:
            return super().run_one(name, migrator, fake=False, downgrade=downgrade, force=force)
        migrate, _ = self.read(name)
        with _intercepted(self.database, _no_rows):
            migrate(migrator, self.database, fake=True)
        migrator.__ops__ = []
        if force:
            self.model.create(name=name)
        return name


# Database errors outside a migration become MemoricError with the cause chained.
_translate_errors = driver_errors(
    lambda migrations, method_name, exc: (
        f"migrations: {method_name} failed: {failure_reason(migrations.database, exc, migrations.store.dsn)}"
    )
)


# --- the public API --------------------------------------------------------------------------


class Migrations:
    """The migration chain of one store: upgrade, downgrade, inspect, stamp, preview, create."""

    def __init__(
        self,
        store: MemoryStore,
        *,
        migrate_dir: str | Path | None = None,
        lock_timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.migrate_dir = Path(migrate_dir) if migrate_dir is not None else default_migrate_dir()
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait

    @property
    def database(self) -> peewee.Database:
        return self.store.database

    # --- reading the state (no lock, nothing written) ---

    def names(self) -> list[str]:
        """The migrations of the chain, in order (files `NNN_name.py` of the migrations directory).

        An entry that looks meant as a migration but is not one (`3_x.py`, `003-x.py`,
        `٠٠٣_x.py`, a directory) is an error: skipping it would leave it silently unapplied.
        """
        directory = str(self.migrate_dir)
        if not self.migrate_dir.is_dir():
            raise MigrationError(f"migrations directory {directory!r} does not exist")
        try:
            entries = sorted(self.migrate_dir.iterdir())
            files = [path for path in entries if _is_migration_file(path)]
        except OSError as exc:
            raise MigrationError(f"cannot read migrations directory {directory!r}: {exc.strerror}") from exc
        odd = [path.name for path in entries if LOOKS_LIKE_MIGRATION.match(path.name) and path not in files]
        if odd:
            raise MigrationError(
                f"migrations directory {directory!r} holds {', '.join(map(_shown, odd))}, which "
                "look like migrations but are not files named NNN_name.py (three ASCII digits, a "
                "printable name without dots): rename or remove them"
            )
        return sorted(path.stem for path in files)

    def _applied(self) -> list[tuple[str, dt.datetime]]:
        """(name, applied at) of the applied migrations, oldest first; [] before the first run."""
        if not self.database.table_exists(HISTORY_TABLE):
            return []
        model = history_model(self.database)
        return [(row.name, row.migrated_at) for row in model.select().order_by(model.id)]

    @_translate_errors
    def current(self) -> str | None:
        """The latest applied migration, None when none is."""
        applied = self._applied()
        return applied[-1][0] if applied else None

    @_translate_errors
    def history(self) -> list[dict]:
        """Every migration of the chain (then any applied one missing from it), applied or not."""
        applied = dict(self._applied())
        rows = [{"name": n, "applied": n in applied, "applied_at": applied.get(n)} for n in self.names()]
        known = {row["name"] for row in rows}
        rows += [
            {"name": n, "applied": True, "applied_at": at} for n, at in applied.items() if n not in known
        ]
        return rows

    @_translate_errors
    def pending(self) -> list[str]:
        """The migrations of the chain not applied yet, in order."""
        done = {name for name, _ in self._applied()}
        return [name for name in self.names() if name not in done]

    # --- running (under the lock) ---

    @contextlib.contextmanager
    def _session(self) -> Iterator[_Router]:
        """A Router for one run, under the migrations lock; on SQLite without foreign-key enforcement."""
        names = self.names()
        if self.database.in_transaction():
            raise MigrationError("migrations cannot run inside an open transaction: commit or roll back")
        lock = self.store.lock(LOCK_NAME, timeout=self.lock_timeout, on_wait=self.on_wait)
        with lock, self._foreign_keys_off():
            yield _Router(self.database, self.migrate_dir, names)

    @contextlib.contextmanager
    def _foreign_keys_off(self) -> Iterator[None]:
        """SQLite table rebuilds inside a transaction must not cascade: run with foreign_keys=0."""
        enabled = self.store.is_sqlite and bool(self.database.pragma("foreign_keys"))
        if enabled:
            self.database.pragma("foreign_keys", 0)
        try:
            yield
        finally:
            if enabled:
                self.database.pragma("foreign_keys", 1)

    def _router(self, names: list[str]) -> _Router:
        """A Router over this chain whose `todo` is `names`."""
        return _Router(self.database, self.migrate_dir, names)

    def _apply(self, router: _Router, names: list[str], *, downgrade: bool = False) -> list[str]:
        """Run `names` one by one, each in its own transaction; MigrationError names a failing one.

        Inside an outer transaction (a downgrade, a preview) a failure undoes the whole run.
        """
        if not names:
            return []
        try:
            migrator = router.migrator
        except Exception as exc:
            raise MigrationError(f"cannot replay the applied migrations: {first_line(exc)}") from exc
        finished = []
        for name in names:
            try:
                router.run_one(name, migrator, fake=False, downgrade=downgrade)
            except Exception as exc:
                raise MigrationError(_failure(name, downgrade, finished, exc)) from exc
            finished.append(name)
        return finished

    @_translate_errors
    def upgrade(self, target: str = "head") -> list[str]:
        """Apply the pending migrations up to `target` (default head); the names applied.

        A table the plan creates that exists already with another shape is refused first.
        """
        with self._session() as router:
            done = router.done
            plan = upgrade_plan(target, router.names, done)
            self._refuse_foreign_tables(done, plan)
            return self._apply(router, plan)

    @_translate_errors
    def downgrade(self, target: str = "-1", *, confirm_data_loss: bool = False) -> list[str]:
        """Roll back applied migrations down to `target` (default -1); the names rolled back.

        The whole downgrade is one transaction. When it drops tables or columns that hold data
        it is undone and refused with DataLossRefused (what would go, how many rows or values)
        unless `confirm_data_loss`; dropping empty ones needs no confirmation.
        """
        with self._session() as router:
            plan = downgrade_plan(target, router.names, router.done)
            if not plan:
                return []
            before = self._shape()
            with self.database.atomic() as transaction:
                rolled_back = self._apply(router, plan, downgrade=True)
                dropped = [] if confirm_data_loss else _dropped(before, self._shape())
                if not dropped:
                    return rolled_back
                transaction.rollback()
                losses = self._holding_data(dropped)
                if losses:
                    raise DataLossRefused(target, losses)
                return self._apply(self._router(router.names), plan, downgrade=True)

    def _shape(self) -> dict[str, set[str]]:
        """{table: its column names} of every application table but the history."""
        names = [table for table in catalogue.tables(self.database) if table != HISTORY_TABLE]
        return {table: set(found) for table, found in catalogue.columns(self.database, names).items()}

    def _holding_data(self, dropped: list[tuple[str, str | None]]) -> dict[str, int]:
        """{`table` or `table.column`: rows or non-null values} of what is dropped and not empty."""
        losses = {}
        for table, column in dropped:
            if column is None:
                losses[table] = catalogue.count_rows(self.database, table)
            else:
                losses[f"{table}.{column}"] = catalogue.count_values(self.database, table, column)
        return {what: count for what, count in losses.items() if count}

    def _refuse_foreign_tables(self, done: list[str], plan: list[str]) -> None:
        """MigrationError, before anything is written, when a table `plan` creates exists in another shape.

        The chain's `CREATE TABLE IF NOT EXISTS` would adopt any table of that name: another
        application's, which a later `downgrade` would then drop. The shape the chain builds is
        learnt by building it, with the existing tables renamed aside, in a transaction that is
        rolled back.
        """
        existing = set(catalogue.tables(self.database))
        created = self._created_tables(done, plan)
        creators = {table: name for name, tables in created for table in tables if table in existing}
        if not creators:
            return
        last = max(plan.index(name) for name in creators.values())
        built, found = self._built_and_found(plan[: last + 1], list(creators))
        problems = [
            f"table {table} already exists and is not the one {creators[table]} creates: "
            + "; ".join(differences)
            for table in creators
            if (differences := catalogue.shape_differences(built.get(table), found[table]))
        ]
        if problems:
            raise MigrationError(
                "; ".join(problems) + "; nothing was changed (give memoric a database or schema of its own)"
            )

    def _created_tables(self, done: list[str], plan: list[str]) -> list[tuple[str, list[str]]]:
        """(migration, the tables it creates) for each of `plan`, from the chain's ORM snapshot."""
        router, migrator = self._router(done), self._replayed_migrator(done)
        created = []
        for name in plan:
            before = {model._meta.table_name for model in migrator.orm}
            _replay(router, migrator, name)
            created.append((name, sorted({model._meta.table_name for model in migrator.orm} - before)))
        return created

    def _built_and_found(self, plan: list[str], tables: list[str]) -> tuple[dict, dict]:
        """The columns `plan` gives `tables`, and the columns they have now; nothing is kept."""
        aside = {table: f"memoric_existing_{number}" for number, table in enumerate(tables)}
        with self.database.atomic() as transaction:
            try:
                for table, name in aside.items():
                    catalogue.rename_table(self.database, table, name)
                router = self._router(plan)
                migrator = router.migrator
                for name in plan:
                    router.run_one(name, migrator, fake=False)
                built = catalogue.columns(self.database, tables)
                found = catalogue.columns(self.database, aside.values())
            except Exception as exc:
                raise MigrationError(
                    f"cannot compare the existing table(s) {', '.join(tables)} with what the chain builds: "
                    f"{first_line(exc)}; nothing was changed"
                ) from exc
            finally:
                transaction.rollback()
        return built, {table: found[name] for table, name in aside.items()}

    @_translate_errors
    def stamp(self, target: str) -> str | None:
        """Record the history as standing at `target` without running any migration; the new current.

        Recording a migration whose table exists in another shape is refused, as for `upgrade`.
        """
        with self._session() as router:
            done = router.done
            add, forget = stamp_plan(target, router.names, done)
            self._refuse_foreign_tables(done, add)
            model = router.model
            with self.database.atomic():
                if forget:
                    model.delete().where(model.name.in_(forget)).execute()
                for name in add:
                    model.create(name=name)
            done = router.done
            return done[-1] if done else None

    @_translate_errors
    def sql(self, direction: str, target: str) -> list[str]:
        """The exact SQL `upgrade`/`downgrade` to `target` would run; run and rolled back, nothing changed."""
        if direction not in ("upgrade", "downgrade"):
            raise MigrationError(f"direction must be 'upgrade' or 'downgrade', got {direction!r}")
        statements: list[str] = []

        def record(real, sql, params=None, *args, **kwargs):
            if not READ_ONLY_SQL.match(sql) and not PRAGMA_READ.match(sql):
                statements.append(self._render(sql, params))
            return real(sql, params, *args, **kwargs)

        with self._session() as router:
            done = router.done
            if direction == "upgrade":
                plan = upgrade_plan(target, router.names, done)
                self._refuse_foreign_tables(done, plan)
            else:
                plan = downgrade_plan(target, router.names, done)
            with self.database.atomic() as transaction:
                try:
                    with _intercepted(self.database, record):
                        self._apply(router, plan, downgrade=direction == "downgrade")
                finally:
                    transaction.rollback()
        return statements

    def _render(self, sql: str, params) -> str:
        """`sql` with its parameters inlined as SQL literals, as the server would run it."""
        if not params:
            return sql
        if self.store.is_postgres:
            return self.database.cursor().mogrify(sql, params).decode()
        return _inline_sqlite_params(sql, list(params))

    @_translate_errors
    def init_db(self) -> None:
        """Create the schema straight from the models and record it as being at head.

        Tables of the chain that exist without any history go through the chain instead, which
        checks them (a table of another shape is refused) and brings them to head.
        """
        with self._session() as router:
            names, done = router.names, router.done
            pending = [name for name in names if name not in done]
            if done and pending:
                raise MigrationError(
                    f"the database is at {done[-1]}, behind head: run `memoric migrate upgrade` instead"
                )
            if not done and self._existing_chain_tables(pending):
                self._refuse_foreign_tables(done, pending)
                self._apply(router, pending)
                return
            with self.database.atomic():
                self.store.create_schema()
                model = router.model
                for name in pending:
                    model.create(name=name)

    @_translate_errors
    def ensure_schema(self, auto_migrate: bool = False) -> None:
        """Build an empty database through the chain; refuse one behind head unless `auto_migrate`.

        The decision is taken again under the migrations lock: processes starting together on an
        empty database all wait for the one building it, then find it at head.
        """
        if not self.pending():
            return
        with self._session() as router:
            done = router.done
            pending = [name for name in router.names if name not in done]
            if not pending:
                return
            self._refuse_foreign_tables(done, pending)
            if auto_migrate or not (done or self._existing_chain_tables(pending)):
                self._apply(router, pending)
                return
        raise MigrationError(
            f"the database schema is behind: {len(pending)} pending migration(s) ({', '.join(pending)}); "
            "run `memoric migrate upgrade` (or pass auto_migrate=True)"
        )

    # --- writing migration files ---

    def create(self, message: str, auto=False) -> Path:
        """Write `NNN_message.py`: the template, or with `auto` a draft from the models to review.

        A new file only: an existing one is never overwritten, a failed write leaves none.
        """
        slug = _slug(message)
        if not slug:
            raise MigrationError("a migration needs a message with letters or digits: -m 'add importance'")
        names = self.names()
        number = max((int(name[:3]) for name in names), default=0) + 1
        if number > 999:
            raise MigrationError("the chain is full: migration numbers stop at 999")
        path = self.migrate_dir / f"{number:03d}_{slug}.py"
        if auto:
            replayed = self._replayed_migrator(names)
            source = draft_source(message, replayed, None if auto is True else list(auto))
        else:
            source = blank_source(message)
        _write_new_file(path, source)
        return path

    def _replayed_migrator(self, names: list[str]) -> Migrator:
        """A Migrator whose ORM snapshot is the schema `names` build (nothing executed)."""
        router, migrator = self._router(names), _Migrator(self.database)
        for name in names:
            _replay(router, migrator, name)
        return migrator

    def _existing_chain_tables(self, names: list[str]) -> list[str]:
        """The tables migrations `names` create that exist already."""
        existing = set(catalogue.tables(self.database))
        created = self._created_tables([], names)
        return [table for _, tables in created for table in tables if table in existing]


def _slug(message) -> str:
    """The file-name part of a message: its letters and digits (any script) joined by `_`.

    Lower case, NFC (the form Linux and macOS agree on), cut to SLUG_BYTES bytes of UTF-8 so
    the file name stays far below the file system's limit of 255.
    """
    if not isinstance(message, str):
        return ""
    words = re.sub(r"[\W_]+", "_", unicodedata.normalize("NFC", message).lower()).strip("_")
    return words.encode("utf-8")[:SLUG_BYTES].decode("utf-8", "ignore").rstrip("_")


def _write_new_file(path: Path, text: str) -> None:
    """Create `path` holding `text`; MigrationError, and no file left behind, when that fails."""
    try:
        handle = path.open("x", encoding="utf-8")
    except OSError as exc:
        raise MigrationError(f"cannot create {str(path)!r}: {exc.strerror or exc}; nothing written") from exc
    try:
        with handle:
            handle.write(text)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise MigrationError(f"cannot write {str(path)!r}: {exc.strerror or exc}; nothing written") from exc


def _replay(router: _Router, migrator: Migrator, name: str) -> None:
    """Replay migration `name` into `migrator.orm` (nothing executed); MigrationError if it cannot."""
    try:
        router.run_one(name, migrator, fake=True)
    except Exception as exc:
        raise MigrationError(f"cannot replay migration {name}: {first_line(exc)}") from exc


def _dropped(before: dict[str, set[str]], after: dict[str, set[str]]) -> list[tuple[str, str | None]]:
    """(table, None) for each table gone from `before` to `after`, (table, column) for each column."""
    dropped: list[tuple[str, str | None]] = []
    for table, table_columns in before.items():
        if table not in after:
            dropped.append((table, None))
        else:
            dropped += [(table, column) for column in sorted(table_columns - after[table])]
    return dropped


def _failure(name: str, downgrade: bool, finished: list[str], exc: BaseException) -> str:
    if downgrade:
        return (
            f"rollback of migration {name} failed; the whole downgrade was undone (schema and history "
            f"unchanged): {first_line(exc)}"
        )
    message = f"migration {name} failed and was undone (schema and history unchanged): {first_line(exc)}"
    if finished:
        message += f" [completed before it: {', '.join(finished)}]"
    return message


def _inline_sqlite_params(sql: str, params: list) -> str:
    """Replace each `?` outside quotes with the next parameter as a SQLite literal."""
    out, quote = [], None
    for char in sql:
        if quote:
            quote = None if char == quote else quote
        elif char in ("'", '"'):
            quote = char
        elif char == "?" and params:
            out.append(_sqlite_literal(params.pop(0)))
            continue
        out.append(char)
    return "".join(out)


def _sqlite_literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    return "'" + str(value).replace("'", "''") + "'"


# --- migration files: the template and drafts from the models ---------------------------------

TEMPLATE = '''"""{message}

{about}
"""
{imports}

def migrate(migrator, database, *, fake=False):
    """Apply: {message}"""{migrate}


def rollback(migrator, database, *, fake=False):
    """Undo: {message}"""{rollback}
'''
BLANK_ABOUT = """Written by `memoric migrate revision`. Queue the changes on `migrator`; they run after this
function returns, in one transaction with the history row: `migrator.add_fields("memories", ...)`,
`migrator.add_index(...)`, `migrator.sql("...")`, `migrator.run(function)`. With `fake=True` the
migration is only replayed to rebuild `migrator.orm`: touch the database through `migrator` only.
SQL for PostgreSQL alone goes under `if isinstance(database, pw.PostgresqlDatabase):`."""
DRAFT_ABOUT = """DRAFT written by `memoric migrate revision --auto` from the models: review and edit it before
running it. A renamed column shows up as add + remove (data loss). Id, JSON and UTC timestamp
columns use memoric's live field classes (`mf`, memoric.db.models): copy them in to freeze this file."""
INDENT = "    "
CUSTOM_FIELDS = {
    "IdField": models.IdField,
    "JSONDocumentField": models.JSONDocumentField,
    "UTCDateTimeField": models.UTCDateTimeField,
}
IMPORTS = (
    (re.compile(r"\bpw\."), "import peewee as pw"),
    (re.compile(r"(?<![\w.])SQL\("), "from peewee import SQL"),
    (re.compile(r"\bmf\."), "from memoric.db import models as mf"),
)


def blank_source(message: str) -> str:
    """A migration file with empty `migrate` and `rollback` functions."""
    return _source(message, BLANK_ABOUT, [], [])


def draft_source(message: str, migrator: Migrator, targets: list | None = None) -> str:
    """A migration file taking the chain's schema (`migrator.orm`) to the models' (default: memoric's).

    MigrationError when there is nothing to change.
    """
    targets = targets or [models.Memory, models.MemoryCluster]
    source = list(migrator.orm)
    with _generator_patches():
        forward = auto.diff_many(targets, source, migrator)
        backward = auto.diff_many(source, targets, migrator, reverse=True)
    before, after = _gin_indexes(source), _gin_indexes(targets)
    forward += _gin_changes(before, after)
    backward += _gin_changes(after, before)
    if not forward:
        raise MigrationError("no changes: the models match the migration chain, nothing written")
    return _source(message, DRAFT_ABOUT, forward, backward)


def _source(message: str, about: str, forward: list[str], backward: list[str]) -> str:
    printable = "".join(char if char.isprintable() else " " for char in message)
    message = " ".join(printable.replace("\\", "/").replace('"', "'").split())
    migrate, rollback = _body(forward), _body(backward)
    used = [line for pattern, line in IMPORTS if pattern.search(migrate + rollback)]
    own = [line for line in used if line.startswith("from memoric")]
    groups = ("\n".join(line for line in used if line not in own), "\n".join(own))
    imports = "".join(f"\n{group}\n" for group in groups if group)
    return TEMPLATE.format(message=message, about=about, imports=imports, migrate=migrate, rollback=rollback)


def _body(changes: list[str]) -> str:
    """The changes as a function body (after the docstring line); empty when there are none."""
    lines = "\n\n".join(changes).splitlines()
    return "".join("\n" + (INDENT + line if line.strip() else "") for line in lines)


def _gin_indexes(model_list: list) -> dict[str, dict]:
    """{table: {index name: (column, opclass)}}: the PostgreSQL-only GIN indexes of each model."""
    found = {}
    for model in model_list:
        table = model._meta.table_name
        default = GIN_INDEXES if table == "memories" else {}
        found[table] = dict(getattr(model._meta, "gin_indexes", default))
    return found


def _gin_changes(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Code moving the GIN indexes of the tables in `after` from `before` (PostgreSQL only)."""
    changes = []
    for table, wanted in after.items():
        had = before.get(table, {})
        for name in sorted(had):
            if wanted.get(name) != had[name]:
                changes.append(_gin_code(table, name, None))
        for name in sorted(wanted):
            if had.get(name) != wanted[name]:
                changes.append(_gin_code(table, name, wanted[name]))
    return changes


def _gin_code(table: str, name: str, definition: tuple[str, str] | None) -> str:
    """Create (`definition` given) or drop one GIN index, and record it in the ORM snapshot."""
    gin = f'migrator.orm["{table}"]._meta.gin_indexes'
    if definition is None:
        sql, record = f'DROP INDEX IF EXISTS "{name}"', f"{gin}.pop({name!r}, None)"
    else:
        column, opclass = definition
        sql = f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING GIN ("{column}" {opclass})'
        record = f"{gin}[{name!r}] = {definition!r}"
    return f"if isinstance(database, pw.PostgresqlDatabase):\n{INDENT}migrator.sql({sql!r})\n{record}"


_find_field_type = auto.find_field_type
_model_to_code = auto.model_to_code
_diff_model = auto.diff_model


_column_init = auto.Column.__init__


def _column_init_with_default(self, field: peewee.Field, **kwargs) -> None:
    """peewee-migrate's column, which also writes the SQL DEFAULT and a `dict`/`list` default."""
    _column_init(self, field, **kwargs)
    self.default = _sql_default(field)
    if field.default in (dict, list):
        self.extra_parameters = {**(self.extra_parameters or {}), "default": field.default.__name__}


def _sql_default(field: peewee.Field) -> str | None:
    for constraint in field.constraints or ():
        if isinstance(constraint, peewee.SQL) and constraint.sql.upper().startswith("DEFAULT "):
            return constraint.sql[len("DEFAULT ") :]
    return None


def _field_type(field: peewee.Field) -> type:
    """memoric's JSON and timestamp fields (or snapshots of them) are types of their own."""
    for cls in type(field).__mro__:
        if cls.__name__ in CUSTOM_FIELDS:
            return CUSTOM_FIELDS[cls.__name__]
    return _find_field_type(field)


def _index_parts(idx) -> tuple[str, list[peewee.Field]]:
    fields = list(idx._expressions)
    if not all(isinstance(field, peewee.Field) for field in fields):
        raise MigrationError(f"cannot draft index {idx._name!r} (an expression index): write it by hand")
    return idx._model._meta.table_name, fields


def _create_index_code(idx) -> str:
    """Create a named index and record it in the ORM snapshot."""
    table, fields = _index_parts(idx)
    unique = "UNIQUE " if idx._unique else ""
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    sql = f'CREATE {unique}INDEX IF NOT EXISTS "{idx._name}" ON "{table}" ({columns})'
    attributes = ", ".join(f"model.{field.name}" for field in fields)
    return (
        f'model = migrator.orm["{table}"]\n'
        f"model.add_index({attributes}, name={idx._name!r}, unique={bool(idx._unique)})\n"
        f"migrator.sql({sql!r})"
    )


def _drop_index_code(idx) -> str:
    """Drop a named index and forget it in the ORM snapshot."""
    table, _ = _index_parts(idx)
    sql = f'DROP INDEX IF EXISTS "{idx._name}"'
    keep = f'[i for i in model._meta.indexes if getattr(i, "_name", "") != {idx._name!r}]'
    return f'model = migrator.orm["{table}"]\nmodel._meta.indexes = {keep}\nmigrator.sql({sql!r})'


def _create_model_code(model: type[peewee.Model], **kwargs) -> str:
    """A new table: the model class, its per-dialect column types, then its named indexes."""
    name = model.__name__
    code = re.sub(r"^\s+indexes = .*\n?", "", _model_to_code(model, **kwargs), flags=re.MULTILINE)
    lines = [
        "@migrator.create_model",
        code,
        f"{name}._meta.set_database(database)",
        f"{name}._meta.gin_indexes = {{}}",
    ]
    for idx in model._meta.fields_to_index():
        _, fields = _index_parts(idx)
        attributes = ", ".join(f"{name}.{field.name}" for field in fields)
        lines.append(f"{name}.add_index({attributes}, name={idx._name!r}, unique={bool(idx._unique)})")
    return "\n".join(lines)


def _diff_model_drop_indexes_first(model, source, **opts) -> list[str]:
    """One table's changes with index drops first: SQLite cannot drop an indexed column."""
    changes = _diff_model(model, source, **opts)
    drops = [change for change in changes if "DROP INDEX" in change]
    return drops + [change for change in changes if change not in drops]


@contextlib.contextmanager
def _generator_patches() -> Iterator[None]:
    """peewee-migrate's generator, taught memoric's fields, SQL defaults and named indexes."""
    replacements = {
        "find_field_type": _field_type,
        "add_index": _create_index_code,
        "drop_index": _drop_index_code,
        "create_model": _create_model_code,
        "diff_model": _diff_model_drop_indexes_first,
    }
    saved = {name: getattr(auto, name) for name in replacements}
    modules = dict(auto.FIELD_MODULES_MAP)
    try:
        auto.Column.__init__ = _column_init_with_default
        for name, value in replacements.items():
            setattr(auto, name, value)
        auto.FIELD_MODULES_MAP.pop("JSONField", None)
        auto.FIELD_MODULES_MAP.update(dict.fromkeys(CUSTOM_FIELDS, "mf"))
        yield
    finally:
        auto.Column.__init__ = _column_init
        for name, value in saved.items():
            setattr(auto, name, value)
        auto.FIELD_MODULES_MAP.clear()
        auto.FIELD_MODULES_MAP.update(modules)
