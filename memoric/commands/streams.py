"""The standard streams of a `memoric` run: one that is closed or fails is one `Error:` line.

`standard_streams` wraps the whole run, --help and --version included: stdout is written through
`CheckedOutput`, whose failed writes (a full disk, a closed pipe) raise `OutputFailed`, and a stdin
the process was started without is a `ClosedInput`, whose reads raise it too. A closed stdout is
refused before anything runs (`require_stdout`): what the command prints would be lost. stdout and
stderr are written in UTF-8.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import sys
from collections.abc import Callable
from typing import TextIO

import click

WRITE_FAILED = "cannot write to standard output: {reason}"
# Said of a failed write once a command runs: its changes were committed before it printed them.
CHANGES_STAY = "what the command changed before stays (look before running it again)"
READ_CLOSED = "cannot read standard input: it is closed"


class StreamError(click.ClickException):
    """A standard stream that is closed or failed: one `Error:` line and exit 1."""


class OutputFailed(StreamError):
    """stdout failed or is closed: what the command printed (or would print) is lost."""


class CheckedOutput:
    """stdout, whose failed writes and flushes raise `OutputFailed`; once one failed, later flushes
    do nothing: what was left unwritten is dropped, and the failure is said once, not again at exit."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        try:  # a try of its own, not a context manager: an export writes once per line
            return self.stream.write(text)
        except OSError as exc:
            raise self._failed(exc) from None

    def writelines(self, lines) -> None:
        try:
            self.stream.writelines(lines)
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        if self.failed:
            return
        try:
            self.stream.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def __getattr__(self, name: str):
        return getattr(self.stream, name)

    def _failed(self, exc: OSError) -> StreamError:
        self.failed = True
        return OutputFailed(WRITE_FAILED.format(reason=exc.strerror or exc))


class ClosedInput:
    """Stands for a stdin the process was started without (`<&-`): not a terminal, and any read
    of it a `StreamError`."""

    def isatty(self) -> bool:
        return False

    def __iter__(self):
        raise StreamError(READ_CLOSED)

    def __getattr__(self, name: str):
        raise StreamError(READ_CLOSED)


@contextlib.contextmanager
def standard_streams():
    """Within the block, stdout checked and a closed stdin a `ClosedInput`; restored after, but
    for a stdout that failed, which stays behind its wrapper so that exiting says nothing more."""
    stdin, stdout = sys.stdin, sys.stdout
    utf8_streams()
    checked = None if stdout is None else CheckedOutput(sys.stdout)
    sys.stdout = stdout if checked is None else checked
    sys.stdin = ClosedInput() if stdin is None else stdin
    try:
        yield
    finally:
        sys.stdin = stdin
        if checked is None or not checked.failed:
            sys.stdout = stdout


class RunningCommand(click.Command):
    """A command whose run, once its arguments are parsed (a `--help` is printed before), says
    of a failed write of stdout that what it changed stays: an import prints its summary after
    its commit, and a script retrying it on exit 1 would import again. `reads_only(params)`
    says when a run changes nothing, so that there is nothing to say."""

    def __init__(self, *args, reads_only: Callable[[dict], bool] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads_only = reads_only

    def invoke(self, ctx: click.Context):
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()
            return result
        except OutputFailed as exc:
            if self.reads_only is not None and self.reads_only(ctx.params):
                raise
            raise OutputFailed(f"{exc.message}; {CHANGES_STAY}") from None


def always(params: dict) -> bool:
    """`reads_only` of a command that never changes the database."""
    return True


class RunningGroup(click.Group):
    """A group of the CLI whose commands are `RunningCommand`s."""

    command_class = RunningCommand


def require_stdout() -> None:
    """`OutputFailed` when the process was started without a stdout (`>&-`)."""
    if sys.stdout is None:
        raise OutputFailed(WRITE_FAILED.format(reason="it is closed"))


def utf8_streams() -> None:
    """Write stdout and stderr in UTF-8 whatever the locale says: exports, SQL and JSON are UTF-8
    data, and a memory may hold any character, which latin-1 or cp1252 would fail on midway."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and codecs.lookup(stream.encoding).name != "utf-8":
            stream.reconfigure(encoding="utf-8")
