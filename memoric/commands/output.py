"""How the commands show things: aligned tables, JSON, progress bars, where a database lives."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import sys
from pathlib import Path

import click

from memoric.core import Memoric
from memoric.db.jsoncodec import TERMINAL_CONTROLS, controls_escaped
from memoric.db.masking import mask_password, mask_url
from memoric.errors import MemoricError

PROGRESS_MIN_ROWS = 1000
CONTENT_WIDTH = 60
# What a terminal would obey instead of showing: control characters (C0, DEL, C1, whose ESC and
# CSI start escape sequences that move the cursor, erase lines, set the title) and the
# bidirectional controls that reorder a line, so that stored text cannot pass for other output.
UNSHOWABLE = re.compile(f"[\x00-\x1f{TERMINAL_CONTROLS.pattern[1:-1]}]")


def visible(text: str) -> str:
    """`text` with what a terminal would obey rather than show written as escapes (`\\x1b`)."""
    return UNSHOWABLE.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


def echo(line: str = "", *, err: bool = False) -> None:
    """One line of a command's output (stderr with `err`), stored text in it made `visible`."""
    click.echo(visible(line), err=err)


def echo_json(value) -> None:
    """`value` as indented JSON on stdout, datetimes in ISO 8601; what a terminal would obey
    written as `\\u` escapes, which parse back to the same text."""
    try:
        dumped = json.dumps(value, indent=2, ensure_ascii=False, default=_json_value, allow_nan=False)
    except ValueError:  # NaN or infinity: JSON has no such number
        raise MemoricError(
            "cannot write the answer as JSON: a stored number is beyond what a double holds (1e999, "
            "written outside memoric?); correct that row, or leave out --json"
        ) from None
    click.echo(controls_escaped(dumped))


def _json_value(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def echo_table(headers: list[str] | None, rows: list[list], *, right: tuple[int, ...] = ()) -> None:
    """Rows (under headers, if any) in aligned columns (the columns in `right` aligned right)."""
    cells = [[visible(str(cell)) for cell in row] for row in ([headers] if headers else []) + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        padded = [(str.rjust if i in right else str.ljust)(cell, widths[i]) for i, cell in enumerate(row)]
        click.echo("  ".join(padded).rstrip())  # cells made visible already (their widths are those shown)


def shortened(text: str, width: int = CONTENT_WIDTH) -> str:
    """`text` on one line, cut to `width` characters ending in `…`."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def when(moment: dt.datetime | None) -> str:
    """A timestamp to the minute, `-` for none."""
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def heading(title: str) -> None:
    """A blank line, then `== title`."""
    echo()
    echo(f"== {title}")


def where_it_lives(memoric: Memoric) -> str:
    """The database as a person would look for it: the SQLite file, or the masked URL."""
    dsn = memoric.store.dsn
    path = memoric.store.database_file
    if path is not None:
        return visible(mask_password(f"SQLite file {Path(path).resolve()}", dsn))
    return visible(f"PostgreSQL {mask_url(dsn)}")


@contextlib.contextmanager
def progress(total: int, label: str):
    """A callback advancing a progress bar on stderr, shown only for many rows on a terminal."""
    if total < PROGRESS_MIN_ROWS or not sys.stdout.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def echo_tiers(stats: dict) -> None:
    """Memories per tier and their share."""
    total = stats["total"]
    rows = [[tier, n, f"{100 * n / total:.1f}%" if total else "-"] for tier, n in stats["by_tier"].items()]
    rows.append(["total", total, "100.0%" if total else "-"])
    echo_table(["tier", "memories", "share"], rows, right=(1, 2))


def echo_stats(stats: dict) -> None:
    """The tiers table, then the other counts, the dialect and the schema version."""
    echo_tiers(stats)
    echo()
    rows = [[key, stats[key]] for key in ("summarized", "users", "threads", "clusters")]
    rows += [["dialect", stats["dialect"]], ["schema version", stats["schema_version"] or "base"]]
    echo_table(None, rows, right=(1,))


def echo_policy_counts(result: dict, tiers: list[str]) -> None:
    """What a policy run moved, trimmed and summarized."""
    rows = [
        [f"migrated {tier} -> {tiers[tiers.index(tier) + 1]}", n] for tier, n in result["migrated"].items()
    ]
    rows += [
        ["trimmed", result["trimmed"]],
        ["summarized (sources hidden)", result["summarized"]],
        ["summaries created", result["summaries_created"]],
    ]
    echo_table(["policy", "memories"], rows, right=(1,))


def echo_clusters(clusters: list[dict], *, limit: int | None = None) -> None:
    """Clusters as a table, or how to build them when there are none (none asked for: nothing)."""
    if not clusters:
        if limit != 0:
            echo("No clusters (build them with `memoric clusters --rebuild`).")
        return
    keys = ("cluster_id", "user_id", "topic", "category", "memory_count")
    rows = [[*(c[key] for key in keys), when(c["last_built_at"])] for c in clusters]
    echo_table(["id", "user", "topic", "category", "size", "last built (UTC)"], rows, right=(0, 4))


def echo_memories(memories: list[dict], *, scored: bool = True) -> None:
    """Memories as a table (with their recall score when `scored`)."""
    if not memories:
        echo("No memories found.")
        return
    score = ["score"] if scored else []
    rows = [
        [m["id"], m["thread_id"] or "-", m["tier"], *(m[f"_{k}"] for k in score), shortened(m["content"])]
        for m in memories
    ]
    echo_table(["id", "thread", "tier", *score, "content"], rows, right=(0, 3) if scored else (0,))


def echo_counts(verb: str, counts: dict, where: str, *, err: bool = False) -> None:
    """One line: what moved where, and how many rows were already there."""
    skipped = counts.get("skipped", 0)
    already = f"; {skipped} already there, skipped" if skipped else ""
    line = f"{verb} {counts['memories']} memories and {counts['clusters']} clusters {where}{already}"
    echo(line, err=err)


def echo_sql(statements: list[str]) -> None:
    """The statements of a run, each ending with `;`, on stdout: exactly what would run when
    redirected, control characters written as escapes on a terminal."""
    terminal = sys.stdout.isatty()
    for statement in statements:
        text = statement.rstrip().rstrip(";") + ";"
        if terminal:  # shown safely: a value may hold an escape sequence
            click.echo("\n".join(visible(line) for line in text.split("\n")))
        else:  # byte-exact (click would strip escape sequences from values in a redirect)
            click.echo(text, color=True)
    click.echo(f"-- {len(statements)} statement(s) shown; nothing was changed", err=True)
