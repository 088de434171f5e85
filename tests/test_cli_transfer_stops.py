"""An import, copy or export stopped by Ctrl-C, SIGTERM, SIGHUP or a failure midway: one line saying
what was written, a rerun that resumes, and an import with new ids taking back what it wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from memoric.db.store import MemoryStore
from memoric.errors import MemoricError
from tests.helpers.chain import built
from tests.helpers.cli_runs import invoke, ok
from tests.helpers.dialects import one_line_error
from tests.helpers.transfer_data import assert_identical, snapshot

# --- Ctrl-C during import and copy ---------------------------------------------------------


def stopped_after_the_first_batch(monkeypatch, name: str) -> None:
    """Make `transfer.<name>` raise KeyboardInterrupt (as Ctrl-C does) once its first batch is written."""
    from memoric import transfer

    real = getattr(transfer, name)

    def interrupted(*args, progress=None, **kwargs):
        def after_a_batch(rows: int) -> None:
            progress(rows)
            raise KeyboardInterrupt

        return real(*args, progress=after_a_batch, **kwargs)

    monkeypatch.setattr(transfer, name, interrupted)


def test_ctrl_c_during_an_import_says_what_was_written_and_the_rerun_resumes(
    source, new_dsn, tmp_path, monkeypatch
):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    with monkeypatch.context() as patched:
        stopped_after_the_first_batch(patched, "import_memoric")
        result = invoke("--dsn", target, "import", str(path))
    assert result.exit_code == 130
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert result.stderr.splitlines() == [
        "Interrupted: it stopped between whole batches; run the same command again to resume "
        "(rows already there are skipped)."
    ]
    assert MemoryStore(target).count_memories() == 1000
    ok(invoke("--dsn", target, "import", str(path)))
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


def test_ctrl_c_during_an_import_with_new_ids_leaves_nothing(source, new_dsn, tmp_path, monkeypatch):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    with monkeypatch.context() as patched:
        stopped_after_the_first_batch(patched, "import_memoric")
        result = invoke("--dsn", target, "import", "--new-ids", str(path))
    assert result.exit_code == 130
    assert "what it had written was removed" in result.stderr
    assert MemoryStore(target).count_memories() == 0


def test_ctrl_c_during_a_copy_says_what_was_written_and_the_rerun_resumes(source, new_dsn, monkeypatch):
    target = new_dsn()
    with monkeypatch.context() as patched:
        stopped_after_the_first_batch(patched, "copy_memoric")
        result = invoke("copy", "--from", source.db.dsn, "--to", target)
    assert result.exit_code == 130
    assert result.stderr.startswith("Interrupted: it stopped between whole batches")
    ok(invoke("copy", "--from", source.db.dsn, "--to", target))
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


# --- SIGTERM and SIGHUP: a command cleans up as for Ctrl-C -------------------------------------

SIGNALLED_CHILD = """
import os, sys
from memoric import transfer
from memoric.__main__ import main
from memoric.db import transfer_queries
from memoric.transfer import writing

name, number = sys.argv[1], int(sys.argv[2])
real, real_delete = getattr(transfer if name != "_write" else writing, name), transfer_queries.delete_ids


def signalled(*args, progress=None, **kwargs):
    def after_a_batch(rows):
        progress(rows)
        os.kill(os.getpid(), number)

    return real(*args, progress=after_a_batch, **kwargs)


def signalled_export(memoric, out, **kwargs):
    out.write("{}\\n")
    os.kill(os.getpid(), number)
    return real(memoric, out, **kwargs)


def signalled_after_its_commit(*args, **kwargs):
    inserted = real(*args, **kwargs)  # one batch, its transaction committed
    os.kill(os.getpid(), number)
    return inserted


def signalled_again(*args, **kwargs):
    os.kill(os.getpid(), number)  # a second stop while the import takes back what it wrote
    return real_delete(*args, **kwargs)


if name == "_write":
    writing._write = signalled_after_its_commit
else:
    setattr(transfer, name, signalled_export if name == "export_memoric" else signalled)
transfer_queries.delete_ids = signalled_again
sys.argv = ["memoric", *sys.argv[3:]]
main()
"""
STOP_SIGNALS = [signal.SIGTERM, signal.SIGHUP]


def signalled_cli(name: str, number: int, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a child process that sends itself `number` once `transfer.<name>` has written a
    batch (an export: a line; `_write`: right after a batch's commit), and again whenever it
    deletes rows."""
    return subprocess.run(
        [sys.executable, "-c", SIGNALLED_CHILD, name, str(int(number)), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("number", [signal.SIGINT, *STOP_SIGNALS])
def test_a_stop_signal_during_an_import_with_new_ids_takes_back_what_it_wrote(
    source, new_dsn, tmp_path, number
):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    child = signalled_cli("import_memoric", number, "--dsn", target, "import", "--new-ids", str(path))
    assert child.returncode == 128 + number, child.stderr
    stopped = "Interrupted" if number == signal.SIGINT else f"Stopped by {number.name}"
    assert child.stderr.splitlines() == [
        f"{stopped}: what it had written was removed; run the same command again to import the file."
    ]
    assert MemoryStore(target).count_memories() == 0


def test_a_stop_right_after_a_batch_commits_is_taken_back_too(source, new_dsn, tmp_path):
    """The batch's transaction has committed, its count not kept yet: it is taken back with the rest."""
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    child = signalled_cli("_write", signal.SIGTERM, "--dsn", target, "import", "--new-ids", str(path))
    assert child.returncode == 128 + signal.SIGTERM, child.stderr
    assert "what it had written was removed" in child.stderr
    assert MemoryStore(target).count_memories() == 0


@pytest.mark.parametrize("number", STOP_SIGNALS)
def test_a_stop_signal_during_an_import_says_what_was_written(source, new_dsn, tmp_path, number):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    child = signalled_cli("import_memoric", number, "--dsn", target, "import", str(path))
    assert child.returncode == 128 + number, child.stderr
    assert child.stderr.startswith(f"Stopped by {number.name}: it stopped between whole batches")
    ok(invoke("--dsn", target, "import", str(path)))
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


@pytest.mark.parametrize("number", STOP_SIGNALS)
def test_a_stop_signal_during_an_export_leaves_no_file_and_the_old_one_as_it_was(source, tmp_path, number):
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "all.jsonl"
    path.write_text("the old export\n")
    child = signalled_cli("export_memoric", number, "--dsn", source.db.dsn, "export", str(path))
    assert child.returncode == 128 + number, child.stderr
    assert child.stderr.splitlines() == [f"Stopped by {number.name}."]
    assert os.listdir(tmp_path / "out") == ["all.jsonl"]
    assert path.read_text() == "the old export\n"


# The child above, which from the moment it says how it stopped has another process send it
# SIGHUP after SIGHUP until it has exited.
HUNG_UP_WHILE_EXITING = SIGNALLED_CHILD.replace(
    "sys.argv = [",
    """import subprocess
from memoric import cli

HAMMER = "import os, signal, sys\\nparent = os.getppid()\\nsys.stdin.readline()\\n"
HAMMER += "while os.getppid() == parent:\\n    os.kill(parent, signal.SIGHUP)\\n"
hammer = subprocess.Popen([sys.executable, "-c", HAMMER], stdin=subprocess.PIPE)
real_stopped_by = cli.stopped_by


def hung_up_from_now_on(stop):
    hammer.stdin.write(b"go\\n")
    hammer.stdin.flush()
    return real_stopped_by(stop)


cli.stopped_by = hung_up_from_now_on
sys.argv = [""",
)


def test_signals_while_the_cli_exits_keep_the_first_ones_status(source, tmp_path):
    path = tmp_path / "all.jsonl"
    arguments = ["export_memoric", str(int(signal.SIGTERM)), "--dsn", source.db.dsn, "export", str(path)]
    child = subprocess.run(
        [sys.executable, "-c", HUNG_UP_WHILE_EXITING, *arguments], capture_output=True, text=True, check=False
    )
    assert child.returncode == 128 + signal.SIGTERM, child.stderr
    assert child.stderr.splitlines() == ["Stopped by SIGTERM."]
    assert not path.exists()


# The CLI in a child that sends itself a signal once a fourth migration of a build is applied.
STOPPED_WHILE_BUILDING = """
import os, sys
from memoric.__main__ import main
from memoric.db.dialects import postgresql, sqlite

number, applied = int(sys.argv[1]), []


def signalled_after(real):
    def repair_extra_indexes(self, database):
        real(self, database)
        applied.append(1)
        if len(applied) == 4:
            os.kill(os.getpid(), number)

    return repair_extra_indexes


for dialect in (sqlite.SqliteDialect, postgresql.PostgresDialect):
    dialect.repair_extra_indexes = signalled_after(dialect.repair_extra_indexes)
sys.argv = ["memoric", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_an_import_stopped_while_it_builds_a_new_database_resumes_when_run_again(
    source, new_dsn, tmp_path, number
):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()
    arguments = [str(int(number)), "--dsn", target, "import", str(path)]
    child = subprocess.run(
        [sys.executable, "-c", STOPPED_WHILE_BUILDING, *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 128 + number, child.stderr
    assert "run the same command again to resume" in child.stderr
    ok(invoke("--dsn", target, "import", str(path)))
    assert_identical(snapshot(MemoryStore(target)), snapshot(source.db))


def refuse_memories_from(store: MemoryStore, first_id: int) -> None:
    """A trigger that fails every INSERT of a memory with an id from `first_id` on, as a disk that
    fills up midway would."""
    if store.is_postgres:
        store.database.execute_sql(
            "CREATE FUNCTION no_room() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'no space left on device'; END$$"
        )
        when = f"FOR EACH ROW WHEN (NEW.id >= {first_id}) EXECUTE FUNCTION no_room()"
    else:
        when = f"WHEN NEW.id >= {first_id} BEGIN SELECT RAISE(ABORT, 'no space left on device'); END"
    store.database.execute_sql(f"CREATE TRIGGER no_room BEFORE INSERT ON memories {when}")


def test_an_import_that_fails_midway_says_what_was_written_and_the_rerun_resumes(source, new_dsn, tmp_path):
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()[1:1002]]
    target = built(new_dsn())
    refuse_memories_from(target.db, ids[1000])  # the second batch's first memory
    error = one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert "no space left on device" in error
    assert error.endswith(
        "; it stopped between whole batches; run the same command again to resume "
        "(rows already there are skipped)"
    )
    assert target.db.count_memories() == 1000
    target.db.database.execute_sql("DROP TRIGGER no_room" + (" ON memories" if target.db.is_postgres else ""))
    ok(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert_identical(snapshot(target.db), snapshot(source.db))


@pytest.mark.parametrize("options", [[], ["--no-clusters"]])
def test_an_import_with_new_ids_whose_take_back_fails_never_says_it_was_removed(
    source, new_dsn, tmp_path, monkeypatch, options
):
    """The import stops, then taking back what it wrote fails too: the one line says which rows
    to delete, and not that what it wrote was removed (with `--no-clusters` it was a traceback,
    naming nothing)."""
    from memoric.db import transfer_queries

    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.db.dsn, "export", str(path)))
    target = new_dsn()

    def refused(*args, **kwargs):
        raise MemoricError("delete_ids failed on the test's say-so")

    with monkeypatch.context() as patched:
        stopped_after_the_first_batch(patched, "import_memoric")
        patched.setattr(transfer_queries, "delete_ids", refused)
        result = invoke("--dsn", target, "import", "--new-ids", *options, str(path))
    line = one_line_error(result)
    assert "could not be taken back" in line and "delete the rows it wrote (ids among memories 1-" in line
    assert ("clusters" not in line.rpartition("ids among")[2]) is bool(options)
    assert "was removed" not in line
    assert MemoryStore(target).count_memories() == 1000
