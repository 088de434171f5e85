"""The schema's commands: init-db and migrate upgrade, downgrade, current, history, pending, stamp,
revision. One function each."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from memoric.commands.output import echo, echo_sql
from memoric.commands.session import Session
from memoric.commands.stopping import Interrupted, signal_number
from memoric.db.urls import mask_url
from memoric.errors import DataLossRefused, MemoricError, MigrationError, describe_losses
from memoric.migrate import MEMORIC, Migrations

CHAIN_WIDTH = len("memoric")


def open_migrations(
    session: Session, migrate_dir: Path | None = None, lock_timeout: float | None = None
) -> Migrations:
    """The migration chains of the selected database; says so on stderr when it waits for the lock."""
    store = session.memoric.store

    def waiting() -> None:
        echo(f"Waiting for the migration lock: another run is migrating {mask_url(store.dsn)}", err=True)

    return Migrations(
        store, migrate_dir=migrate_dir, app_dir=session.app_dir, lock_timeout=lock_timeout, on_wait=waiting
    )


def positions(migrations: Migrations, base: str = "base") -> dict[str, str]:
    """{chain: its latest applied migration (or `base`), with ` (head)` when none of it is pending}."""
    rows = migrations.history()
    found = {}
    for chain in [each.label for each in migrations.chains]:
        current = migrations.current(chain) or base
        at_head = all(row["applied"] for row in rows if row["chain"] == chain)
        found[chain] = f"{current} (head)" if at_head else current
    return found


def chain_column(migrations: Migrations, chain: str) -> str:
    """The chain a listed migration belongs to, as a first column (only when the app chain is in use)."""
    return f"{chain:<{CHAIN_WIDTH}}  " if migrations.app_dir is not None else ""


def echo_position(migrations: Migrations) -> None:
    """Where the database stands now on each chain: the latest applied migration, and whether that is head."""
    found = positions(migrations, "base (no migration applied)")
    where = f"{mask_url(migrations.store.dsn)} is at {found.pop(MEMORIC)}"
    echo(where + "".join(f"; {chain} chain at {position}" for chain, position in found.items()))


def echo_run(migrations: Migrations, names: list[str], verb: str, nothing: str) -> None:
    """`VERB NAME` for each migration a run applied or rolled back (`nothing` for none), then the position."""
    for name in names:
        echo(f"{verb} {name}")
    if not names:
        echo(nothing)
    echo_position(migrations)


def init_db(session: Session, *, through_chain: bool = False, lock_timeout: float | None = None) -> None:
    """Create the schema from the models (or through the chain) and record it at the latest migration."""
    session.create = True  # builds the database (and the default file's directory)
    migrations = open_migrations(session, lock_timeout=lock_timeout)
    session.echo_sqlite_warning()
    if through_chain:
        echo_run(
            migrations,
            upgrade_saying_how_far(migrations, "head"),
            "Applied",
            "Nothing to apply: the schema was already at head",
        )
        return
    if migrations.init_db():
        echo("Created the schema from the models")
    else:
        echo("Nothing to create: the schema was already at head")
    echo_position(migrations)


def upgrade(
    session: Session,
    target: str = "head",
    *,
    show_sql: bool = False,
    lock_timeout: float | None = None,
    migrate_dir: Path | None = None,
    out_of_order: bool = False,
) -> None:
    """Apply the pending migrations up to `target` (or print their SQL, changing nothing)."""
    session.create = True  # builds the database (and the default file's directory)
    migrations = open_migrations(session, migrate_dir, lock_timeout)
    if show_sql:
        echo_sql(migrations.sql("upgrade", target, out_of_order=out_of_order))
        return
    applied = upgrade_saying_how_far(migrations, target, out_of_order=out_of_order)
    echo_run(migrations, applied, "Applied", "Nothing to apply")


def upgrade_saying_how_far(migrations: Migrations, target: str, *, out_of_order: bool = False) -> list[str]:
    """Upgrade; a stop (Ctrl-C, SIGTERM) says which migrations the run applied before it: each
    commits on its own, so those stay applied and the one running was undone."""
    before = applied_labels(migrations)
    try:
        return migrations.upgrade(target, out_of_order=out_of_order)
    except KeyboardInterrupt as stop:
        raise Interrupted(how_far(migrations, before), signal_number(stop)) from None


def applied_labels(migrations: Migrations) -> list[str]:
    """The applied migrations of both chains, as targets name them (`app:` for the application's)."""
    return [
        row["name"] if row["chain"] == MEMORIC else f"{row['chain']}:{row['name']}"
        for row in migrations.history()
        if row["applied"]
    ]


def how_far(migrations: Migrations, before: list[str]) -> str:
    """What an upgrade stopped midway had applied, read back from the database's history."""
    try:
        now = applied_labels(migrations)
    except MemoricError:
        return "which migrations it applied is not known: see `memoric migrate current`"
    new = [label for label in now if label not in before]
    done = f"it applied {', '.join(new)}, which stay applied" if new else "it applied no migration"
    return f"{done}; the migration running was undone; `memoric migrate upgrade` goes on from there"


def downgrade(
    session: Session,
    target: str = "-1",
    *,
    confirmed: bool = False,
    show_sql: bool = False,
    lock_timeout: float | None = None,
    migrate_dir: Path | None = None,
) -> None:
    """Roll back applied migrations down to `target` (or print their SQL, changing nothing)."""
    migrations = open_migrations(session, migrate_dir, lock_timeout)
    if show_sql:
        echo_sql(migrations.sql("downgrade", target))
        return
    echo_run(
        migrations, downgrade_confirmed(migrations, target, confirmed), "Rolled back", "Nothing to roll back"
    )


def downgrade_confirmed(migrations: Migrations, target: str, confirmed: bool) -> list[str]:
    """Downgrade; when it would drop data, ask on a terminal, refuse (naming --yes) elsewhere."""
    try:
        return migrations.downgrade(target, confirm_data_loss=confirmed)
    except DataLossRefused as refused:
        lost = describe_losses(refused.losses)
        if not sys.stdin.isatty():
            raise MigrationError(
                f"downgrade {target} would drop data: {lost}; nothing was changed; pass --yes to drop it"
            ) from None
        if not asked_yes(f"Downgrade {target} drops {lost}. Drop them?"):
            raise MigrationError(f"downgrade {target} not confirmed: nothing was changed") from None
    return migrations.downgrade(target, confirm_data_loss=True)


def asked_yes(question: str) -> bool:
    """The answer to a yes/no question on the terminal (no by default, and at the end of input);
    Ctrl-C stops the command as anywhere else (click's own prompt calls it an abort)."""
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort as abort:
        if isinstance(abort.__context__, KeyboardInterrupt):
            raise abort.__context__ from None
        return False


def current(session: Session, *, migrate_dir: Path | None = None) -> None:
    """The latest applied migration of each chain (`base` when none is), `(head)` when it is the last."""
    migrations = open_migrations(session, migrate_dir)
    for chain, position in positions(migrations).items():
        echo(chain_column(migrations, chain) + position)


def history(session: Session, *, migrate_dir: Path | None = None) -> None:
    """Every migration, chain by chain: applied (with when), pending, or unknown (not in the chain)."""
    migrations = open_migrations(session, migrate_dir)
    for row in migrations.history():
        when = f"  {row['applied_at']:%Y-%m-%d %H:%M:%S} UTC" if row["applied_at"] else ""
        state = "unknown" if not row["known"] else "applied" if row["applied"] else "pending"
        echo(f"{chain_column(migrations, row['chain'])}{state}  {row['name']}{when}")


def pending(session: Session, *, migrate_dir: Path | None = None) -> None:
    """The migrations not applied yet, memoric's first."""
    migrations = open_migrations(session, migrate_dir)
    rows = [row for row in migrations.history() if not row["applied"]]
    for row in rows:
        echo(chain_column(migrations, row["chain"]) + row["name"])
    if not rows:
        echo("No pending migrations: the database is at head", err=True)


def stamp(
    session: Session, target: str, *, lock_timeout: float | None = None, migrate_dir: Path | None = None
) -> None:
    """Record the database as being at `target` without running any migration."""
    session.create = True  # builds the database (and the default file's directory)
    migrations = open_migrations(session, migrate_dir, lock_timeout)
    migrations.stamp(target)
    echo_position(migrations)


def revision(session: Session, message: str, *, from_models: bool = False) -> None:
    """Write the application's next migration file (a draft from the models with `from_models`)."""
    path = open_migrations(session).create(message, auto=from_models)
    echo(f"Created {path}")
    if from_models:
        echo("It is a draft generated from the models: review and edit it before upgrading.")
