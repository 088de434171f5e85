"""The CLI run in this process: a command's click result, and insisting that it succeeded."""

from __future__ import annotations

from click.testing import CliRunner

from memoric.cli import main


def invoke(*args: str, input: str | bytes | None = None):
    """`memoric ARGS...` in this process; the click Result (stdout and stderr apart)."""
    return CliRunner().invoke(main, list(args), input=input)


def ok(result):
    """`result`, once it is sure the command succeeded (its output otherwise)."""
    assert result.exit_code == 0, result.output + result.stderr
    return result
