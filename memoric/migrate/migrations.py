"""`Migrations`: the versioned schema of one store, as the library and the CLI use it.

Upgrade, downgrade, stamp and preview under the migrations lock (so concurrent runs apply each
migration once); read the state without writing anything; build or check the schema for the
facade; write new migration files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import peewee

from memoric.db.store import MemoryStore
from memoric.errors import DataLossRefused, MigrationError
from memoric.migrate import authoring, guards
from memoric.migrate.chains import applied, default_migrate_dir, migration_names
from memoric.migrate.preview import rolled_back_statements
from memoric.migrate.runner import Runner, translate_errors
from memoric.migrate.targets import downgrade_plan, stamp_plan, upgrade_plan


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

    @property
    def _runner(self) -> Runner:
        return Runner(self.store, self.migrate_dir, self.lock_timeout, self.on_wait)

    # --- reading the state (no lock, nothing written) ---

    def names(self) -> list[str]:
        """The migrations of the chain, in order (files `NNN_name.py` of the migrations directory)."""
        return migration_names(self.migrate_dir)

    @translate_errors
    def current(self) -> str | None:
        """The latest applied migration, None when none is."""
        done = applied(self.database)
        return done[-1][0] if done else None

    @translate_errors
    def history(self) -> list[dict]:
        """Every migration of the chain (then any applied one missing from it), applied or not."""
        done: dict[str, dt.datetime] = dict(applied(self.database))
        rows = [{"name": n, "applied": n in done, "applied_at": done.get(n)} for n in self.names()]
        known = {row["name"] for row in rows}
        rows += [{"name": n, "applied": True, "applied_at": at} for n, at in done.items() if n not in known]
        return rows

    @translate_errors
    def pending(self) -> list[str]:
        """The migrations of the chain not applied yet, in order."""
        done = {name for name, _ in applied(self.database)}
        return [name for name in self.names() if name not in done]

    # --- running (under the lock) ---

    @translate_errors
    def upgrade(self, target: str = "head") -> list[str]:
        """Apply the pending migrations up to `target` (default head); the names applied.

        A table the plan creates that exists already with another shape is refused first.
        """
        runner = self._runner
        with runner.session() as router:
            done = router.done
            plan = upgrade_plan(target, router.names, done)
            guards.refuse_foreign_tables(runner, done, plan)
            return runner.apply(router, plan)

    @translate_errors
    def downgrade(self, target: str = "-1", *, confirm_data_loss: bool = False) -> list[str]:
        """Roll back applied migrations down to `target` (default -1); the names rolled back.

        The whole downgrade is one transaction. When it drops tables or columns that hold data
        it is undone and refused with DataLossRefused (what would go, how many rows or values)
        unless `confirm_data_loss`; dropping empty ones needs no confirmation.
        """
        runner = self._runner
        with runner.session() as router:
            plan = downgrade_plan(target, router.names, router.done)
            if not plan:
                return []
            before = guards.shape(runner)
            with self.database.atomic() as transaction:
                rolled_back = runner.apply(router, plan, downgrade=True)
                dropped = [] if confirm_data_loss else guards.dropped(before, guards.shape(runner))
                if not dropped:
                    return rolled_back
                transaction.rollback()
                losses = guards.holding_data(runner, dropped)
                if losses:
                    raise DataLossRefused(target, losses)
                return runner.apply(runner.router(router.names), plan, downgrade=True)

    @translate_errors
    def stamp(self, target: str) -> str | None:
        """Record the history as standing at `target` without running any migration; the new current.

        Recording a migration whose table exists in another shape is refused, as for `upgrade`.
        """
        runner = self._runner
        with runner.session() as router:
            done = router.done
            add, forget = stamp_plan(target, router.names, done)
            guards.refuse_foreign_tables(runner, done, add)
            model = router.model
            with self.database.atomic():
                if forget:
                    model.delete().where(model.name.in_(forget)).execute()
                for name in add:
                    model.create(name=name)
            done = router.done
            return done[-1] if done else None

    @translate_errors
    def sql(self, direction: str, target: str) -> list[str]:
        """The exact SQL `upgrade`/`downgrade` to `target` would run; run and rolled back, nothing changed.

        Being a real run, it needs the live database, holds the migrations lock, and on PostgreSQL
        holds the table locks its DDL takes until the rollback.
        """
        if direction not in ("upgrade", "downgrade"):
            raise MigrationError(f"direction must be 'upgrade' or 'downgrade', got {direction!r}")
        runner = self._runner
        with runner.session() as router:
            done = router.done
            if direction == "upgrade":
                plan = upgrade_plan(target, router.names, done)
                guards.refuse_foreign_tables(runner, done, plan)
            else:
                plan = downgrade_plan(target, router.names, done)
            return rolled_back_statements(runner, router, plan, downgrade=direction == "downgrade")

    @translate_errors
    def init_db(self) -> None:
        """Create the schema straight from the models and record it as being at head.

        Tables of the chain that exist without any history go through the chain instead, which
        checks them (a table of another shape is refused) and brings them to head.
        """
        runner = self._runner
        with runner.session() as router:
            names, done = router.names, router.done
            pending = [name for name in names if name not in done]
            if done and pending:
                raise MigrationError(
                    f"the database is at {done[-1]}, behind head: run `memoric migrate upgrade` instead"
                )
            if not done and guards.existing_chain_tables(runner, pending):
                guards.refuse_foreign_tables(runner, done, pending)
                runner.apply(router, pending)
                return
            with self.database.atomic():
                self.store.create_schema()
                model = router.model
                for name in pending:
                    model.create(name=name)

    @translate_errors
    def ensure_schema(self, auto_migrate: bool = False) -> None:
        """Build an empty database through the chain; refuse one behind head unless `auto_migrate`.

        The decision is taken again under the migrations lock: processes starting together on an
        empty database all wait for the one building it, then find it at head.
        """
        if not self.pending():
            return
        runner = self._runner
        with runner.session() as router:
            done = router.done
            pending = [name for name in router.names if name not in done]
            if not pending:
                return
            guards.refuse_foreign_tables(runner, done, pending)
            if auto_migrate or not (done or guards.existing_chain_tables(runner, pending)):
                runner.apply(router, pending)
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

        def draft(names: list[str]) -> str:
            replayed = self._runner.replayed_migrator(names)
            return authoring.draft_source(message, replayed, None if auto is True else list(auto))

        return authoring.write_migration(self.migrate_dir, message, draft if auto else None)
