"""The `memoric` command: parse the command line, call one function of `memoric.commands`.

Errors are handled once, by the `memoric` group: a MemoricError is one line on stderr and exit 1,
Ctrl-C, SIGTERM or SIGHUP one line and exit 128 + the signal's number (the command cleans up
for each as for Ctrl-C: `commands.stopping`), a closed or failing stdout or stdin one line and
exit 1 (`commands.streams`), and every message is masked (passwords of the URLs given).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys

import click

from memoric import __version__
from memoric.commands import memories, migrate, transfer
from memoric.commands.options import (
    CLUSTER_KEY,
    COUNT,
    IDENTITY,
    QUERY,
    TARGET_SETTINGS,
    dir_option,
    file_name,
    json_option,
    lock_timeout_option,
    memoric_only_option,
    parse_metadata,
    sql_option,
    target_argument,
    user_option,
)
from memoric.commands.output import visible
from memoric.commands.session import Session
from memoric.commands.stopping import Interrupted, signal_number, stop_signals_raise_once, stopped_by
from memoric.commands.streams import RunningCommand, RunningGroup, always, require_stdout, standard_streams
from memoric.config import ENV_DATABASE_URL
from memoric.db.connection import SQLITE_WARNING
from memoric.db.masking import mask_password
from memoric.errors import MemoricError

ARGUMENTS = "memoric.arguments"
SIGNALLED_EXIT = 128  # plus the signal's number: the shell's status for a command a signal stopped


@contextlib.contextmanager
def masked_errors(arguments: tuple[str, ...]):
    """Mask the passwords of the command line and $MEMORIC_DATABASE_URL in any error from the
    block, and write what a terminal would obey in it as escapes.

    click's own usage errors quote mistyped arguments, which may be URLs.
    """
    try:
        yield
    except click.ClickException as exc:
        lines = mask_password(exc.message, *arguments, os.environ.get(ENV_DATABASE_URL)).split("\n")
        # a group run without a command shows its help as its message: lines, each made visible
        keep = isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ()))
        exc.message = "\n".join(map(visible, lines)) if keep else visible("\n".join(lines))
        raise


def one_line(text: str) -> str:
    """`text` on one line: its line breaks and the spaces around them as one space. Only ASCII
    whitespace: `str.split()` also took U+0085 or U+2028 in a quoted name for a space."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip(" ")


@contextlib.contextmanager
def one_line_errors():
    """A MemoricError becomes one line on stderr and exit 1; Ctrl-C (or SIGTERM, SIGHUP) one line
    and exit 128 + the signal's number (130 for Ctrl-C)."""
    try:
        yield
    except MemoricError as exc:
        message = one_line(str(exc)) or type(exc).__name__
        raise click.ClickException(message) from None
    except KeyboardInterrupt as exc:
        said = f": {exc}" if isinstance(exc, Interrupted) else ""
        click.echo(f"{stopped_by(exc)}{said}.", err=True)
        sys.exit(SIGNALLED_EXIT + signal_number(exc))


class MemoricGroup(click.Group):
    """The `memoric` group: whatever fails, from parsing to the last command, is one masked line."""

    command_class, group_class = RunningCommand, RunningGroup

    def main(self, *args, **kwargs):
        """The whole run, --help and --version included, on checked standard streams (`streams`)."""
        with standard_streams():
            return super().main(*args, **kwargs)

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        arguments = tuple(args)
        with masked_errors(arguments):
            require_stdout()
            ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta[ARGUMENTS] = arguments
        return ctx

    def invoke(self, ctx: click.Context):
        with masked_errors(ctx.meta.get(ARGUMENTS, ())), one_line_errors(), stop_signals_raise_once():
            return super().invoke(ctx)


pass_session = click.make_pass_decorator(Session)


@click.group(cls=MemoricGroup)
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
    ctx.obj = Session(dsn, config_path, app_dir)
    logging.getLogger("memoric").addFilter(not_the_sqlite_warning)


def not_the_sqlite_warning(record: logging.LogRecord) -> bool:
    """Drop the library's SQLite warning: the CLI shows it itself, only where it matters."""
    return record.msg is not SQLITE_WARNING


# --- schema: init-db and migrate ------------------------------------------------------------


@main.command("init-db")
@click.option(
    "--migrate", "through_chain", is_flag=True, help="Build it through the migration chain instead."
)
@lock_timeout_option
@pass_session
def init_db(session: Session, through_chain: bool, lock_timeout: float | None) -> None:
    """Create the schema from the models and record it at the latest migration."""
    migrate.init_db(session, through_chain=through_chain, lock_timeout=lock_timeout)


@main.group("migrate")
def migrate_group() -> None:
    """Upgrade, roll back and inspect the versioned schema (also: db-migrate).

    TARGET is head, base, a migration name or its number (001), +N or -N, optionally prefixed
    with the chain it counts in: memoric:TARGET or app:TARGET (the application's chain, see
    --app-dir). memoric's chain comes first, the application's after it.
    """


main.add_command(migrate_group, name="db-migrate")


@migrate_group.command("upgrade", context_settings=TARGET_SETTINGS, reads_only=lambda p: p["show_sql"])
@click.argument("target", default="head", callback=target_argument)
@sql_option
@lock_timeout_option
@dir_option
@click.option(
    "--out-of-order",
    is_flag=True,
    help="Also apply migrations behind an applied one or sharing a number (in the order of their names).",
)
@pass_session
def migrate_upgrade(
    session: Session, target: str, show_sql: bool, lock_timeout, migrate_dir, out_of_order: bool
) -> None:
    """Apply the pending migrations up to TARGET (default: head)."""
    migrate.upgrade(
        session,
        target,
        show_sql=show_sql,
        lock_timeout=lock_timeout,
        migrate_dir=migrate_dir,
        out_of_order=out_of_order,
    )


@migrate_group.command("downgrade", context_settings=TARGET_SETTINGS, reads_only=lambda p: p["show_sql"])
@click.argument("target", default="-1", callback=target_argument)
@click.option(
    "--yes", "-y", "confirmed", is_flag=True, help="Roll back even if it drops tables or columns with data."
)
@sql_option
@lock_timeout_option
@dir_option
@pass_session
def migrate_downgrade(
    session: Session, target: str, confirmed: bool, show_sql: bool, lock_timeout, migrate_dir
) -> None:
    """Roll back applied migrations down to TARGET (default: -1, the latest one).

    A rollback that would drop tables or columns holding data asks first on a terminal and
    is refused elsewhere, unless --yes.
    """
    migrate.downgrade(
        session,
        target,
        confirmed=confirmed,
        show_sql=show_sql,
        lock_timeout=lock_timeout,
        migrate_dir=migrate_dir,
    )


@migrate_group.command("current", reads_only=always)
@dir_option
@pass_session
def migrate_current(session: Session, migrate_dir) -> None:
    """Print the latest applied migration (`base` when none is), and `(head)` when it is the last.

    With the application's chain in use, one line per chain.
    """
    migrate.current(session, migrate_dir=migrate_dir)


@migrate_group.command("history", reads_only=always)
@dir_option
@pass_session
def migrate_history(session: Session, migrate_dir) -> None:
    """List every migration, chain by chain: applied (with when), pending, or unknown (not in the chain)."""
    migrate.history(session, migrate_dir=migrate_dir)


@migrate_group.command("pending", reads_only=always)
@dir_option
@pass_session
def migrate_pending(session: Session, migrate_dir) -> None:
    """List the migrations not applied yet, memoric's first."""
    migrate.pending(session, migrate_dir=migrate_dir)


@migrate_group.command("stamp", context_settings=TARGET_SETTINGS)
@click.argument("target", callback=target_argument)
@lock_timeout_option
@dir_option
@pass_session
def migrate_stamp(session: Session, target: str, lock_timeout, migrate_dir) -> None:
    """Record the database as being at TARGET without running any migration."""
    migrate.stamp(session, target, lock_timeout=lock_timeout, migrate_dir=migrate_dir)


@migrate_group.command("revision")
@click.option("-m", "--message", required=True, help="What the migration does (becomes its file name).")
@click.option("--auto", "from_models", is_flag=True, help="Draft the changes from the models (review it!).")
@pass_session
def migrate_revision(session: Session, message: str, from_models: bool) -> None:
    """Write the application's next migration file NNN_message.py, with migrate() and rollback().

    Only into the application's own chain (--app-dir, $MEMORIC_APP_MIGRATIONS or migrations.app_dir
    of the config), never into memoric's chain or an installed package.
    """
    migrate.revision(session, message, from_models=from_models)


# --- the memory engine: demo, stats, run-policies, clusters, recall ---------------------------


@main.command("stats", reads_only=always)
@user_option
@json_option
@pass_session
def stats_command(session: Session, user_id: str | None, as_json: bool) -> None:
    """Memories per tier, summarized, users, threads, clusters, schema version."""
    memories.stats(session, user_id, as_json=as_json)


@main.command("run-policies", reads_only=lambda p: p["dry_run"])
@user_option
@click.option("--dry-run", is_flag=True, help="Count what would change; write nothing.")
@json_option
@pass_session
def run_policies_command(session: Session, user_id: str | None, dry_run: bool, as_json: bool) -> None:
    """Tier migration, trimming and thread summaries, as configured."""
    memories.run_policies(session, user_id, dry_run=dry_run, as_json=as_json)


@main.command("clusters", reads_only=lambda p: not p["rebuild"])
@user_option
@click.option("--rebuild", is_flag=True, help="Rebuild the clusters first.")
@click.option("--topic", callback=CLUSTER_KEY, help="Only clusters of this topic.")
@click.option("--category", callback=CLUSTER_KEY, help="Only clusters of this category.")
@click.option("--limit", type=COUNT, default=100, show_default=True, help="At most so many.")
@json_option
@pass_session
def clusters_command(session: Session, user_id, rebuild, topic, category, limit, as_json) -> None:
    """List topic clusters (largest first), optionally rebuilding them first."""
    memories.clusters(
        session, user_id, rebuild=rebuild, topic=topic, category=category, limit=limit, as_json=as_json
    )


@main.command("recall", reads_only=always)
@click.option("--user", "user_id", required=True, callback=IDENTITY, metavar="ID", help="Whose memories.")
@click.option(
    "--thread", "thread_id", callback=IDENTITY, metavar="T", help="The thread asked about (scope and bonus)."
)
@click.option("--scope", type=click.Choice(["thread", "topic", "user"]), default="thread", show_default=True)
@click.option("--metadata", callback=parse_metadata, metavar="JSON", help='Filter, e.g. {"topic": "x"}.')
@click.option(
    "--namespace", callback=IDENTITY, metavar="NS", help="Namespace (default: memories saved without one)."
)
@click.option("--top-k", type=COUNT, default=10, show_default=True)
@click.option("--include-summarized", is_flag=True, help="Also return memories already summarized.")
@click.option(
    "--query",
    callback=QUERY,
    metavar="TEXT",
    help="Only memories sharing a word with TEXT, ranked by relevance (BM25).",
)
@json_option
@pass_session
def recall_command(session: Session, user_id: str, as_json: bool, **query) -> None:
    """The best memories for an agent to recall now, by the documented score."""
    memories.recall(session, user_id, as_json=as_json, **query)


@main.command("demo")
@json_option
@pass_session
def demo_command(session: Session, as_json: bool) -> None:
    """An end-to-end tour on the resolved database (built or migrated as needed)."""
    memories.demo(session, as_json=as_json)


# --- moving data: export, import, copy --------------------------------------------------------


@main.command("export", reads_only=always)
@user_option
@memoric_only_option
@click.argument("file", default="-", metavar="[FILE|-]", callback=file_name)
@pass_session
def export_command(session: Session, user_id: str | None, memoric_only: bool, file: str) -> None:
    """Write memories and clusters as JSON Lines (to stdout by default).

    The first line is a header with the format version and the schema version.
    """
    transfer.export(session, file, user_id=user_id, memoric_only=memoric_only)


@main.command("import")
@click.argument("file", metavar="FILE|-", callback=file_name)
@click.option(
    "--new-ids",
    is_flag=True,
    help="Give every memory and cluster a new id (to merge exports of different databases).",
)
@click.option("--no-clusters", is_flag=True, help="Leave the file's clusters out (then: clusters --rebuild).")
@click.option("--keep-existing", is_flag=True, help="Keep a memory already there as it is (no clusters).")
@pass_session
def import_command(
    session: Session, file: str, new_ids: bool, no_clusters: bool, keep_existing: bool
) -> None:
    """Load an export (FILE, or - for stdin): checked whole first, then written in batches.

    Ids, timestamps and metadata types are kept; memories already there (same id, same data) are
    skipped, so importing the same file twice changes nothing; an id taken by other data is
    refused before anything is written. Agents may keep saving meanwhile: their new memories get
    ids above the file's. With --new-ids every row gets a fresh id instead (each run adds them).
    """
    transfer.import_(session, file, new_ids=new_ids, clusters=not no_clusters, keep_existing=keep_existing)


@main.command("copy")
@click.option("--from", "source_dsn", required=True, metavar="DSN", help="The database to copy.")
@click.option(
    "--to",
    "target_dsn",
    required=True,
    metavar="DSN",
    help="Target (an empty one is built through the chain).",
)
@memoric_only_option
@pass_session
def copy_command(session: Session, source_dsn: str, target_dsn: str, memoric_only: bool) -> None:
    """Copy memoric's tables of a database (SQLite to PostgreSQL and back); ids and timestamps kept."""
    transfer.copy(session, source_dsn, target_dsn, memoric_only=memoric_only)
