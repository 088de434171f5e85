"""The schema's commands: init-db and migrate upgrade, downgrade, current, history, pending, stamp,
revision. One function each."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from memoric.commands.output import echo, echo_sql
from memoric.commands.session import Session
from memoric.commands.stopping import Interrupted, signal_number
from memoric.db.masking import mask_url
from memoric.errors import DataLossRefused, MigrationError, describe_losses
from memoric.migrate import MEMORIC, Migrations

CHAIN_WIDTH = len("memoric")


def open_migrations(
    session: Session,
    migrate_dir: Path | None = None,
    lock_timeout: float | None = None,
    applied: list[str] | None = None,
) -> Migrations:
    """The migration chains of the selected database; says so on stderr when it waits for the lock.
    `applied` gets the label of each migration an upgrade commits."""
    store = session.memoric.store

    def waiting() -> None:
        echo(f"Waiting for the migration lock: another run is migrating {mask_url(store.dsn)}", err=True)

    return Migrations(
        store,
        migrate_dir=migrate_dir,
        app_dir=session.app_dir,
        lock_timeout=lock_timeout,
        on_wait=waiting,
        on_applied=None if applied is None else applied.append,
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
    applied: list[str] = []
    migrations = open_migrations(session, lock_timeout=lock_timeout, applied=applied)
    session.echo_sqlite_warning()
    if through_chain:
        echo_run(
            migrations,
            upgrade_saying_how_far(migrations, applied, "head"),
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
    committed: list[str] = []
    migrations = open_migrations(session, migrate_dir, lock_timeout, applied=committed)
    if show_sql:
        echo_sql(migrations.sql("upgrade", target, out_of_order=out_of_order))
        return
    applied = upgrade_saying_how_far(migrations, committed, target, out_of_order=out_of_order)
    echo_run(migrations, applied, "Applied", "Nothing to apply")


def upgrade_saying_how_far(
    migrations: Migrations, applied: list[str], target: str, *, out_of_order: bool = False
) -> list[str]:
    """Upgrade; a stop (Ctrl-C, SIGTERM) says which migrations this run committed before it
    (`applied`, filled as each commits): those stay applied, and what it had begun of the next
    was undone."""
    try:
        return migrations.upgrade(target, out_of_order=out_of_order)
    except KeyboardInterrupt as stop:
        raise Interrupted(how_far(applied), signal_number(stop)) from None


def how_far(applied: list[str]) -> str:
    """What an upgrade stopped midway had done."""
    done = f"it applied {', '.join(applied)}, which stay applied" if applied else "it applied no migration"
    return (
        f"{done}; what it had begun of the next was undone; `memoric migrate upgrade` goes on from "
        "there (`memoric migrate current` shows where the database stands)"
    )


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
