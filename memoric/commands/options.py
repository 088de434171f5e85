"""Options and arguments shared by the `memoric` commands, checked as the library checks them.

A value the library would refuse is refused here, in one line naming the option (`--user`, not
the library's `user_id`), before any database is opened.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from memoric import arguments, json_input, validation


def checked_text(max_length: int):
    """A click callback: a text option (an identity, a cluster key) must be one the library
    takes, the error naming the option."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        option = param.opts[0]
        return None if value is None else validation.clean_text(option, value, max_length=max_length)

    return check


def file_name(ctx: click.Context, param: click.Parameter, value):
    """A file or directory name the system can take (no NUL, no lone surrogate); `-` and None pass."""
    if value is None or value == "-":
        return value
    problem = arguments.file_name_problem(value)
    if problem:
        named = param.opts[0] if isinstance(param, click.Option) else param.name.upper()
        raise validation.ValidationError(f"{named} {validation.shown(str(value))} is no file name: {problem}")
    return value


def directory_name(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """A directory's name (`file_name`), as a Path; not a file's."""
    if value is None:
        return None
    path, named = Path(file_name(ctx, param, value)), f"{param.opts[0]} {validation.shown(value)}"
    try:
        is_file = path.is_file()
    except OSError as exc:  # a name too long for the system, a loop of links
        raise validation.ValidationError(f"{named}: {exc.strerror}") from None
    if is_file:
        raise validation.ValidationError(f"{named} is a file, not a folder")
    return path


IDENTITY = checked_text(validation.MAX_ID_LENGTH)  # --user, --thread, --namespace
CLUSTER_KEY = checked_text(validation.MAX_CLUSTER_KEY_LENGTH)  # --topic, --category
QUERY = checked_text(validation.MAX_QUERY_LENGTH)  # recall --query


# The type of every integer option: a count from 0 to the bound the library puts on every integer
# argument, so a value the library would refuse is a usage error here.
COUNT = click.IntRange(min=0, max=validation.MAX_INT)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
user_option = click.option(
    "--user", "user_id", callback=IDENTITY, metavar="ID", help="Only this user (default: all users)."
)
memoric_only_option = click.option(
    "--memoric-only",
    is_flag=True,
    help="Leave out the application's own columns and tables (refused otherwise when they hold data).",
)
dir_option = click.option(
    "--dir",
    "migrate_dir",
    callback=directory_name,
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

# Lets a relative TARGET such as -1 through as an argument rather than an unknown option.
TARGET_SETTINGS = {"ignore_unknown_options": True}


def target_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A misspelt option (`--sqll`) that reached TARGET is still a usage error."""
    if value.startswith("--"):
        raise click.BadParameter(f"no such option {value!r}")
    return value


def parse_metadata(ctx, param, value: str | None) -> dict | None:
    """--metadata as a JSON object; anything else is bad input (one line on stderr, exit 1)."""
    if value is None:
        return None
    parsed = json_input.from_text("--metadata", value)
    if not isinstance(parsed, dict):
        raise click.ClickException('--metadata must be a JSON object, e.g. {"topic": "travel"}')
    return json_input.metadata_filter(parsed, "--metadata")
