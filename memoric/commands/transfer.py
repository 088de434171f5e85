"""Moving data: the export, import and copy commands, and the files they read and write."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile

import click

from memoric import transfer
from memoric.commands.output import echo, echo_counts, progress, where_it_lives
from memoric.commands.session import Session
from memoric.commands.stopping import Interrupted, signal_number
from memoric.core import Memoric
from memoric.db.identity import is_database_file, is_file_of
from memoric.errors import MemoricError


def export(
    session: Session, file: str = "-", *, user_id: str | None = None, memoric_only: bool = False
) -> None:
    """Write memories and clusters as JSON Lines to `file` (`-`: stdout), a header line first."""
    memoric = session.memoric
    if file == "-":
        counts = export_to_stdout(memoric, user_id, memoric_only)
    else:
        own_files = memoric.store.database_file
        with export_target(file, own_files) as out:
            counts = transfer.export_memoric(memoric, out, user_id=user_id, memoric_only=memoric_only)
    echo_counts("Exported", counts, f"to {file}", err=file == "-")


def import_(
    session: Session, file: str, *, new_ids: bool = False, clusters: bool = True, keep_existing: bool = False
) -> None:
    """Load an export (`-`: stdin): checked whole first, then written in batches; without
    `clusters`, the file's clusters are checked and left out. A database not there yet is built."""
    session.create = True
    memoric = session.memoric
    with readable_export(file) as stream:
        plan = transfer.check_jsonl(
            memoric.store, stream, new_ids=new_ids, clusters=clusters, keep_existing=keep_existing
        )
        with resumable(plan.records, "Importing", taken_back=new_ids) as advance:
            counts = transfer.import_memoric(memoric, plan, progress=advance)
    echo_counts("Imported", counts, f"into {where_it_lives(memoric)}")
    if not plan.writes("cluster") and plan.counts["cluster"]:
        echo(f"Left out the file's {plan.counts['cluster']} clusters: run `memoric clusters --rebuild`")
    if counts.get("summaries_released"):
        echo(
            f"Deleted {counts['summaries_released']} thread summaries whose memories changed since the "
            "export: the next policy run summarizes those threads again"
        )


def copy(session: Session, source_dsn: str, target_dsn: str, *, memoric_only: bool = False) -> None:
    """Copy memoric's tables of a database (SQLite to PostgreSQL and back); ids and timestamps kept."""
    source, target = transfer.open_copy(
        source_dsn,
        target_dsn,
        config_path=session.config_path,
        app_dir=session.app_dir_option,
        memoric_only=memoric_only,
    )
    total = transfer.copy_size(source) if sys.stdout.isatty() else 0
    with resumable(total, "Copying") as advance:
        counts = transfer.copy_memoric(source, target, progress=advance, memoric_only=memoric_only)
    where = f"from {where_it_lives(source)} to {where_it_lives(target)}"
    echo_counts("Copied", counts, where)


# --- the files ------------------------------------------------------------------------------


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
    if is_database_file(target) or (database is not None and is_file_of(target, database)):
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


def export_to_stdout(memoric: Memoric, user_id: str | None, memoric_only: bool) -> dict:
    """The export on stdout, flushed: a failed write (a full disk, a closed pipe) is one line and
    exit 1 (`commands.streams`)."""
    counts = transfer.export_memoric(memoric, sys.stdout, user_id=user_id, memoric_only=memoric_only)
    sys.stdout.flush()
    return counts


@contextlib.contextmanager
def readable_export(path: str):
    """The export at `path` as binary lines that can be read twice: stdin (`-`) and anything else
    that is not a regular file (`/dev/stdin`, a named pipe, `<(...)`) are spooled to a file."""
    if path == "-":
        with transfer.rereadable(sys.stdin.buffer) as lines:
            yield lines
        return
    with contextlib.ExitStack() as stack:
        try:
            stream = stack.enter_context(open(path, "rb"))
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            stream = stack.enter_context(transfer.rereadable(stream))
        yield stream


@contextlib.contextmanager
def resumable(total: int, label: str, *, taken_back: bool = False):
    """A progress callback advancing the bar; a stop says how to go on.

    Rows go in whole batches, so an import or copy stopped between them resumes where it stopped
    when run again (rows already there are skipped); one with `taken_back` removed what it wrote.
    The stop names no number of rows: records done may have been skipped, and a batch may commit
    just before a stop that comes before it is counted.
    """
    batch_done = False  # a failure in the first batch wrote nothing, and says only what failed
    with progress(total, label) as advance:

        def step(rows: int) -> None:
            nonlocal batch_done
            batch_done = True
            if advance is not None:
                advance(rows)

        try:
            yield step
        except KeyboardInterrupt as stop:
            raise Interrupted(_how_far(taken_back), signal_number(stop)) from None
        except MemoricError as exc:
            if not batch_done or isinstance(exc, transfer.NotTakenBack):  # it says what is left
                raise
            raise MemoricError(f"{exc}; {_how_far(taken_back)}") from exc


def _how_far(taken_back: bool) -> str:
    """What a stopped import or copy left, and how to go on."""
    if taken_back:
        return "what it had written was removed; run the same command again to import the file"
    return (
        "it stopped between whole batches; run the same command again to resume "
        "(rows already there are skipped)"
    )
