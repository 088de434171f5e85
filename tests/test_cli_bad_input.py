"""Bad input through the CLI, on both dialects: one line on stderr, exit 1, no traceback, nothing written."""

from __future__ import annotations

import json
import math
import os
import re

import click
import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric import json_input as j
from memoric import validation as v
from memoric.cli import main
from memoric.db.store import MemoryStore
from memoric.errors import ConfigError
from tests.helpers.bad_input import control_memoric, left_alone
from tests.helpers.cli_process import run_cli
from tests.helpers.dialects import one_line_error as any_one_line_error
from tests.helpers.dialects import refusal


@pytest.fixture(scope="module")
def module_memoric(module_dsn):
    yield from control_memoric(module_dsn)


@pytest.fixture
def m(module_memoric, monkeypatch):
    """The module's Memoric; asserts after the test that nothing was written."""
    yield from left_alone(module_memoric, monkeypatch)


HEADER = '{"type": "header", "format": "memoric-export", "format_version": 1}'
MEMORY = {"type": "memory", "id": 1000, "user_id": "ada", "content": "imported"}


def one_line_error(result) -> str:
    """`helpers.dialects.one_line_error`, and nothing on stdout, the error the last line, "Error: " spaced."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.stderr)
    error = any_one_line_error(result)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert error.startswith("Error: ") and error == result.stderr.splitlines()[-1], result.stderr
    return error


def memory_line(**change) -> str:
    return json.dumps({**MEMORY, **change})


NUL = "\x00"
DIGITS_5000 = '{"a": ' + "9" * 5000 + "}"
DEEP_TEXT = '{"a": ' * 100 + "1" + "}" * 100
TWICE = '{"a": {"b": 1, "c": 2, "b": 2}}'  # json would keep the last "b" silently


def as_option(option: str, value, max_length: int = v.MAX_ID_LENGTH):
    """The library's refusal of `value`, naming the CLI's option."""
    return lambda: v.clean_text(option, value, max_length=max_length)


CLI_CALLS = [
    (["recall", "--user", "x" * 129], as_option("--user", "x" * 129)),
    (["recall", "--user", "ada", "--thread", f"t{NUL}"], as_option("--thread", f"t{NUL}")),
    (["recall", "--user", "ada", "--namespace", ""], as_option("--namespace", "")),
    (
        ["recall", "--user", "ada", "--metadata", '{"a": NaN}'],
        lambda: j.metadata_filter({"a": math.nan}, "--metadata"),
    ),
    (["recall", "--user", "ada", "--metadata", "{not json"], lambda: j.from_text("--metadata", "{not json")),
    (["recall", "--user", "ada", "--metadata", DIGITS_5000], lambda: j.from_text("--metadata", DIGITS_5000)),
    (
        ["recall", "--user", "ada", "--metadata", DEEP_TEXT],
        lambda: j.metadata_filter(json.loads(DEEP_TEXT), "--metadata"),
    ),
    (["recall", "--user", "ada", "--metadata", TWICE], lambda: j.from_text("--metadata", TWICE)),
    (
        ["recall", "--user", "ada", "--query", "q" * 10_001],
        as_option("--query", "q" * 10_001, v.MAX_QUERY_LENGTH),
    ),
    (["stats", "--user", ""], as_option("--user", "")),
    (["run-policies", "--user", f"u{NUL}", "--dry-run"], as_option("--user", f"u{NUL}")),
    (["clusters", "--rebuild", "--user", " "], as_option("--user", " ")),
    (["clusters", "--topic", ""], as_option("--topic", "", v.MAX_CLUSTER_KEY_LENGTH)),
    (["clusters", "--category", f"c{NUL}"], as_option("--category", f"c{NUL}", v.MAX_CLUSTER_KEY_LENGTH)),
    (["export", "--user", "x" * 129], as_option("--user", "x" * 129)),
]


@pytest.mark.parametrize(
    ("args", "check"), CLI_CALLS, ids=lambda x: " ".join(x)[:40] if isinstance(x, list) else ""
)
def test_the_cli_refuses_with_the_validators_message_in_one_line(m, args, check):
    error = one_line_error(CliRunner().invoke(main, ["--dsn", m.db.dsn, *args]))
    assert error == f"Error: {refusal(check)}"


# The options that take a text the library checks: each is refused naming the option.
TEXT_OPTIONS = {"--user", "--thread", "--namespace", "--topic", "--category", "--query"}


def commands(group: click.Group, path: tuple[str, ...] = ()):
    """Every command under `group`, as (the words that run it, the command)."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def text_options():
    """(arguments running a command with one text option empty, that option), for every command."""
    for words, command in commands(main):
        options = [p for p in command.params if isinstance(p, click.Option)]
        for option in (o for o in options if TEXT_OPTIONS & set(o.opts)):
            required = [arg for o in options if o.required and o is not option for arg in (o.opts[0], "ada")]
            yield [*words, option.opts[0], " ", *required], option.opts[0]


@pytest.mark.parametrize(
    ("args", "option"), list(text_options()), ids=lambda x: " ".join(x) if isinstance(x, list) else x
)
def test_every_text_option_is_refused_by_its_own_name(tmp_path, args, option):
    dsn = f"sqlite:///{tmp_path / 'never.db'}"
    error = one_line_error(CliRunner().invoke(main, ["--dsn", dsn, *args]))
    assert error == f"Error: {option} must be a non-empty string"
    assert list(tmp_path.iterdir()) == [], "refused before any database is opened"


def file_names():
    """(arguments running a command with one file or directory name given, that name), for every
    command taking one (FILE, --dir)."""
    for words, command in commands(main):
        for param in command.params:
            if param.name in ("file", "migrate_dir"):
                named = param.opts[0] if isinstance(param, click.Option) else param.name.upper()
                yield [*words, param.opts[0]] if isinstance(param, click.Option) else list(words), named


@pytest.mark.parametrize(
    ("words", "named"), list(file_names()), ids=lambda x: " ".join(x) if isinstance(x, list) else x
)
@pytest.mark.parametrize(
    ("name", "problem"), [(f"a{NUL}b", "it holds a NUL character"), ("a\ud800b", "surrogates not allowed")]
)
def test_every_file_name_the_system_cannot_take_is_refused_in_one_line(tmp_path, words, named, name, problem):
    """A NUL or a lone surrogate in FILE ended export and import in a traceback."""
    dsn = f"sqlite:///{tmp_path / 'never.db'}"
    error = one_line_error(CliRunner().invoke(main, ["--dsn", dsn, *words, name]))
    assert error == f"Error: {named} {name!r} is no file name: {problem}"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_name_too_long_for_the_system_is_refused_in_one_line(tmp_path):
    dsn = f"sqlite:///{tmp_path / 'never.db'}"
    error = one_line_error(CliRunner().invoke(main, ["--dsn", dsn, "migrate", "current", "--dir", "y" * 300]))
    assert error.startswith("Error: --dir 'yyy") and error.endswith(": File name too long")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recall", "--user", "ada", "--metadata", "[1, 2]"], "--metadata must be a JSON object"),
        (["recall", "--user", "ada", "--metadata", "null"], "--metadata must be a JSON object"),
        (["recall", "--user", "ada", "--metadata", '"travel"'], "--metadata must be a JSON object"),
        (["recall", "--user", "ada", "--scope", "topic"], 'scope "topic" needs metadata_filter'),
    ],
)
def test_cli_refuses_a_filter_that_is_no_object_and_a_topic_without_one(m, args, message):
    error = one_line_error(CliRunner().invoke(main, ["--dsn", m.db.dsn, *args]))
    assert message in error


CLI_BAD_IMPORTS = [
    ("", "the export is empty: no header line"),
    ("\n\n", "the export is empty: no header line"),
    ('{"type": "header", "format": "other-tool", "format_version": 1}\n', "not a memoric export"),
    ("[1, 2]\n", "line 1 is not a JSON object"),
    ("{oops\n", "line 1 is not valid JSON"),
    (f'{HEADER}\n{{"user_id": "ada", "content": "x"}}\n', "line 2: unknown record type None"),
    (f'{HEADER}\n{{"type": [], "id": 1}}\n', "line 2: unknown record type []"),
    (f'{HEADER}\n{{"type": {{"memory": 1}}, "id": 1}}\n', "line 2: unknown record type {'memory': 1}"),
    (f"{HEADER}\n{memory_line(user_id='x' * 129)}\n", "line 2: user_id must be at most 128 characters"),
    (f'{HEADER}\n{memory_line()[:-1]}, "metadata": {{"x": NaN}}}}\n', "line 2: metadata['x'] holds nan"),
    (f"{HEADER}\n{memory_line(id='1')}\n", "line 2: id must be an int, got '1'"),
    (f"{HEADER}\n{memory_line(updated_at=12)}\n", "line 2: updated_at must be a datetime, got int"),
    (f"{HEADER}\n{memory_line(colour='blue')}\n", "line 2: unexpected field"),
    (f'{HEADER}\n{{"type": "cluster", "cluster_id": 9}}\n', "line 2: missing"),
    (
        f'{HEADER}\n{{"type": "cluster", "cluster_id": 9, "user_id": "ada", "topic": "t", "category": "c", '
        '"memory_ids": ["x"], "memory_count": 1, "summary": ""}\n',
        "line 2: memory_ids[0] must be an int",
    ),
    (f"{HEADER}\n".encode() + b'{"type": "memory", "content": "\xff\xfe"}\n', "line 2 is not UTF-8 text"),
]


@pytest.mark.parametrize(("text", "message"), CLI_BAD_IMPORTS)
def test_cli_import_refuses_a_bad_file_whole(m, text, message):
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    result = CliRunner().invoke(main, ["--dsn", m.db.dsn, "import", "-"], input=data)
    assert message in one_line_error(result)


def test_cli_import_of_a_missing_file(m, tmp_path):
    error = one_line_error(
        CliRunner().invoke(main, ["--dsn", m.db.dsn, "import", str(tmp_path / "no.jsonl")])
    )
    assert "cannot read" in error and "No such file or directory" in error


def test_a_sqlite_url_naming_a_pipe_or_a_directory_is_refused_before_it_is_opened(tmp_path):
    """SQLite opening a named pipe, the database or its journal, waits for a writer for ever, deaf
    to SIGTERM (run in a child process to be timed out)."""
    pipe, journal, wal = tmp_path / "agent.db", tmp_path / "other.db-journal", tmp_path / "third.db-wal"
    for built in ("other.db", "third.db"):
        store = MemoryStore(f"sqlite:///{tmp_path / built}")
        store.create_schema()
        store.close()
    os.mkfifo(pipe)
    os.mkfifo(journal)
    wal.mkdir()
    named = [(pipe, pipe, "a named pipe"), (tmp_path, tmp_path, "a directory")]
    companions = [
        (tmp_path / "other.db", journal, "a named pipe"),
        (tmp_path / "third.db", wal, "a directory"),
    ]
    for path, culprit, kind in named + companions:
        said = f"{str(culprit)!r} is {kind}, not a file"
        stats = run_cli(f"sqlite:///{path}", "stats", cwd=tmp_path)
        assert (stats.returncode, stats.stderr.count("\n")) == (1, 1) and said in stats.stderr, stats.stderr
        with pytest.raises(ConfigError, match=re.escape(said)):
            MemoryStore(f"sqlite:///{path}")


CLI_BAD_DSNS = [
    ("not a url", "invalid database URL"),
    ("mysql://agent:s3cret@localhost/db", "unsupported database URL 'mysql://agent:***@localhost/db'"),
    ("sqlite:////no/such/directory/m.db", "directory '/no/such/directory' does not exist"),
    ("sqlite:////tmp/a\ud800b.db", "its file name is none the system can take (surrogates not allowed)"),
    (
        "postgresql://agent:s3cret@127.0.0.1:1/memoric",
        "cannot open database postgresql://agent:***@127.0.0.1:1",
    ),
]


@pytest.mark.parametrize(("dsn", "message"), CLI_BAD_DSNS)
def test_cli_refuses_a_malformed_dsn_in_one_line_password_masked(dsn, message, monkeypatch, tmp_path):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    unused = f"sqlite:///{tmp_path / 'unused.db'}"
    for command in (
        ["stats"],
        ["export"],
        ["copy", "--from", dsn, "--to", unused],
        ["copy", "--from", unused, "--to", dsn],
    ):
        result = CliRunner().invoke(main, ["--dsn", dsn, *command])
        error = one_line_error(result)
        assert "s3cret" not in result.output + result.stderr
        if command[0] != "copy":
            assert message in error
    assert list(tmp_path.iterdir()) == []


CLI_BAD_CONFIGS = [
    ("tiers: [\n", "is not valid YAML"),
    ("colour: blue\n", "unknown config key 'colour'"),
    ("tiers: []\n", "tiers must not be empty"),
]


@pytest.mark.parametrize(("text", "message"), CLI_BAD_CONFIGS)
def test_cli_refuses_a_bad_config_file_in_one_line(m, tmp_path, text, message):
    path = tmp_path / "memoric.yaml"
    path.write_text(text)
    for command in (["stats"], ["run-policies"], ["import", "-"]):
        result = CliRunner().invoke(main, ["--dsn", m.db.dsn, "--config", str(path), *command], input=HEADER)
        assert message in one_line_error(result)


def test_cli_refuses_a_missing_or_unreadable_config(m, tmp_path):
    for path, message in ((tmp_path / "missing.yaml", "does not exist"), (tmp_path, "is a directory")):
        result = CliRunner().invoke(main, ["--dsn", m.db.dsn, "--config", str(path), "stats"])
        assert message in one_line_error(result)


def test_cli_copy_refuses_bad_ends_and_writes_nothing(m, tmp_path):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with Memoric(empty) as built:
        built.store.database.execute_sql("SELECT 1")  # an empty SQLite file
    cases = [
        ([m.db.dsn, m.db.dsn], "the source and the target are the same database"),
        ([f"sqlite:///{tmp_path / 'missing.db'}", f"sqlite:///{tmp_path / 't.db'}"], "does not exist"),
        ([empty, f"sqlite:///{tmp_path / 't.db'}"], "holds no memoric schema"),
        ([m.db.dsn, "nonsense"], "invalid database URL"),
    ]
    for (source, target), message in cases:
        result = CliRunner().invoke(main, ["copy", "--from", source, "--to", target])
        assert message in one_line_error(result)
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "t.db").exists()
