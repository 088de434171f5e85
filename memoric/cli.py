"""The `memoric` command: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from memoric import __version__, demo, transfer, validation
from memoric.config import ENV_DATABASE_URL, load_config, resolve_app_dir, resolve_dsn, tier_names
from memoric.core import Memoric
from memoric.db.connection import SQLITE_WARNING, sqlite_warning_wanted
from memoric.db.store import MemoryStore
from memoric.db.urls import mask_password, mask_url
from memoric.errors import DataLossRefused, MemoricError, MigrationError, describe_losses
from memoric.migrate import MEMORIC, Migrations

ARGUMENTS = "memoric.arguments"


@contextlib.contextmanager
def masked_errors(arguments: tuple[str, ...]):
    """Mask the passwords of the command line and $MEMORIC_DATABASE_URL in any error from the block.

    click's own usage errors quote mistyped arguments, which may be URLs.
    """
    try:
        yield
    except click.ClickException as exc:
        exc.message = mask_password(exc.message, *arguments, os.environ.get(ENV_DATABASE_URL))
        raise


class MaskingGroup(click.Group):
    """The `memoric` group: whatever error it prints, from parsing to the last command, is masked."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        arguments = tuple(args)
        with masked_errors(arguments):
            ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta[ARGUMENTS] = arguments
        return ctx

    def invoke(self, ctx: click.Context):
        with masked_errors(ctx.meta.get(ARGUMENTS, ())):
            return super().invoke(ctx)


@click.group(cls=MaskingGroup)
@click.version_option(__version__, prog_name="memoric")
@click.option(
    "--dsn", metavar="URL", help="Database URL (default: $MEMORIC_DATABASE_URL, the config, SQLite)."
)
@click.option("--config", "config_path", metavar="PATH", help="YAML configuration file.")
@click.option(
    "--app-dir",
    metavar="DIRECTORY",
    help="The application's own migration chain (default: $MEMORIC_APP_MIGRATIONS, the config).",
)
@click.pass_context
def main(ctx: click.Context, dsn: str | None, config_path: str | None, app_dir: str | None) -> None:
    """memoric: persistent memory for AI agents (SQLite by default, PostgreSQL in production)."""
    ctx.obj = {"dsn": dsn, "config": config_path, "app_dir": app_dir}
    logging.getLogger("memoric").addFilter(not_the_sqlite_warning)


def not_the_sqlite_warning(record: logging.LogRecord) -> bool:
    """Drop the library's SQLite warning: the CLI shows it itself, only where it matters."""
    return record.msg is not SQLITE_WARNING


def echo_sqlite_warning(ctx: click.Context, store: MemoryStore) -> None:
    """The SQLite warning on stderr (init-db, demo, stats), unless the config or environment silence it."""
    options = ctx.find_root().obj or {}
    configured = load_config(options.get("config"))["database"]["sqlite_warning"]
    if store.database_file is not None and sqlite_warning_wanted(configured):
        click.echo("Warning: " + SQLITE_WARNING % store.database_file, err=True)


# --- shared helpers -------------------------------------------------------------------------


def run_or_exit(call: Callable, *args, **kwargs):
    """Call the library; a MemoricError becomes one line on stderr (masked by `main`) and exit 1."""
    try:
        return call(*args, **kwargs)
    except MemoricError as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise click.ClickException(message) from None


def open_store(ctx: click.Context) -> MemoryStore:
    """The store the global options point at (--dsn > $MEMORIC_DATABASE_URL > --config > default)."""
    options = ctx.find_root().obj or {}

    def build() -> MemoryStore:
        config = load_config(options.get("config"))
        return MemoryStore(resolve_dsn(options.get("dsn"), config), tiers=tier_names(config))

    return run_or_exit(build)


def app_dir_of(ctx: click.Context) -> Path | None:
    """The application's migration chain (--app-dir > $MEMORIC_APP_MIGRATIONS > --config > none)."""
    options = ctx.find_root().obj or {}
    return run_or_exit(lambda: resolve_app_dir(options.get("app_dir"), load_config(options.get("config"))))


# --- schema: init-db and migrate ------------------------------------------------------------

CHAIN_WIDTH = len("memoric")

dir_option = click.option(
    "--dir",
    "migrate_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Migrations directory (default: the chain shipped with memoric).",
)


def finite_seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A number of seconds: `nan` and `inf` parse as floats but are no timeout."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value


lock_timeout_option = click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    callback=finite_seconds,
    metavar="SECONDS",
    help="Fail if another run holds the migration lock longer than this (default: wait).",
)
sql_option = click.option(
    "--sql",
    "show_sql",
    is_flag=True,
    help=(
        "Print the SQL instead of applying it: the migrations run in a transaction that is rolled back, "
        "so it needs the live database, holds the migration lock, and on PostgreSQL holds table locks "
        "until the rollback."
    ),
)


def open_migrations(ctx: click.Context, migrate_dir: Path | None = None, lock_timeout=None) -> Migrations:
    """The migration chains of the selected database; says so on stderr when it waits for the lock."""
    store = open_store(ctx)

    def waiting() -> None:
        click.echo(
            f"Waiting for the migration lock: another run is migrating {mask_url(store.dsn)}", err=True
        )

    return Migrations(
        store, migrate_dir=migrate_dir, app_dir=app_dir_of(ctx), lock_timeout=lock_timeout, on_wait=waiting
    )


def positions(migrations: Migrations, base: str = "base") -> dict[str, str]:
    """{chain: its latest applied migration (or `base`), with ` (head)` when none of it is pending}."""
    rows = run_or_exit(migrations.history)
    found = {}
    for chain in run_or_exit(lambda: [each.label for each in migrations.chains]):
        current = run_or_exit(migrations.current, chain) or base
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
    click.echo(where + "".join(f"; {chain} chain at {position}" for chain, position in found.items()))


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
    echo_sqlite_warning(ctx, migrations.store)
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

    TARGET is head, base, a migration name or its number (001), +N or -N, optionally prefixed
    with the chain it counts in: memoric:TARGET or app:TARGET (the application's chain, see
    --app-dir). memoric's chain comes first, the application's after it.
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
@click.option(
    "--yes", "-y", "confirmed", is_flag=True, help="Roll back even if it drops tables or columns with data."
)
@sql_option
@lock_timeout_option
@dir_option
@click.pass_context
def migrate_downgrade(
    ctx: click.Context, target: str, confirmed: bool, show_sql: bool, lock_timeout, migrate_dir
) -> None:
    """Roll back applied migrations down to TARGET (default: -1, the latest one).

    A rollback that would drop tables or columns holding data asks first on a terminal and
    is refused elsewhere, unless --yes.
    """
    migrations = open_migrations(ctx, migrate_dir, lock_timeout)
    if show_sql:
        echo_sql(run_or_exit(migrations.sql, "downgrade", target))
        return
    rolled_back = run_or_exit(downgrade_confirmed, migrations, target, confirmed)
    for name in rolled_back:
        click.echo(f"Rolled back {name}")
    if not rolled_back:
        click.echo("Nothing to roll back")
    echo_position(migrations)


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
        click.confirm(f"Downgrade {target} drops {lost}. Drop them?", default=False, abort=True, err=True)
    return migrations.downgrade(target, confirm_data_loss=True)


@migrate.command("current")
@dir_option
@click.pass_context
def migrate_current(ctx: click.Context, migrate_dir) -> None:
    """Print the latest applied migration (`base` when none is), and `(head)` when it is the last.

    With the application's chain in use, one line per chain.
    """
    migrations = open_migrations(ctx, migrate_dir)
    for chain, position in positions(migrations).items():
        click.echo(chain_column(migrations, chain) + position)


@migrate.command("history")
@dir_option
@click.pass_context
def migrate_history(ctx: click.Context, migrate_dir) -> None:
    """List every migration, chain by chain: applied (with when), pending, or unknown (not in the chain)."""
    migrations = open_migrations(ctx, migrate_dir)
    for row in run_or_exit(migrations.history):
        when = f"  {row['applied_at']:%Y-%m-%d %H:%M:%S} UTC" if row["applied_at"] else ""
        state = "unknown" if not row["known"] else "applied" if row["applied"] else "pending"
        click.echo(f"{chain_column(migrations, row['chain'])}{state}  {row['name']}{when}")


@migrate.command("pending")
@dir_option
@click.pass_context
def migrate_pending(ctx: click.Context, migrate_dir) -> None:
    """List the migrations not applied yet, memoric's first."""
    migrations = open_migrations(ctx, migrate_dir)
    pending = [row for row in run_or_exit(migrations.history) if not row["applied"]]
    for row in pending:
        click.echo(chain_column(migrations, row["chain"]) + row["name"])
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
@click.pass_context
def migrate_revision(ctx: click.Context, message: str, from_models: bool) -> None:
    """Write the application's next migration file NNN_message.py, with migrate() and rollback().

    Only into the application's own chain (--app-dir, $MEMORIC_APP_MIGRATIONS or migrations.app_dir
    of the config), never into memoric's chain or an installed package.
    """
    path = run_or_exit(open_migrations(ctx).create, message, auto=from_models)
    click.echo(f"Created {path}")
    if from_models:
        click.echo("It is a draft generated from the models: review and edit it before upgrading.")


# --- the memory engine: demo, stats, run-policies, clusters, recall ---------------------------

PROGRESS_MIN_ROWS = 1000
CONTENT_WIDTH = 60
# The type of every integer option: a count from 0 to the bound the library puts on every integer
# argument, so a value the library would refuse is a usage error here.
COUNT = click.IntRange(min=0, max=validation.MAX_INT)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
user_option = click.option("--user", "user_id", metavar="ID", help="Only this user (default: all users).")


def library_errors(command: Callable) -> Callable:
    """Run a command body with MemoricError turned into one stderr line and exit 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return run_or_exit(command, *args, **kwargs)

    return wrapper


def open_memoric(ctx: click.Context, *, auto_migrate: bool = False) -> Memoric:
    """The Memoric the global options point at (--dsn > $MEMORIC_DATABASE_URL > --config > default)."""
    options = ctx.find_root().obj or {}
    return Memoric(
        options.get("dsn"), options.get("config"), auto_migrate=auto_migrate, app_dir=options.get("app_dir")
    )


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_json_value))


def _json_value(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def echo_table(headers: list[str] | None, rows: list[list], *, right: tuple[int, ...] = ()) -> None:
    """Rows (under headers, if any) in aligned columns (the columns in `right` aligned right)."""
    cells = [[str(cell) for cell in row] for row in ([headers] if headers else []) + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        padded = [(str.rjust if i in right else str.ljust)(cell, widths[i]) for i, cell in enumerate(row)]
        click.echo("  ".join(padded).rstrip())


def shortened(text: str, width: int = CONTENT_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def where_it_lives(memoric: Memoric) -> str:
    """The database as a person would look for it: the SQLite file, or the masked URL."""
    dsn, path = memoric.store.dsn, memoric.store.database_file
    if path is not None:
        return mask_password(f"SQLite file {Path(path).resolve()}", dsn)
    return f"PostgreSQL {mask_url(dsn)}"


@contextlib.contextmanager
def progress(total: int, label: str):
    """A callback advancing a progress bar on stderr, shown only for many rows on a terminal."""
    if total < PROGRESS_MIN_ROWS or not sys.stdout.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def echo_tiers(stats: dict) -> None:
    total = stats["total"]
    rows = [[tier, n, f"{100 * n / total:.1f}%" if total else "-"] for tier, n in stats["by_tier"].items()]
    rows.append(["total", total, "100.0%" if total else "-"])
    echo_table(["tier", "memories", "share"], rows, right=(1, 2))


def echo_stats(stats: dict) -> None:
    echo_tiers(stats)
    click.echo()
    rows = [[key, stats[key]] for key in ("summarized", "users", "threads", "clusters")]
    rows += [["dialect", stats["dialect"]], ["schema version", stats["schema_version"] or "base"]]
    echo_table(None, rows, right=(1,))


def echo_policy_counts(result: dict, tiers: list[str]) -> None:
    rows = [
        [f"migrated {tier} -> {tiers[tiers.index(tier) + 1]}", n] for tier, n in result["migrated"].items()
    ]
    rows += [
        ["trimmed", result["trimmed"]],
        ["summarized (sources hidden)", result["summarized"]],
        ["summaries created", result["summaries_created"]],
    ]
    echo_table(["policy", "memories"], rows, right=(1,))


def echo_clusters(clusters: list[dict]) -> None:
    if not clusters:
        click.echo("No clusters (build them with `memoric clusters --rebuild`).")
        return
    keys = ("cluster_id", "user_id", "topic", "category", "memory_count")
    rows = [[*(c[key] for key in keys), when(c["last_built_at"])] for c in clusters]
    echo_table(["id", "user", "topic", "category", "size", "last built (UTC)"], rows, right=(0, 4))


def echo_memories(memories: list[dict], *, scored: bool = True) -> None:
    if not memories:
        click.echo("No memories found.")
        return
    score = ["score"] if scored else []
    rows = [
        [m["id"], m["thread_id"] or "-", m["tier"], *(m[f"_{k}"] for k in score), shortened(m["content"])]
        for m in memories
    ]
    echo_table(["id", "thread", "tier", *score, "content"], rows, right=(0, 3) if scored else (0,))


def parse_metadata(ctx, param, value: str | None) -> dict | None:
    """--metadata as a JSON object; anything else is bad input (one line on stderr, exit 1)."""
    if value is None:
        return None
    parsed = run_or_exit(validation.json_text, "--metadata", value)
    if not isinstance(parsed, dict):
        raise click.ClickException('--metadata must be a JSON object, e.g. {"topic": "travel"}')
    return parsed


@main.command("stats")
@user_option
@json_option
@click.pass_context
@library_errors
def stats_command(ctx: click.Context, user_id: str | None, as_json: bool) -> None:
    """Memories per tier, summarized, users, threads, clusters, schema version."""
    memoric = open_memoric(ctx)
    stats = memoric.stats(user_id)
    if as_json:
        echo_json(stats)
        return
    echo_sqlite_warning(ctx, memoric.store)
    scope = f"user {user_id}" if user_id else "all users"
    click.echo(f"{where_it_lives(memoric)} ({scope})")
    echo_stats(stats)


@main.command("run-policies")
@user_option
@click.option("--dry-run", is_flag=True, help="Count what would change; write nothing.")
@json_option
@click.pass_context
@library_errors
def run_policies_command(ctx: click.Context, user_id: str | None, dry_run: bool, as_json: bool) -> None:
    """Tier migration, trimming and thread summaries, as configured."""
    memoric = open_memoric(ctx)
    total = 0
    if not dry_run and sys.stdout.isatty():
        planned = memoric.run_policies(user_id=user_id, dry_run=True)
        total = sum(planned["migrated"].values()) + planned["trimmed"] + planned["summarized"]
    with progress(total, "Applying policies") as advance:
        result = memoric.run_policies(user_id=user_id, dry_run=dry_run, on_progress=advance)
    if as_json:
        echo_json({**result, "dry_run": dry_run})
        return
    click.echo("Dry run: nothing was written." if dry_run else "Policies applied.")
    echo_policy_counts(result, [tier["name"] for tier in memoric.config["tiers"]])


@main.command("clusters")
@user_option
@click.option("--rebuild", is_flag=True, help="Rebuild the clusters first.")
@click.option("--topic", help="Only clusters of this topic.")
@click.option("--category", help="Only clusters of this category.")
@click.option("--limit", type=COUNT, default=100, show_default=True, help="At most so many.")
@json_option
@click.pass_context
@library_errors
def clusters_command(ctx: click.Context, user_id, rebuild, topic, category, limit, as_json) -> None:
    """List topic clusters (largest first), optionally rebuilding them first."""
    memoric = open_memoric(ctx)
    rebuilt = None
    if rebuild:
        rows = memoric.stats(user_id)["total"] if sys.stdout.isatty() else 0
        with progress(rows, "Rebuilding clusters") as advance:
            rebuilt = memoric.rebuild_clusters(user_id, on_progress=advance)
    clusters = memoric.get_clusters(user_id, topic=topic, category=category, limit=limit)
    if as_json:
        echo_json({"rebuilt": rebuilt, "clusters": clusters})
        return
    if rebuilt is not None:
        click.echo(f"Rebuilt {rebuilt} cluster(s).")
    echo_clusters(clusters)


@main.command("recall")
@click.option("--user", "user_id", required=True, metavar="ID", help="Whose memories.")
@click.option("--thread", "thread_id", metavar="T", help="The thread asked about (scope and bonus).")
@click.option("--scope", type=click.Choice(["thread", "topic", "user"]), default="thread", show_default=True)
@click.option("--metadata", callback=parse_metadata, metavar="JSON", help='Filter, e.g. {"topic": "x"}.')
@click.option("--namespace", metavar="NS", help="Namespace (default: memories saved without one).")
@click.option("--top-k", type=COUNT, default=10, show_default=True)
@click.option("--include-summarized", is_flag=True, help="Also return memories already summarized.")
@json_option
@click.pass_context
@library_errors
def recall_command(
    ctx: click.Context, user_id, thread_id, scope, metadata, namespace, top_k, include_summarized, as_json
) -> None:
    """The best memories for an agent to recall now, by the documented score."""
    memoric = open_memoric(ctx)
    memories = memoric.retrieve(
        user_id,
        thread_id=thread_id,
        metadata_filter=metadata,
        scope=scope,
        namespace=namespace,
        top_k=top_k,
        include_summarized=include_summarized,
    )
    if as_json:
        echo_json(memories)
        return
    echo_memories(memories)


@main.command("demo")
@json_option
@click.pass_context
@library_errors
def demo_command(ctx: click.Context, as_json: bool) -> None:
    """An end-to-end tour on the resolved database (built or migrated as needed)."""
    memoric = open_memoric(ctx, auto_migrate=True)
    tour = demo.run(memoric)
    if as_json:
        echo_json({"database": where_it_lives(memoric), **tour})
        return
    echo_sqlite_warning(ctx, memoric.store)
    tiers = [tier["name"] for tier in memoric.config["tiers"]]
    click.echo(f"memoric demo on the {where_it_lives(memoric)}")
    click.echo(f"Saved {tour['saved']} memories for {' and '.join(demo.USERS)}.")
    heading('Metadata filter: demo-ada, {"topic": "travel", "tags": ["booking"]}')
    echo_memories(tour["filtered"], scored=False)
    for scope, memories in tour["recall"].items():
        heading(f"Recall for demo-ada in thread trip-porto, scope {scope}")
        echo_memories(memories)
    heading("Policies, dry run (nothing written)")
    echo_policy_counts(tour["policies_dry_run"], tiers)
    heading("Policies, real run")
    echo_policy_counts(tour["policies"], tiers)
    created = tour["policies"]["summaries_created"]
    click.echo(
        f"The summaries are memories too: {tour['saved']} saved + {created} written = "
        f"{tour['saved'] + created} demo memories."
    )
    heading(f"Recall in thread {demo.OLD_THREAD} after the run: the summary replaces its sources")
    echo_memories(tour["recall_after_policies"])
    heading(f"Clusters ({tour['clusters_built']} built)")
    echo_clusters(tour["clusters"])
    heading("Stats")
    echo_stats(tour["stats"])
    click.echo()
    click.echo(f"The database is the {where_it_lives(memoric)}.")


def heading(title: str) -> None:
    click.echo()
    click.echo(f"== {title}")


# --- moving data: export, import, copy --------------------------------------------------------


@contextlib.contextmanager
def export_target(path: str, database: str | None = None):
    """A text stream for the export at `path`; any write failure is one line, nothing left behind.

    A SQLite database, and the files of the SQLite `database` (the file itself, its journals and
    lock files), are refused: an export never replaces the data it was taken from.

    A regular file is written beside `path` and moved onto it only when the block succeeds (the
    old file stays otherwise). Anything else that exists there and is not a directory (a
    terminal, a pipe, a device) is written to directly. A directory is refused.
    """
    if not path:
        raise click.ClickException("the export needs a file name (or - for standard output)")
    target = os.path.realpath(path)  # through symlinks: the file they name is replaced, not them
    if os.path.isdir(target):
        raise click.ClickException(f"cannot write {path}: it is a directory")
    if is_sqlite_file(target) or (database is not None and is_file_of(target, database)):
        raise click.ClickException(f"cannot write {path}: it is a database file; refusing to overwrite it")
    try:
        if os.path.exists(target) and not os.path.isfile(target):
            with open(target, "w", encoding="utf-8") as out:
                yield out
            return
        with replaced_on_success(target) as out:
            yield out
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


SQLITE_HEADERS = (b"SQLite format 3\x00", bytes.fromhex("377f0682"), bytes.fromhex("377f0683"))


def is_file_of(path: str, database: str) -> bool:
    """Whether `path` (resolved) is the SQLite `database`, one of its journals or its lock files."""
    own = os.path.realpath(database)
    lock = path.startswith(own + ".") and path.endswith(".lock")
    return path == own or path.startswith(own + "-") or lock


def is_sqlite_file(path: str) -> bool:
    """Whether `path` is a SQLite database or its write-ahead log (an export must never replace one)."""
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError:
        return False
    return head.startswith(SQLITE_HEADERS)


@contextlib.contextmanager
def replaced_on_success(path: str):
    """A text file written beside `path` and moved onto it only when the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".memoric-export-", dir=directory)
    try:
        with open(handle, "w", encoding="utf-8") as out:
            yield out
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextlib.contextmanager
def readable_export(path: str):
    """The export at `path` as binary lines that can be read twice (`-`: stdin, spooled to a file)."""
    if path == "-":
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool)
            spool.seek(0)
            yield spool
        return
    with contextlib.ExitStack() as stack:
        try:
            stream = stack.enter_context(open(path, "rb"))
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
        yield stream


INTERRUPTED_EXIT = 130  # the shell's status for a command stopped by Ctrl-C


@contextlib.contextmanager
def resumable(total: int, label: str, *, taken_back: bool = False):
    """A progress callback counting the rows written; Ctrl-C says how far it got and how to go on.

    Rows go in whole batches, so an import or copy stopped between them resumes where it stopped
    when run again (rows already there are skipped); one with `taken_back` removed what it wrote.
    """
    written = 0
    with progress(total, label) as advance:

        def step(rows: int) -> None:
            nonlocal written
            written += rows
            if advance is not None:
                advance(rows)

        try:
            yield step
        except KeyboardInterrupt:
            if taken_back:
                said = "what it had written was removed; run the same command again to import the file"
            else:
                said = (
                    f"{written} rows were written in whole batches; run the same command again to "
                    "resume (rows already there are skipped)"
                )
            click.echo(f"Interrupted: {said}.", err=True)
            sys.exit(INTERRUPTED_EXIT)


def echo_counts(verb: str, counts: dict, where: str, *, err: bool = False) -> None:
    """One line: what moved where, and how many rows were already there."""
    skipped = counts.get("skipped", 0)
    already = f"; {skipped} already there, skipped" if skipped else ""
    line = f"{verb} {counts['memories']} memories and {counts['clusters']} clusters {where}{already}"
    click.echo(line, err=err)


@main.command("export")
@user_option
@click.argument("file", default="-", metavar="[FILE|-]")
@click.pass_context
@library_errors
def export_command(ctx: click.Context, user_id: str | None, file: str) -> None:
    """Write memories and clusters as JSON Lines (to stdout by default).

    The first line is a header with the format version and the schema version.
    """
    memoric = open_memoric(ctx)
    if file == "-":
        counts = export_to_stdout(memoric, user_id)
    else:
        own_files = memoric.store.database_file
        with export_target(file, own_files) as out:
            counts = transfer.export_memoric(memoric, out, user_id=user_id)
    echo_counts("Exported", counts, f"to {file}", err=file == "-")


def export_to_stdout(memoric: Memoric, user_id: str | None) -> dict:
    """The export on stdout; a failed write (a full disk, a closed pipe) is one line and exit 1."""
    stdout = sys.stdout
    try:
        counts = transfer.export_memoric(memoric, stdout, user_id=user_id)
        stdout.flush()
    except OSError as exc:
        raise click.ClickException(f"cannot write to standard output: {exc.strerror or exc}") from None
    return counts


@main.command("import")
@click.argument("file", metavar="FILE|-")
@click.option(
    "--new-ids",
    is_flag=True,
    help="Give every memory and cluster a new id (to merge exports of different databases).",
)
@click.pass_context
@library_errors
def import_command(ctx: click.Context, file: str, new_ids: bool) -> None:
    """Load an export (FILE, or - for stdin): checked whole first, then written in batches.

    Ids, timestamps and metadata types are kept; memories already there (same id, same data) are
    skipped, so importing the same file twice changes nothing; an id taken by other data is
    refused before anything is written. Agents may keep saving meanwhile: their new memories get
    ids above the file's. With --new-ids every row gets a fresh id instead (each run adds them).
    """
    memoric = open_memoric(ctx)
    with readable_export(file) as stream:
        plan = transfer.check_jsonl(memoric.store, stream, new_ids=new_ids)
        memoric.ensure_schema()
        with resumable(plan.records, "Importing", taken_back=new_ids) as advance:
            counts = transfer.import_checked(memoric.db, plan, progress=advance)
    echo_counts("Imported", counts, f"into {where_it_lives(memoric)}")


@main.command("copy")
@click.option("--from", "source_dsn", required=True, metavar="DSN", help="The database to copy.")
@click.option(
    "--to",
    "target_dsn",
    required=True,
    metavar="DSN",
    help="Target (an empty one is built through the chain).",
)
@click.pass_context
@library_errors
def copy_command(ctx: click.Context, source_dsn: str, target_dsn: str) -> None:
    """Copy a whole database (SQLite to PostgreSQL and back); ids and timestamps kept."""
    options = ctx.find_root().obj or {}
    source, target = transfer.open_copy(
        source_dsn, target_dsn, config_path=options.get("config"), app_dir=options.get("app_dir")
    )
    total = transfer.copy_size(source) if sys.stdout.isatty() else 0
    with resumable(total, "Copying") as advance:
        counts = transfer.copy_memoric(source, target, progress=advance)
    where = f"from {where_it_lives(source)} to {where_it_lives(target)}"
    echo_counts("Copied", counts, where)
