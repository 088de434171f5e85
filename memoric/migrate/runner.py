"""Running peewee-migrate safely: one run at a time, each migration checked and named when it fails.

peewee-migrate's Router and Migrator, with what they lack: a cross-process lock around every run,
a unique history table, a replay of the applied migrations that leaves other threads alone,
checks after each migration, and errors that name the migration at fault. Each migration runs in
one transaction with its history row: a failure rolls back both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path

import peewee
from peewee_migrate import Migrator, Router

from memoric.db import catalogue
from memoric.db.connection import driver_errors, failure_reason, first_line
from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate.chains import HISTORY_INDEX, HISTORY_TABLE, history_model, migration_names

log = logging.getLogger("memoric.migrations")
log.addHandler(logging.NullHandler())

LOCK_NAME = "migrations"


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
def intercepted(database: peewee.Database, handler: Callable) -> Iterator[None]:
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

    No index may name a column its table lacks (SQLite would index a string constant instead of
    failing), and no row may break a foreign key (SQLite runs migrations without enforcing them).
    """

    def __init__(self, database: peewee.Database, dialect) -> None:
        super().__init__(database)
        self.dialect = dialect

    def __call__(self):
        super().__call__()
        database = self.__database__
        misread = catalogue.misread_index_columns(database, [model._meta.table_name for model in self.orm])
        if misread:
            raise MigrationError("; ".join(misread))
        broken = self.dialect.foreign_key_violations(database)
        if broken:
            raise MigrationError(f"foreign key violations after the migration: {broken[:5]}")


class _Router(Router):
    """peewee-migrate's Router with memoric's history table and a replay safe for other threads."""

    def __init__(self, database: peewee.Database, migrate_dir: Path, names: list[str], dialect) -> None:
        super().__init__(
            database,
            migrate_dir=migrate_dir,
            migrate_table=HISTORY_TABLE,
            logger=log,
            migrator_class=_Migrator,
        )
        self.names = names
        self.dialect = dialect

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

    @cached_property
    def migrator(self) -> Migrator:
        """A Migrator whose ORM snapshot is the schema the applied migrations built."""
        migrator = _Migrator(self.database, self.dialect)
        for name in self.done:
            self.run_one(name, migrator)
        return migrator

    def run_one(self, name, migrator, *, fake=True, downgrade=False, force=False):
        """Run a migration; a fake run replays it into `migrator.orm` without touching the database."""
        if not fake:
            return super().run_one(name, migrator, fake=False, downgrade=downgrade, force=force)
        migrate, _ = self.read(name)
        with intercepted(self.database, _no_rows):
            migrate(migrator, self.database, fake=True)
        migrator.__ops__ = []
        if force:
            self.model.create(name=name)
        return name


# Database errors outside a migration become MemoricError with the cause chained.
translate_errors = driver_errors(
    lambda migrations, method_name, exc: (
        f"migrations: {method_name} failed: {failure_reason(migrations.database, exc, migrations.store.dsn)}"
    )
)


class Runner:
    """One store's chain run under the migrations lock: routers, replays, and applying migrations."""

    def __init__(
        self,
        store: MemoryStore,
        migrate_dir: Path,
        lock_timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.migrate_dir = migrate_dir
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait

    @property
    def database(self) -> peewee.Database:
        return self.store.database

    @contextlib.contextmanager
    def session(self) -> Iterator[_Router]:
        """A Router for one run, under the migrations lock, with foreign keys unenforced (SQLite)."""
        names = migration_names(self.migrate_dir)
        if self.database.in_transaction():
            raise MigrationError("migrations cannot run inside an open transaction: commit or roll back")
        lock = self.store.lock(LOCK_NAME, timeout=self.lock_timeout, on_wait=self.on_wait)
        with lock, self.store.sql_dialect.foreign_keys_off(self.database):
            yield self.router(names)

    def router(self, names: list[str]) -> _Router:
        """A Router over this chain whose `todo` is `names`."""
        return _Router(self.database, self.migrate_dir, names, self.store.sql_dialect)

    def apply(self, router: _Router, names: list[str], *, downgrade: bool = False) -> list[str]:
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

    def replayed_migrator(self, names: list[str]) -> Migrator:
        """A Migrator whose ORM snapshot is the schema `names` build (nothing executed)."""
        router, migrator = self.router(names), _Migrator(self.database, self.store.sql_dialect)
        for name in names:
            replay(router, migrator, name)
        return migrator


def replay(router: _Router, migrator: Migrator, name: str) -> None:
    """Replay migration `name` into `migrator.orm` (nothing executed); MigrationError if it cannot."""
    try:
        router.run_one(name, migrator, fake=True)
    except Exception as exc:
        raise MigrationError(f"cannot replay migration {name}: {first_line(exc)}") from exc


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
