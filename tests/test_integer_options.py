"""Every integer option of the CLI: one bounded type, and a usage error naming the option or the
same output on both dialects."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner

from memoric.cli import COUNT, main
from memoric.validation import MAX_INT
from tests.helpers.integer_arguments import VALUES, open_memorics, seed


@pytest.fixture(scope="module")
def memorics(tmp_path_factory, request):
    yield from open_memorics(tmp_path_factory, request)


def integer_options(command: click.Command, path: tuple[str, ...] = ()):
    """(command path, command, parameter) of every integer parameter of the CLI, found by walking it."""
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from integer_options(sub, (*path, name))
    for parameter in command.params:
        if isinstance(parameter.type, click.types.IntParamType):
            yield path, command, parameter


CLI_OPTIONS = list(integer_options(main))


def test_the_cli_has_integer_options_and_they_all_share_one_bounded_type():
    assert {path[0] for path, _, _ in CLI_OPTIONS} >= {"recall", "clusters"}
    for path, _, parameter in CLI_OPTIONS:
        assert parameter.type is COUNT, (path, parameter.name)


def cli_arguments(
    path: tuple[str, ...], command: click.Command, parameter: click.Parameter, value: str
) -> list:
    """The command line giving `parameter` the `value`, with "ada" for the other required options."""
    arguments = list(path)
    for other in command.params:
        if other.required and other is not parameter:
            arguments += [other.opts[0], "ada"] if isinstance(other, click.Option) else ["ada"]
    if any("--json" in other.opts for other in command.params):
        arguments.append("--json")
    option = parameter.opts[0] if isinstance(parameter, click.Option) else None
    return [*arguments, *([option] if option else []), value]


@pytest.mark.parametrize(("path", "command", "parameter"), CLI_OPTIONS, ids=lambda x: getattr(x, "name", x))
def test_every_integer_option_answers_or_is_a_usage_error_alike_on_both_dialects(
    memorics, monkeypatch, path, command, parameter
):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    outputs = {}
    for dialect, memoric in memorics.items():
        seed(memoric)
        outputs[dialect] = []
        for value in map(str, VALUES):
            arguments = cli_arguments(path, command, parameter, value)
            result = CliRunner().invoke(main, ["--dsn", memoric.db.dsn, *arguments])
            assert "Traceback" not in result.output + result.stderr, result.stderr
            if re.fullmatch(r"-?\d+", value) and 0 <= int(value) <= MAX_INT:
                assert result.exit_code == 0, (dialect, arguments, result.stderr)
                outputs[dialect].append(json.loads(result.stdout))
            else:
                assert result.exit_code == 2, (dialect, arguments, result.stderr)
                errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
                assert len(errors) == 1 and parameter.opts[0] in errors[0], result.stderr
                outputs[dialect].append(errors[0])
    first, *others = outputs.values()
    for other in others:
        assert other == first
