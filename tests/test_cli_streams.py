"""Standard streams the CLI cannot use: a full or closed stdout, a closed stdin, an import file
that fails while it is read. Each is one `Error:` line on stderr and exit 1, never a traceback,
and never output lost without a word."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from memoric.cli import main
from memoric.commands.streams import CHANGES_STAY
from memoric.db.store import MemoryStore
from tests.helpers.cli_process import CLI
from tests.helpers.cli_runs import invoke, ok
from tests.helpers.dialects import one_line_error
from tests.helpers.transfer_data import assert_identical, snapshot

DATABASE = "memoric.db"
EXPORT = "all.jsonl"
# What a command needs, besides a database at head holding the demo's memories, to print on stdout.
ARGUMENTS = {
    ("recall",): ["--user", "demo-ada"],
    ("import",): [EXPORT],
    ("copy",): ["--from", f"sqlite:///{DATABASE}", "--to", "sqlite:///copy.db"],
    ("migrate", "downgrade"): ["--yes"],
    ("migrate", "stamp"): ["head"],
    ("migrate", "revision"): ["-m", "a note"],
}
# Runs that change nothing: of a failed stdout they do not say that what they changed stays.
READING = {
    "stats", "clusters", "recall --user demo-ada", "export", "migrate current", "migrate history",
    "migrate pending", "migrate upgrade --sql",
}  # fmt: skip
# Runs that print on stdout only while the database is not built: at head they say so on stderr.
ON_NO_DATABASE = {"migrate pending", "migrate upgrade --sql"}


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every command under `group` that is not a group itself, each command once
    (`db-migrate` is `migrate` under its older name)."""
    paths, seen = [], set()
    for name, command in group.commands.items():
        if id(command) in seen:
            continue
        seen.add(id(command))
        if isinstance(command, click.Group):
            paths += leaf_commands(command, (*path, name))
        else:
            paths.append((*path, name))
    return paths


def printing_runs() -> list[list[str]]:
    """A run of every command of the CLI that prints on stdout, then --help and --version."""
    runs = [[*path, *ARGUMENTS.get(path, [])] for path in leaf_commands(main)]
    return runs + [["--help"], ["--version"], ["stats", "--help"], ["migrate", "upgrade", "--sql"]]


RUNS = printing_runs()
RUN_NAMES = [" ".join(run) for run in RUNS]


@pytest.fixture(scope="module")
def demo_directory(tmp_path_factory) -> Path:
    """A directory holding a SQLite database filled by `memoric demo`, its export, and an empty
    directory for the application's migration chain."""
    directory = tmp_path_factory.mktemp("demo")
    (directory / "app").mkdir()
    for args in (["demo"], ["export", EXPORT]):
        child = run_cli(directory, *args)
        assert child.returncode == 0, child.stderr
    return directory


def workspace(demo_directory: Path, tmp_path: Path, *, database: bool = True) -> Path:
    """A copy of the demo directory (`database` False: without its database)."""
    directory = tmp_path / "run"
    shutil.copytree(demo_directory, directory)
    if not database:
        (directory / DATABASE).unlink()
    return directory


def run_cli(directory: Path, *args: str, **streams) -> subprocess.CompletedProcess:
    """`memoric --dsn sqlite:///memoric.db --app-dir app ARGS` in a child process in `directory`,
    buffered as from a shell, without the SQLite warning; its stderr as text."""
    hidden = {"MEMORIC_DATABASE_URL", "MEMORIC_APP_MIGRATIONS", "PYTHONUNBUFFERED"}
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    env["MEMORIC_SQLITE_WARNING"] = "0"
    command = [sys.executable, "-c", CLI, "--dsn", f"sqlite:///{DATABASE}", "--app-dir", "app", *args]
    streams = {"stdout": subprocess.DEVNULL, "stdin": subprocess.DEVNULL, **streams}
    return subprocess.run(command, cwd=directory, env=env, stderr=subprocess.PIPE, text=True, **streams)


def the_one_error(child: subprocess.CompletedProcess) -> str:
    """The whole of a failed child's stderr: exit 1 and one `Error:` line, no traceback."""
    assert child.returncode == 1, child.stderr
    assert "Traceback" not in child.stderr
    lines = child.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), child.stderr
    return lines[0]


def files_in(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` by relative path, with its content."""
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()
    }


def for_run(demo_directory: Path, tmp_path: Path, run: list[str]) -> Path:
    """The workspace `run` prints on stdout in: without a database for ON_NO_DATABASE runs."""
    return workspace(demo_directory, tmp_path, database=" ".join(run) not in ON_NO_DATABASE)


def close_stdout() -> None:
    """In the child before it starts: no stdout, as `>&-` leaves it."""
    os.close(1)


def close_stdin() -> None:
    """In the child before it starts: no stdin, as `<&-` leaves it."""
    os.close(0)


# --- stdout: full, closed -------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS, ids=RUN_NAMES)
def test_a_full_stdout_is_one_line(demo_directory, tmp_path, run):
    """A write to stdout that fails (ENOSPC here, a closed pipe alike) is one line whichever
    command wrote, --help and --version included, and nothing more when the process exits."""
    directory = for_run(demo_directory, tmp_path, run)
    with open("/dev/full", "w") as full:
        child = run_cli(directory, *run, stdout=full)
    error = the_one_error(child)
    full = "Error: cannot write to standard output: No space left on device"
    changes_nothing = run[-1] in ("--help", "--version") or " ".join(run) in READING
    assert error == (full if changes_nothing else f"{full}; {CHANGES_STAY}")


@pytest.mark.parametrize("run", RUNS, ids=RUN_NAMES)
def test_a_closed_stdout_is_one_line_before_anything_is_done(demo_directory, tmp_path, run):
    """Without a stdout, what a command prints would be lost: it is refused before it runs."""
    directory = for_run(demo_directory, tmp_path, run)
    before = files_in(directory)
    child = run_cli(directory, *run, stdout=None, preexec_fn=close_stdout)
    assert the_one_error(child) == "Error: cannot write to standard output: it is closed"
    assert files_in(directory) == before


# --- stdin: closed --------------------------------------------------------------------------


def test_an_import_from_a_closed_stdin_is_one_line_and_writes_nothing(demo_directory, tmp_path):
    """`import -` without a stdin is refused before the database is touched, not a traceback."""
    directory = workspace(demo_directory, tmp_path)
    before = files_in(directory)
    child = run_cli(directory, "import", "-", stdin=None, preexec_fn=close_stdin)
    assert the_one_error(child) == "Error: cannot read standard input: it is closed"
    assert files_in(directory) == before


def test_a_closed_stdin_is_no_terminal_to_ask_on_and_no_error_where_it_is_not_read(demo_directory, tmp_path):
    """Commands that do not read stdin run as usual; a downgrade that would drop data, which
    asks only on a terminal, is refused as anywhere else."""
    directory = workspace(demo_directory, tmp_path)
    stats = run_cli(directory, "stats", stdin=None, stdout=subprocess.PIPE, preexec_fn=close_stdin)
    assert stats.returncode == 0 and "short_term" in stats.stdout, stats.stderr
    downgrade = run_cli(directory, "migrate", "downgrade", "base", stdin=None, preexec_fn=close_stdin)
    assert the_one_error(downgrade).endswith("nothing was changed; pass --yes to drop it")


# --- an import file that fails while it is read -----------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/mem is Linux's")
def test_an_import_file_failing_to_read_is_one_line_naming_it_and_writes_nothing(demo_directory, tmp_path):
    """/proc/self/mem opens, then answers its first read with EIO."""
    directory = workspace(demo_directory, tmp_path, database=False)
    child = run_cli(directory, "import", "/proc/self/mem")
    assert the_one_error(child) == "Error: cannot read /proc/self/mem: Input/output error"
    assert not (directory / DATABASE).exists()


def failing_after_the_first_batch(monkeypatch, tmp_path: Path) -> None:
    """Make the file an import reads fail (EISDIR: its descriptor turned into a directory's) once
    the first batch is written."""
    from memoric import transfer

    check, write = transfer.check_jsonl, transfer.import_memoric
    opened = []

    def checked(store, stream, **options):
        opened.append(stream)
        return check(store, stream, **options)

    def written(*args, progress=None, **kwargs):
        def after_a_batch(rows: int) -> None:
            progress(rows)
            directory = os.open(tmp_path, os.O_RDONLY)
            os.dup2(directory, opened[0].fileno())
            os.close(directory)

        return write(*args, progress=after_a_batch, **kwargs)

    monkeypatch.setattr(transfer, "check_jsonl", checked)
    monkeypatch.setattr(transfer, "import_memoric", written)


def test_an_import_file_failing_midway_says_what_was_written_and_the_rerun_resumes(
    source, new_dsn, tmp_path, monkeypatch
):
    """A read failing during the writes names the file and says, as any failure there does,
    that the import stopped between whole batches and resumes when run again."""
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    with monkeypatch.context() as patched:
        failing_after_the_first_batch(patched, tmp_path)
        error = one_line_error(invoke("--dsn", target, "import", str(path)))
    assert error.startswith(f"Error: cannot read {path} after line ")
    assert error.endswith(
        ": Is a directory; it stopped between whole batches; run the same command again to resume "
        "(rows already there are skipped)"
    )
    assert MemoryStore(target).count_memories() == 1000
    ok(invoke("--dsn", target, "import", str(path)))
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


def test_an_import_whose_summary_cannot_be_written_says_that_it_was_written(demo_directory, tmp_path):
    """The import commits, then prints its summary: the error line said only that stdout failed,
    and a script retrying on exit 1 with --new-ids imported the file twice."""
    directory = workspace(demo_directory, tmp_path, database=False)
    assert run_cli(directory, "migrate", "upgrade").returncode == 0
    with open("/dev/full", "w") as full:
        child = run_cli(directory, "import", EXPORT, stdout=full)
    assert the_one_error(child).endswith(f"No space left on device; {CHANGES_STAY}")
    lines = (directory / EXPORT).read_text(encoding="utf-8").count('{"type":"memory"')
    assert MemoryStore(f"sqlite:///{directory / DATABASE}").count_memories() == lines > 0
