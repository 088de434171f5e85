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

from memoric.db.dialects import Dialect
from memoric.db.driver_errors import commit_in_doubt, driver_errors, failure_reason, first_line
from memoric.db.store import MemoryStore
from memoric.errors import MigrationError
from memoric.migrate.chains import Chain, history_index, history_model
from memoric.migrate.migrator import CheckedMigrator, exits_refused, no_rows, nothing_to_end
from memoric.migrate.targets import MEMORIC, Order, Step
from memoric.migrate.transactions import TransactionEnded, intercepted, transaction_calls, transaction_kept

log = logging.getLogger("memoric.migrations")
log.addHandler(logging.NullHandler())

LOCK_NAME = "migrations"


class _Router(Router):
    """peewee-migrate's Router over one chain, with its history table and a replay safe for other threads."""

    def __init__(self, store: MemoryStore, chain: Chain, names: list[str]) -> None:
        super().__init__(
            store.database,
            migrate_dir=chain.directory,
            migrate_table=chain.table,
            logger=log,
            migrator_class=CheckedMigrator,
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
            memorics = self.chain.label == MEMORIC  # memoric's own migrations are tested: not checked
            migrator.unfillable_before = None if memorics else set(migrator.unfillable())
            migrator.triggers_before = self.store.dialect.table_triggers(self.database)
            migrator.id_tops_before = migrator.id_tops()
            migrator.counted_before = None if memorics else migrator.counted_tables(migrator.id_tops_before)
            migrator.schemas_before = migrator.schemas_named()
            migrator.sent = []
            return super().run_one(name, migrator, fake=False, downgrade=downgrade, force=force)
        migrate, _ = self.read(name)
        with intercepted(self.database, no_rows), transaction_calls(self.database, nothing_to_end):
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
        migrator = CheckedMigrator(self.database, self.dialect, self.store.models())
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
            # and left its session changed: a setting (DateStyle, extra_float_digits), a temporary
            # table or trigger; memoric's next call opens a session of its own again
            self.database.end_session()


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
