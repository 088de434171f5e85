"""`Migrations`: the versioned schema of one store, as the library and the CLI use it.

memoric's chain, and optionally an application's own chain (`app_dir`: a directory in the
application's repository, recorded in its own history table). Upgrade, downgrade, stamp and
preview under one migrations lock (so concurrent runs apply each migration once); read the state
without writing anything; build or check the schema for the facade; write new migration files,
only ever into the application's chain.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import peewee

from memoric import arguments, validation
from memoric.db.masking import mask_url
from memoric.db.store import MemoryStore
from memoric.errors import DataLossRefused, MigrationError
from memoric.migrate import authoring, guards
from memoric.migrate.chains import (
    APP_HISTORY_TABLE,
    Chain,
    app_chain,
    app_migrations_recorded,
    memoric_chain,
    refuse_installed,
)
from memoric.migrate.preview import rolled_back_statements
from memoric.migrate.runner import Run, Runner, translate_errors
from memoric.migrate.targets import APP, MEMORIC, NO_APP_CHAIN, Step, labels

NOT_CREATED = "nothing was created; build it with `memoric migrate upgrade` (or check the URL)"


BUILD_LEFT = "the build stopped there: run `memoric migrate upgrade` once the cause is fixed"


class Migrations:
    """The migration chains of one store: upgrade, downgrade, inspect, stamp, preview, create.

    `migrate_dir` replaces memoric's shipped chain (tests, a fork); `app_dir` is the application's
    chain, applied after memoric's and rolled back before it. Migrations are named by their file
    name, the application's as `app:NAME`.
    """

    def __init__(
        self,
        store: MemoryStore,
        *,
        migrate_dir: str | Path | None = None,
        app_dir: str | Path | None = None,
        lock_timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
        on_applied: Callable[[str], None] | None = None,
    ) -> None:
        self.store = arguments.instance("store", store, MemoryStore)
        self.memoric_chain = memoric_chain(arguments.directory("migrate_dir", migrate_dir))
        self.app_dir = arguments.directory("app_dir", app_dir)
        self.lock_timeout = lock_timeout
        self.on_wait = arguments.function("on_wait", on_wait, "called while waiting for the lock", 0)
        self.on_applied = arguments.function(
            "on_applied", on_applied, "called with each migration an upgrade has committed", 1
        )

    @property
    def database(self) -> peewee.Database:
        return self.store.database

    @property
    def chains(self) -> list[Chain]:
        """memoric's chain, then the application's when one is configured."""
        if self.app_dir is None:
            return [self.memoric_chain]
        return [self.memoric_chain, app_chain(self.app_dir, self.memoric_chain)]

    @property
    def _runner(self) -> Runner:
        return Runner(self.store, self.chains, self.lock_timeout, self.on_wait, self.on_applied)

    # --- reading the state (no lock, nothing written) ---

    def names(self) -> list[str]:
        """Every migration in order: memoric's (files `NNN_name.py`), then the application's (`app:NAME`)."""
        return [Step(chain.label, name).label for chain in self.chains for name in chain.names()]

    @translate_errors
    def current(self, chain: str = MEMORIC) -> str | None:
        """The latest applied migration of `chain` (`memoric` or `app`), None when none is.

        MigrationError when the history lists migrations the chain does not have.
        """
        found = self._chain(chain)
        applied = self._applied(found)
        found.refuse_unknown([step.name for step, _ in applied], found.names())
        return applied[-1][0].name if applied else None

    @translate_errors
    def history(self) -> list[dict]:
        """Every migration, chain by chain (then any applied one missing from its chain), applied or not.

        Each row: `chain`, `name` (the file name, without the `app:` prefix), `applied`, `applied_at`,
        and `known`: False for an applied one the chain has no file for (another application's
        history, or an edited chain).
        """
        rows = []
        for chain in self.chains:
            applied = {step.name: at for step, at in self._applied(chain)}
            names = chain.names()
            rows += [_row(chain, name, applied.get(name), name in applied) for name in names]
            rows += [
                _row(chain, name, at, True, known=False) for name, at in applied.items() if name not in names
            ]
        return rows

    @translate_errors
    def pending(self) -> list[str]:
        """The migrations not applied yet, in order (the application's as `app:NAME`)."""
        return [step.label for step in self._runner.run().order.pending()]

    def _applied(self, chain: Chain) -> list[tuple[Step, dt.datetime]]:
        """`chain.applied`, reading nothing from a SQLite file not there yet (which is not created)."""
        return chain.applied(self.database) if self.store.exists() else []

    def _nothing_to_create(self, planned: Callable[[Run], object]) -> bool:
        """For a SQLite file not there yet, or holding only another application's tables: whether
        `planned(run)` (a plan, false when empty; refused by raising) has nothing to do. Either
        way no file and no lock file is created; False for a database that may hold memoric's
        schema or a plan with work, which then runs under the lock."""
        store = self.store
        outside = not store.exists() or not store.dialect.may_hold_memoric(store.dsn)
        return outside and not planned(self._runner.run())

    def _chain(self, label: str) -> Chain:
        """The configured chain called `label`; MigrationError for another label."""
        for chain in self.chains:
            if chain.label == label:
                return chain
        if label == APP:
            raise MigrationError(f"the app chain is not in use: {NO_APP_CHAIN}")
        raise MigrationError(f"unknown chain {label!r}: use {MEMORIC!r} or {APP!r}")

    # --- running (under the lock) ---

    @translate_errors
    def upgrade(self, target: str = "head", *, out_of_order: bool = False) -> list[str]:
        """Apply the pending migrations up to `target` (default head); the migrations applied.

        memoric's chain comes first, then the application's. A table the plan creates that
        exists already with another shape is refused first; so is a migration behind an applied
        one, or sharing its number with another, unless `out_of_order` (databases that applied
        two branches' migrations in different orders).
        """
        validation.boolean("out_of_order", out_of_order)
        if self._nothing_to_create(lambda run: run.order.upgrade(target, out_of_order=out_of_order)):
            return []
        with self._runner.session() as run:
            plan = run.order.upgrade(target, out_of_order=out_of_order)
            guards.refuse_a_store_out_of_sight(run)
            guards.refuse_foreign_tables(run, run.order.done, plan)
            return run.apply(plan)

    @translate_errors
    def downgrade(self, target: str = "-1", *, confirm_data_loss: bool = False) -> list[str]:
        """Roll back applied migrations down to `target` (default -1); the migrations rolled back.

        The application's chain is rolled back before memoric's. The whole downgrade is one
        transaction. When it drops tables or columns that hold data it is undone and refused with
        DataLossRefused (what would go, how many rows or values) unless `confirm_data_loss`;
        dropping empty ones needs no confirmation.
        """
        validation.boolean("confirm_data_loss", confirm_data_loss)
        if self._nothing_to_create(lambda run: self._downgrade_plan(run, target)):
            return []
        with self._runner.session() as run:
            plan = self._downgrade_plan(run, target)
            if not plan:
                return []
            return self._roll_back(run, plan, target, confirm_data_loss)

    def _roll_back(self, run: Run, plan: list[Step], target: str, confirm_data_loss: bool) -> list[str]:
        """Roll back `plan` in one transaction (under the lock); DataLossRefused, with nothing
        changed, when it drops tables or columns that hold data, unless `confirm_data_loss`."""
        before = guards.shape(run)
        with self.database.atomic() as transaction:
            rolled_back = run.apply(plan, downgrade=True)
            dropped = [] if confirm_data_loss else guards.dropped(before, guards.shape(run))
            if not dropped:
                return rolled_back
            transaction.rollback()  # and a new transaction, which holds what it counts till the drop
            run.dialect.hold_for_drop(self.database, sorted({table for table, _ in dropped}))
            losses = guards.holding_data(run, dropped)
            if losses:
                raise DataLossRefused(target, losses)
            return run.fresh().apply(plan, downgrade=True)

    @translate_errors
    def stamp(self, target: str) -> str | None:
        """Record the history as standing at `target` without running any migration; the new latest.

        Stamp adopts tables that exist: recording a migration whose table is missing, or exists in
        another shape (as for `upgrade`), is refused before anything is written.
        """
        if self._nothing_to_create(lambda run: any(self._stamp_plan(run, target))):
            return None
        with self._runner.session() as run:
            add, forget = self._stamp_plan(run, target)
            with self.database.atomic():
                for step in forget:
                    model = run.history(step.chain)
                    model.delete().where(model.name == step.name).execute()
                for step in add:
                    run.history(step.chain).create(name=step.name)
            done = run.done()
            return done[-1].label if done else None

    def _stamp_plan(self, run: Run, target: str) -> tuple[list[Step], list[Step]]:
        """The migrations `stamp(target)` records and forgets; refused as it would be."""
        add, forget = run.order.stamp(target)
        kept = [step for step in run.order.done if step not in forget]
        guards.refuse_foreign_tables(run, kept, add)
        guards.refuse_stamping_missing_tables(run, kept, add)
        return add, forget

    @translate_errors
    def sql(self, direction: str, target: str, *, out_of_order: bool = False) -> list[str]:
        """The exact SQL `upgrade`/`downgrade` to `target` would run; run and rolled back, nothing changed.

        Being a real run, it needs the live database, holds the migrations lock, and on PostgreSQL
        holds the table locks its DDL takes until the rollback. A SQLite file not there yet is
        previewed on an empty stand-in in a temporary directory, and not created.
        """
        if direction not in ("upgrade", "downgrade"):
            raise MigrationError(f"direction must be 'upgrade' or 'downgrade', got {direction!r}")
        validation.boolean("out_of_order", out_of_order)
        if self._nothing_to_create(lambda run: self._plan(run, direction, target, out_of_order)):
            return []
        with contextlib.ExitStack() as stack:
            store = self.store if self.store.exists() else stack.enter_context(self.store.stand_in())
            with Runner(store, self.chains, self.lock_timeout, self.on_wait).session() as run:
                plan = self._plan(run, direction, target, out_of_order)
                return rolled_back_statements(run, plan, downgrade=direction == "downgrade")

    def _plan(self, run: Run, direction: str, target: str, out_of_order: bool) -> list[Step]:
        """The migrations `upgrade` or `downgrade` to `target` would run; refused as they would be."""
        if direction == "downgrade":
            return self._downgrade_plan(run, target)
        plan = run.order.upgrade(target, out_of_order=out_of_order)
        guards.refuse_foreign_tables(run, run.order.done, plan)
        return plan

    def _downgrade_plan(self, run: Run, target: str) -> list[Step]:
        """The plan of `downgrade(target)`; refused while application migrations are applied unseen.

        Without the application's chain, memoric's would be rolled back under the application's
        migrations, which must go first.
        """
        plan = run.order.downgrade(target)
        recorded = app_migrations_recorded(self.database) if plan and APP not in run.routers else []
        if recorded:
            raise MigrationError(
                f"the application migrations {', '.join(recorded)} are applied ({APP_HISTORY_TABLE}) but "
                f"not in use here, and they must be rolled back before memoric's: {NO_APP_CHAIN}"
            )
        return plan

    @translate_errors
    def init_db(self) -> bool:
        """Create memoric's schema straight from the models, record it at head, then run the app's chain.

        Tables of the chains that exist without any history go through the chains instead, which
        check them (a table of another shape is refused) and bring them to head. False when there
        was nothing to do: the history at head and every table it records there.
        """
        with self._runner.session() as run:
            done, pending = run.order.done, run.order.in_line(run.order.pending())
            if not pending and not guards.missing_tables(run, [], done):
                return False
            guards.refuse_a_store_out_of_sight(run)
            if done and pending:
                raise MigrationError(
                    f"the database is at {done[-1].label}, behind head: run `memoric migrate upgrade` instead"
                )
            if not done and guards.existing_chain_tables(run, pending):
                guards.refuse_foreign_tables(run, done, pending)
                run.apply(pending)
                return True
            with self.database.atomic():
                self.store.create_schema()
                model = run.history(MEMORIC)
                for step in pending:
                    if step.chain == MEMORIC:
                        model.create(name=step.name)
            run.apply([step for step in pending if step.chain != MEMORIC])
            return True

    @translate_errors
    def ensure_schema(self, auto_migrate: bool = False, *, create: bool = True) -> None:
        """Build an empty database through the chains (refuse it unless `create`); refuse one
        behind head unless `auto_migrate`.

        Behind head on either chain counts; a history recording migrations whose tables are missing
        is refused, saying how to rebuild them. The decision is taken again under the migrations
        lock: processes starting together on an empty database all wait for the one building it,
        then find it at head.
        """
        validation.boolean("auto_migrate", auto_migrate)
        validation.boolean("create", create)
        run = self._runner.run()
        guards.refuse_recorded_missing_tables(run)
        if not run.order.pending():
            return
        self._refuse_empty(run, create)  # before the lock, whose SQLite file it would create
        with self._runner.session() as run:
            done, pending = run.order.done, run.order.in_line(run.order.pending())
            if not pending:
                return
            guards.refuse_recorded_missing_tables(run)
            guards.refuse_a_store_out_of_sight(run)
            guards.refuse_foreign_tables(run, done, pending)
            if self._refuse_empty(run, create):
                self._first_build(run, pending)
                return
            if auto_migrate:
                run.apply(pending)
                return
        raise MigrationError(
            f"the database schema is behind: {len(pending)} pending migration(s) ({labels(pending)}); "
            "run `memoric migrate upgrade` (in Python, `Memoric(auto_migrate=True)` upgrades on first use)"
        )

    def _first_build(self, run: Run, pending: list[Step]) -> None:
        """Apply the whole chain to an empty database, or nothing: a build stopped (a Ctrl-C, or a
        signal the CLI turns into one) or failing midway rolls back the migrations it applied, so
        that the same call builds the database next time, where one left behind head would be
        refused. Only a rollback that loses nothing runs, as for `downgrade` (a table a migration
        adopted with its rows, memories another process saved meanwhile); otherwise, or when the
        rollback fails too, the database stays where the build stopped, and the error says so."""
        try:
            run.apply(pending)
        except BaseException as exc:
            rolled_back = self._roll_back_build(run)
            if isinstance(exc, MigrationError):
                note = "as the database was new, the build was rolled back" if rolled_back else BUILD_LEFT
                raise MigrationError(f"{exc}; {note}") from exc
            raise

    def _roll_back_build(self, run: Run) -> bool:
        """Roll back what a first build applied, if that loses nothing; whether it was."""
        fresh = run.fresh()
        try:
            self._roll_back(fresh, list(reversed(fresh.done())), "base", confirm_data_loss=False)
        except Exception:
            return False
        return True

    def _refuse_empty(self, run: Run, create: bool) -> bool:
        """Whether the database is empty (no history, no chain table); MigrationError if so and
        not `create`."""
        empty = not (run.order.done or guards.existing_chain_tables(run, run.order.pending()))
        if empty and not create:
            guards.refuse_a_store_out_of_sight(run)  # the more telling reason, when it is the one
            raise MigrationError(f"{mask_url(self.store.dsn)} holds no memoric schema: {NOT_CREATED}")
        return empty

    # --- writing migration files ---

    def create(self, message: str, auto=False) -> Path:
        """Write the application's next migration `NNN_message.py`: the template, or a draft with `auto`.

        Only into the application's chain (`app_dir`, created if missing), never into memoric's
        or an installed package. A draft compares memoric's models (or the models `auto` lists)
        with the schema both chains build; tables those models do not name are left alone.
        A new file only: an existing one is never overwritten, a failed write leaves none.
        """
        if self.app_dir is None:
            raise MigrationError(
                f"`revision` writes only into the application's own chain, and {NO_APP_CHAIN}"
            )
        chain = self._chain(APP)
        refuse_installed(chain.directory)
        memoric_names = self.memoric_chain.names()

        def draft(names: list[str]) -> str:
            run = self._runner.run({MEMORIC: memoric_names, APP: names})
            snapshot = run.migrator(run.order.steps)
            return authoring.draft_source(message, snapshot, None if auto is True else list(auto))

        return authoring.write_migration(chain.directory, message, draft if auto else None)


def _row(chain: Chain, name: str, applied_at, applied: bool, *, known: bool = True) -> dict:
    return {"chain": chain.label, "name": name, "applied": applied, "applied_at": applied_at, "known": known}
