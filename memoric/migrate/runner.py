"""Running peewee-migrate safely: one run at a time, each migration checked and named when it fails.

peewee-migrate's Router and Migrator, with what they lack: a cross-process lock around every run
(one lock for memoric's chain and the application's), unique history tables, a replay of the
applied migrations that leaves other threads alone, checks after each migration, and errors that
name the migration at fault. Each migration runs in one transaction with its history row: a
failure rolls back both. The ORM snapshot a migration sees is memoric's chain then the
application's, so an application's migration can change memoric's tables (`migrator.add_fields`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from functools import cached_property

import peewee
from peewee_migrate import Migrator, Router

from memoric.db import catalogue
from memoric.db.dialects import Dialect
from memoric.db.driver_errors import commit_in_doubt, driver_errors, failure_reason, first_line
from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate.chains import APP_HISTORY_TABLE, HISTORY_TABLE, Chain, history_index, history_model
from memoric.migrate.targets import MEMORIC, Order, Step
from memoric.migrate.transactions import TransactionEnded, intercepted, transaction_calls, transaction_kept

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
def exits_refused() -> Iterator[None]:
    """A migration's SystemExit, or another exception that is not an error (asyncio's
    CancelledError), as a MigrationError: it would end the command as if all went well, or in
    a traceback, the migration undone and nothing said. A stop (KeyboardInterrupt) stays one."""
    try:
        yield
    except (Exception, KeyboardInterrupt):
        raise
    except BaseException as exc:
        said = f" ({exc})" if str(exc) else ""
        raise MigrationError(
            f"it raised {type(exc).__name__}{said}, which ends a program, not a migration: raise an "
            "exception instead"
        ) from exc


def _no_rows(real, sql, params=None, *args, **kwargs):
    return _NoRows()


def _nothing_to_end(name: str) -> None:
    """A replay's `database.commit()` and the like: it touches no database, so has nothing to end."""


class _Migrator(Migrator):
    """peewee-migrate's Migrator; each migration ends with checks of what it built.

    No index may name a column its table lacks (SQLite would index a string constant instead of
    failing), no row may break a foreign key (SQLite runs migrations without enforcing them), and
    an application's migration may not leave memoric's tables a column memoric's inserts cannot
    fill. The migration and its operations keep to their transaction (`transaction_kept`).
    """

    def __init__(self, database: peewee.Database, dialect: Dialect, models: list[type[peewee.Model]]) -> None:
        super().__init__(database)
        self.dialect = dialect
        # {memoric's table: {column its INSERTs name: whether it may be NULL}}
        self.writes = {
            model._meta.table_name: {name: field.null for name, field in model._meta.columns.items()}
            for model in models
        }
        # {memoric's table whose ids come from a counter: its id column}
        self.id_columns = {
            model._meta.table_name: model._meta.primary_key.column_name
            for model in models
            if isinstance(model._meta.primary_key, peewee.AutoField)
        }
        # Before an application's migration (memoric's own are tested): the columns already
        # unfillable, which it is not to blame for; None: not checked.
        self.unfillable_before: set[str] | None = None
        self.triggers_before: dict = {}  # the tables' triggers before the migration (SQLite)
        self.id_tops_before: dict[str, int] = {}  # the highest id each id table had handed out
        self.schemas_before: dict = {}  # where memoric's unqualified table names led
        self.sent: list[str] = []  # the statements the migration sent so far

    def __call__(self):
        database = self.__database__
        with exits_refused(), transaction_kept(database, self.sent):
            super().__call__()
        self.dialect.restore_rebuilt_triggers(database, self.triggers_before, self.sent)
        self._refuse_moved_names()
        self._keep_id_counters()
        misread = self.dialect.misread_index_columns(database, [model._meta.table_name for model in self.orm])
        if misread:
            raise MigrationError("; ".join(misread))
        broken = self.dialect.foreign_key_violations(database)
        if broken:
            raise MigrationError(f"foreign key violations after the migration: {broken[:5]}")
        if self.unfillable_before is not None:
            self._refuse_unfillable_columns()

    def id_tops(self) -> dict[str, int]:
        """The highest id each of memoric's id tables there has handed out (or stores)."""
        tables = set(self.dialect.tables(self.__database__))
        return {
            table: self.dialect.id_top(self.__database__, table, column)
            for table, column in self.id_columns.items()
            if table in tables
        }

    def _keep_id_counters(self) -> None:
        """Raise each id counter the migration moved back (a SQLite table rebuild starts its
        AUTOINCREMENT counter at the highest id stored): an id is never handed out twice, not even
        the id of a memory deleted before the migration."""
        for table, top in self.id_tops().items():
            before = self.id_tops_before.get(table, 0)
            if top < before:
                self.dialect.reserve_ids(
                    self.__database__, table, self.id_columns[table], above=before, count=0
                )

    def schemas_named(self) -> dict:
        """Where memoric's unqualified table names lead now (`Dialect.schemas_named`)."""
        return self.dialect.schemas_named(self.__database__, [*self.writes, HISTORY_TABLE, APP_HISTORY_TABLE])

    def _refuse_moved_names(self) -> None:
        """MigrationError when the migration made a name of memoric's lead to another schema (a
        search_path set, a temporary table of that name): memoric's statements after it, the
        migration's history row first, would go there."""
        for name, schema in self.schemas_named().items():
            before = self.schemas_before.get(name)
            if before is not None and schema is not None and schema != before:
                what = "new tables are created" if name is None else f'"{name}" names a table'
                raise MigrationError(
                    f"it leaves the session where {what} in schema {schema} instead of {before} (a "
                    "search_path it set, or a temporary table of that name): memoric's statements "
                    "after it, its history row first, would go there; name the schema in the "
                    "migration's statements instead, or set search_path back before it ends"
                )

    def unfillable(self) -> list[str]:
        """The columns of memoric's tables that every write of memoric's would leave NULL where
        it may not be (peewee's Python-side `default=` sets none in the table)."""
        found = self.dialect.columns(self.__database__, list(self.writes))
        return catalogue.unfillable_columns(found, self.writes)

    def _refuse_unfillable_columns(self) -> None:
        """MigrationError for such a column the migration just made."""
        unfillable = [column for column in self.unfillable() if column not in self.unfillable_before]
        if unfillable:
            raise MigrationError(
                f"it leaves {', '.join(unfillable)} NOT NULL with no default the database applies, so "
                "every save of memoric's, which leaves the column out, would fail: make it nullable, "
                'or give it a default in the database too (constraints=[pw.SQL("DEFAULT ...")] beside '
                "default=, which only fills the rows there now)"
            )


class _Router(Router):
    """peewee-migrate's Router over one chain, with its history table and a replay safe for other threads."""

    def __init__(self, store: MemoryStore, chain: Chain, names: list[str]) -> None:
        super().__init__(
            store.database,
            migrate_dir=chain.directory,
            migrate_table=chain.table,
            logger=log,
            migrator_class=_Migrator,
        )
        self.store = store
        self.chain = chain
        self.names = names

    @property
    def todo(self) -> list[str]:
        return self.names

    @property
    def done(self) -> list[str]:
        """The applied migrations; [] before the first run; nothing is created or changed (not
        even a SQLite file that is not there yet)."""
        if not self.store.exists():
            return []
        return [step.name for step, _ in self.chain.applied(self.database)]

    @cached_property
    def model(self) -> type[peewee.Model]:
        """The history table, created (with its unique index) on the chain's first run."""
        model = history_model(self.database, self.chain.table)
        indexes = {index.name for index in self.database.get_indexes(self.chain.table)}
        if history_index(self.chain.table) not in indexes:
            model.create_table(safe=True)
        return model

    def read(self, name):
        """The migration's functions, each stopped by TransactionEnded when it ends the transaction
        peewee-migrate runs it in."""
        migrate, rollback = super().read(name)
        return self._kept_in(migrate), self._kept_in(rollback)

    def _kept_in(self, function: Callable) -> Callable:
        def run(migrator, database, *args, fake=False, **kwargs):
            with exits_refused():
                if fake:
                    return function(migrator, database, *args, fake=fake, **kwargs)
                with transaction_kept(database, migrator.sent):
                    return function(migrator, database, *args, fake=fake, **kwargs)

        return run

    def run_one(self, name, migrator, *, fake=True, downgrade=False, force=False):
        """Run a migration; a fake run replays it into `migrator.orm` without touching the database."""
        if not fake:
            migrator.unfillable_before = None if self.chain.label == MEMORIC else set(migrator.unfillable())
            migrator.triggers_before = self.store.dialect.table_triggers(self.database)
            migrator.id_tops_before = migrator.id_tops()
            migrator.schemas_before = migrator.schemas_named()
            migrator.sent = []
            return super().run_one(name, migrator, fake=False, downgrade=downgrade, force=force)
        migrate, _ = self.read(name)
        with intercepted(self.database, _no_rows), transaction_calls(self.database, _nothing_to_end):
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


class Run:
    """The chains of one run: a Router per chain and the order of their migrations."""

    def __init__(
        self,
        store: MemoryStore,
        chains: list[Chain],
        names: dict[str, list[str]],
        on_applied: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.chains = chains
        self.names = names
        self.on_applied = on_applied  # told each migration's label once its upgrade is committed
        self.routers = {chain.label: _Router(store, chain, names[chain.label]) for chain in chains}
        done = self.done()
        for chain in chains:
            applied = [step.name for step in done if step.chain == chain.label]
            chain.refuse_unknown(applied, names[chain.label])
            chain.refuse_copies(applied, names[chain.label])
        self.order = Order(names, done)

    def fresh(self) -> Run:
        """The same chains with new Routers: after a rollback, no history table is assumed to exist."""
        return Run(self.store, self.chains, self.names)

    @property
    def database(self) -> peewee.Database:
        return self.store.database

    @property
    def dialect(self) -> Dialect:
        return self.store.dialect

    def tables(self) -> list[str]:
        """The tables of the database; none in a SQLite file not there yet (which is not created)."""
        return self.dialect.tables(self.database) if self.store.exists() else []

    def done(self) -> list[Step]:
        """The applied migrations, chain by chain (memoric's, then the application's), each oldest first."""
        return [Step(label, name) for label, router in self.routers.items() for name in router.done]

    def history(self, chain: str) -> type[peewee.Model]:
        """The history table of `chain`, created on first use."""
        return self.routers[chain].model

    def migrator(self, steps: list[Step]) -> Migrator:
        """A Migrator whose ORM snapshot is the schema `steps` build (nothing executed)."""
        migrator = _Migrator(self.database, self.dialect, self.store.models())
        for step in steps:
            self.replay(migrator, step)
        return migrator

    def replay(self, migrator: Migrator, step: Step) -> None:
        """Replay `step` into `migrator.orm` (nothing executed); MigrationError if it cannot."""
        try:
            self.routers[step.chain].run_one(step.name, migrator, fake=True)
        except Exception as exc:
            raise MigrationError(f"cannot replay migration {step.label}: {first_line(exc)}") from exc

    def apply(self, plan: list[Step], *, downgrade: bool = False) -> list[str]:
        """Run `plan` one by one, each in its own transaction, the dialect's own indexes repaired
        after each (and once when there is nothing to run); the labels run.

        MigrationError names a failing migration. Inside an outer transaction (a downgrade, a
        preview) a failure undoes the whole run.
        """
        if not plan:  # nothing to run: still bring the dialect's own indexes up to date
            self.dialect.repair_extra_indexes(self.database)
            return []
        migrator = self.migrator(self.done())
        finished = []
        for step in plan:
            try:
                self.routers[step.chain].run_one(step.name, migrator, fake=False, downgrade=downgrade)
                self.dialect.repair_extra_indexes(self.database)
            except Exception as exc:
                raise MigrationError(_failure(step.label, downgrade, finished, exc)) from exc
            finished.append(step.label)
            if self.on_applied is not None and not downgrade and not self.database.in_transaction():
                self.on_applied(step.label)
        return finished


class Runner:
    """The chains of one store, run under the migrations lock (one run at a time across both)."""

    def __init__(
        self,
        store: MemoryStore,
        chains: list[Chain],
        lock_timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
        on_applied: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.chains = chains
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self.on_applied = on_applied

    @property
    def database(self) -> peewee.Database:
        return self.store.database

    def names(self) -> dict[str, list[str]]:
        """{chain label: its migrations in order}; MigrationError when a directory is unusable."""
        return {chain.label: chain.names() for chain in self.chains}

    def run(self, names: dict[str, list[str]] | None = None) -> Run:
        """The chains as they are now (or holding `names`), outside the lock: reading, replaying."""
        return Run(self.store, self.chains, names if names is not None else self.names())

    @contextlib.contextmanager
    def session(self) -> Iterator[Run]:
        """A Run under the migrations lock, with foreign keys unenforced (SQLite)."""
        names = self.names()
        if self.database.in_transaction():
            raise MigrationError("migrations cannot run inside an open transaction: commit or roll back")
        self.store.dialect.refuse_a_temporary_schema(self.database)
        lock = self.store.lock(LOCK_NAME, timeout=self.lock_timeout, on_wait=self.on_wait)
        try:
            with lock, self.store.dialect.foreign_keys_off(self.database):
                yield Run(self.store, self.chains, names, self.on_applied)
        finally:
            self.store.postings_ready = False  # a migration may have added or dropped them
            self.store.dialect.schema_changed(self.database)  # or distributed the tables (Citus)


def _failure(label: str, downgrade: bool, finished: list[str], exc: BaseException) -> str:
    done = f" [completed before it: {', '.join(finished)}]" if finished else ""
    if isinstance(exc, TransactionEnded):
        return (
            f"migration {label} ended the transaction memoric runs it in (a COMMIT or ROLLBACK of its "
            "own), so memoric could neither undo it nor record it: what it wrote up to then was "
            "committed (or, by a ROLLBACK, undone), what it wrote after may be kept too, and it is not "
            f"recorded as applied. Check the database by hand and take that statement out of it{done}"
        )
    if commit_in_doubt(exc):
        return (
            f"the connection was lost during the COMMIT of migration {label}, so whether it was "
            f"applied is not known: see `memoric migrate current` ({first_line(exc)}){done}"
        )
    if downgrade:
        return (
            f"rollback of migration {label} failed; the whole downgrade was undone (schema and history "
            f"unchanged): {first_line(exc)}"
        )
    return f"migration {label} failed and was undone (schema and history unchanged): {first_line(exc)}{done}"
