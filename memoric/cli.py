"""The `memoric` command: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from memoric import __version__
from memoric.config import load_config, resolve_dsn, tier_names
from memoric.db.connection import mask_password
from memoric.db.store import MemoryStore
from memoric.errors import MemoricError
from memoric.migrations import Migrations


@click.group()
@click.version_option(__version__, prog_name="memoric")
@click.option(
    "--dsn", metavar="URL", help="Database URL (default: $MEMORIC_DATABASE_URL, the config, SQLite)."
)
@click.option("--config", "config_path", metavar="PATH", help="YAML configuration file.")
@click.pass_context
def main(ctx: click.Context, dsn: str | None, config_path: str | None) -> None:
    """memoric: persistent memory for AI agents (SQLite by default, PostgreSQL in production)."""
    ctx.obj = {"dsn": dsn, "config": config_path}


# --- shared helpers -------------------------------------------------------------------------


def run_or_exit(call: Callable, *args, **kwargs):
    """Call the library; a MemoricError becomes one line on stderr (password masked) and exit 1."""
    try:
        return call(*args, **kwargs)
    except MemoricError as exc:
        message = " ".join(mask_password(str(exc)).split()) or type(exc).__name__
        raise click.ClickException(message) from None


def open_store(ctx: click.Context) -> MemoryStore:
    """The store the global options point at (--dsn > $MEMORIC_DATABASE_URL > --config > default)."""
    options = ctx.find_root().obj or {}

    def build() -> MemoryStore:
        config = load_config(options.get("config"))
        return MemoryStore(resolve_dsn(options.get("dsn"), config), tiers=tier_names(config))

    return run_or_exit(build)


# --- schema: init-db and migrate ------------------------------------------------------------

dir_option = click.option(
    "--dir",
    "migrate_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Migrations directory (default: the chain shipped with memoric).",
)
lock_timeout_option = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Fail if another run holds the migration lock longer than this (default: wait).",
)
sql_option = click.option(
    "--sql", "show_sql", is_flag=True, help="Print the SQL it would run instead (nothing is changed)."
)


def open_migrations(ctx: click.Context, migrate_dir: Path | None = None, lock_timeout=None) -> Migrations:
    """The migration chain of the selected database; says so on stderr when it waits for the lock."""
    store = open_store(ctx)

    def waiting() -> None:
        click.echo(
            f"Waiting for the migration lock: another run is migrating {mask_password(store.dsn)}", err=True
        )

    return Migrations(store, migrate_dir=migrate_dir, lock_timeout=lock_timeout, on_wait=waiting)


def echo_position(migrations: Migrations) -> None:
    """Where the database stands now: the latest applied migration, and whether that is head."""
    current = run_or_exit(migrations.current) or "base (no migration applied)"
    head = "" if run_or_exit(migrations.pending) else " (head)"
    click.echo(f"{mask_password(migrations.store.dsn)} is at {current}{head}")


def echo_sql(statements: list[str]) -> None:
    """The statements of a run, each ending with `;`, on stdout."""
    for statement in statements:
        click.echo(statement.rstrip().rstrip(";") + ";")
    click.echo(f"-- {len(statements)} statement(s) shown; nothing was changed", err=True)


@main.command("init-db")
@click.option(
    "--migrate", "through_chain", is_flag=True, help="Build it through the migration chain instead."
)
@lock_timeout_option
@click.pass_context
def init_db(ctx: click.Context, through_chain: bool, lock_timeout: float | None) -> None:
    """Create the schema from the models and record it at the latest migration."""
    migrations = open_migrations(ctx, lock_timeout=lock_timeout)
    if through_chain:
        for name in run_or_exit(migrations.upgrade, "head"):
            click.echo(f"Applied {name}")
    else:
        run_or_exit(migrations.init_db)
        click.echo("Created the schema from the models")
    echo_position(migrations)


# Lets a relative TARGET such as -1 through as an argument rather than an unknown option.
TARGET_SETTINGS = {"ignore_unknown_options": True}


def target_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A misspelt option (`--sqll`) that reached TARGET is still a usage error."""
    if value.startswith("--"):
        raise click.BadParameter(f"no such option {value!r}")
    return value


@main.group("migrate")
def migrate() -> None:
    """Upgrade, roll back and inspect the versioned schema (also: db-migrate).

    TARGET is head, base, a migration name or its number (001), +N or -N.
    """


main.add_command(migrate, name="db-migrate")


@migrate.command("upgrade", context_settings=TARGET_SETTINGS)
@click.argument("target", default="head", callback=target_argument)
@sql_option
@lock_timeout_option
@dir_option
@click.pass_context
def migrate_upgrade(ctx: click.Context, target: str, show_sql: bool, lock_timeout, migrate_dir) -> None:
    """Apply the pending migrations up to TARGET (default: head)."""
    migrations = open_migrations(ctx, migrate_dir, lock_timeout)
    if show_sql:
        echo_sql(run_or_exit(migrations.sql, "upgrade", target))
        return
    applied = run_or_exit(migrations.upgrade, target)
    for name in applied:
        click.echo(f"Applied {name}")
    if not applied:
        click.echo("Nothing to apply")
    echo_position(migrations)


@migrate.command("downgrade", context_settings=TARGET_SETTINGS)
@click.argument("target", default="-1", callback=target_argument)
@sql_option
@lock_timeout_option
@dir_option
@click.pass_context
def migrate_downgrade(ctx: click.Context, target: str, show_sql: bool, lock_timeout, migrate_dir) -> None:
    """Roll back applied migrations down to TARGET (default: -1, the latest one)."""
    migrations = open_migrations(ctx, migrate_dir, lock_timeout)
    if show_sql:
        echo_sql(run_or_exit(migrations.sql, "downgrade", target))
        return
    rolled_back = run_or_exit(migrations.downgrade, target)
    for name in rolled_back:
        click.echo(f"Rolled back {name}")
    if not rolled_back:
        click.echo("Nothing to roll back")
    echo_position(migrations)


@migrate.command("current")
@dir_option
@click.pass_context
def migrate_current(ctx: click.Context, migrate_dir) -> None:
    """Print the latest applied migration (`base` when none is)."""
    click.echo(run_or_exit(open_migrations(ctx, migrate_dir).current) or "base")


@migrate.command("history")
@dir_option
@click.pass_context
def migrate_history(ctx: click.Context, migrate_dir) -> None:
    """List every migration of the chain: applied (with when) or pending."""
    for row in run_or_exit(open_migrations(ctx, migrate_dir).history):
        when = f"  {row['applied_at']:%Y-%m-%d %H:%M:%S} UTC" if row["applied_at"] else ""
        click.echo(f"{'applied' if row['applied'] else 'pending'}  {row['name']}{when}")


@migrate.command("pending")
@dir_option
@click.pass_context
def migrate_pending(ctx: click.Context, migrate_dir) -> None:
    """List the migrations not applied yet."""
    pending = run_or_exit(open_migrations(ctx, migrate_dir).pending)
    for name in pending:
        click.echo(name)
    if not pending:
        click.echo("No pending migrations: the database is at head", err=True)


@migrate.command("stamp", context_settings=TARGET_SETTINGS)
@click.argument("target", callback=target_argument)
@lock_timeout_option
@dir_option
@click.pass_context
def migrate_stamp(ctx: click.Context, target: str, lock_timeout, migrate_dir) -> None:
    """Record the database as being at TARGET without running any migration."""
    migrations = open_migrations(ctx, migrate_dir, lock_timeout)
    run_or_exit(migrations.stamp, target)
    echo_position(migrations)


@migrate.command("revision")
@click.option("-m", "--message", required=True, help="What the migration does (becomes its file name).")
@click.option("--auto", "from_models", is_flag=True, help="Draft the changes from the models (review it!).")
@dir_option
@click.pass_context
def migrate_revision(ctx: click.Context, message: str, from_models: bool, migrate_dir) -> None:
    """Write a new migration file NNN_message.py with migrate() and rollback()."""
    path = run_or_exit(open_migrations(ctx, migrate_dir).create, message, auto=from_models)
    click.echo(f"Created {path}")
    if from_models:
        click.echo("It is a draft generated from the models: review and edit it before upgrading.")
