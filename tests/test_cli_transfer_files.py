"""Export and import files the CLI cannot write or read as asked: directories, full disks and
standard outputs, half-written exports, lines JSON cannot read, the database's own files,
symlinks, pipes with no room to keep them."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from tests.helpers.chain import built
from tests.helpers.cli_process import CLI
from tests.helpers.cli_runs import invoke, ok
from tests.helpers.dialects import one_line_error
from tests.helpers.transfer_data import HEADER_LINE

# --- an export that cannot be written; an import JSON cannot read ---------------------------


def test_an_export_onto_a_directory_is_one_line_and_changes_nothing(source, tmp_path):
    directory = tmp_path / "exports"
    directory.mkdir()
    (directory / "kept.jsonl").write_text("kept\n")
    before = sorted(os.listdir(tmp_path))
    error = one_line_error(invoke("--dsn", source.db.dsn, "export", str(directory)))
    assert f"cannot write {directory}: it is a directory" in error
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(directory) == ["kept.jsonl"]


def test_an_export_to_a_full_disk_is_one_line(source, tmp_path):
    full = tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")  # a device that answers every write with ENOSPC
    before = sorted(os.listdir(tmp_path))
    error = one_line_error(invoke("--dsn", source.db.dsn, "export", str(full)))
    assert f"cannot write {full}: No space left on device" in error
    assert sorted(os.listdir(tmp_path)) == before and full.is_symlink()


def run_cli(
    *args: str,
    stdin=None,
    stdout=subprocess.PIPE,
    max_file_size: int | None = None,
    max_memory: int | None = None,
):
    """The CLI in a child process (files it writes limited to `max_file_size` bytes, its address
    space to `max_memory` bytes, where given)."""
    limits = {resource.RLIMIT_FSIZE: max_file_size, resource.RLIMIT_AS: max_memory}

    def limit() -> None:
        for kind, most in limits.items():
            if most is not None:
                resource.setrlimit(kind, (most, most))

    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
        check=False,
    )


def child_error(child: subprocess.CompletedProcess) -> str:
    """The one `Error:` line of a child that failed (exit 1, nothing else but the SQLite warning)."""
    assert child.returncode == 1, child.stderr
    lines = [line for line in child.stderr.splitlines() if "development/testing only" not in line]
    assert len(lines) == 1, child.stderr
    return lines[0]


def test_an_export_failing_half_way_keeps_the_old_file_and_leaves_no_temporary_one(source, tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    path = exports / "all.jsonl"
    path.write_text("the previous export\n")
    # The export is about 1.5 MB: past 64 kB every write fails with EFBIG, as on a full disk.
    child = run_cli("--dsn", source.db.dsn, "export", str(path), max_file_size=64 * 1024)
    assert child_error(child) == f"Error: cannot write {path}: File too large"
    assert os.listdir(exports) == ["all.jsonl"] and path.read_text() == "the previous export\n"


def test_an_export_to_a_full_standard_output_is_one_line(source):
    with open("/dev/full", "w") as full:
        child = run_cli("--dsn", source.db.dsn, "export", stdout=full)
    assert child_error(child).startswith("Error: cannot write to standard output: No space left on device")


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("1" + "0" * 4300, "line 2 is not valid JSON here: Exceeds the limit (4300 digits)"),
        ("[" * 5000 + "]" * 5000, "line 2 is not valid JSON here: it is nested too deeply"),
    ],
    ids=["an int of 4,301 digits", "5,000 levels"],
)
def test_an_import_line_json_cannot_read_is_one_line_and_writes_nothing(new_dsn, tmp_path, metadata, message):
    path = tmp_path / "odd.jsonl"
    line = {"type": "memory", "id": 1, "user_id": "ada", "content": "x", "metadata": {"n": "?"}}
    path.write_text(HEADER_LINE + json.dumps(line).replace('"?"', metadata) + "\n")
    target = built(new_dsn())
    assert message in one_line_error(invoke("--dsn", target.db.dsn, "import", str(path)))
    assert target.db.count_memories() == 0


# --- an export never replaces a database, and writes through symlinks ------------------------


@pytest.mark.parametrize("name", ["agent.db", "agent.db-wal", "agent.db-shm", "agent.db.migrations.lock"])
def test_an_export_never_replaces_the_sqlite_database_it_reads_or_its_files(tmp_path, name):
    dsn = f"sqlite:///{tmp_path / 'agent.db'}"
    Memoric(dsn).save("ada", "kept")
    error = one_line_error(invoke("--dsn", dsn, "export", str(tmp_path / name)))
    assert "refusing to overwrite it" in error
    assert [m["content"] for m in Memoric(dsn).db.get_memories()] == ["kept"]
    assert ok(invoke("--dsn", dsn, "export", str(tmp_path / "agent.db.jsonl")))


def test_an_export_never_replaces_another_sqlite_database(source, tmp_path):
    other = tmp_path / "other.db"
    Memoric(f"sqlite:///{other}").save("zoe", "zoe's memory")
    error = one_line_error(invoke("--dsn", source.db.dsn, "export", str(other)))
    assert "refusing to overwrite it" in error
    assert MemoryStore(f"sqlite:///{other}").count_memories() == 1


def test_an_export_onto_a_symlink_replaces_the_file_it_names_and_keeps_the_link(source, tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "backup.jsonl"
    target.write_text("an older export\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    ok(invoke("--dsn", source.db.dsn, "export", str(link)))
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text().startswith('{"type":"header"')


def test_an_import_from_a_pipe_with_no_room_to_keep_it_is_one_line_and_writes_nothing(
    new_dsn, tmp_path, monkeypatch
):
    """stdin on a pipe is read twice from a temporary copy; a temporary directory that cannot
    take it stops the import before anything is written."""
    source = built(new_dsn())
    source.db.insert_memories([{"user_id": "ada", "content": f"memory {n}"} for n in range(5)])
    export = ok(invoke("--dsn", source.db.dsn, "export", "-")).stdout.encode()
    read_end, write_end = os.pipe()
    os.write(write_end, export)  # a few hundred bytes: the pipe holds them all
    os.close(write_end)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    target = new_dsn()
    with os.fdopen(read_end, "rb") as pipe:
        error = one_line_error(invoke("--dsn", target, "import", "-", input=pipe))
    assert "could not keep a copy of the export in a temporary file" in error
    assert not MemoryStore(target).has_schema(), "nothing written: an empty database left unbuilt"


def test_an_endless_import_line_is_one_line_and_writes_nothing(tmp_path):
    """`import /dev/zero` read its one line into memory until the system killed the process (23 GB);
    the child here may take 2 GB, so the code before ends in a MemoryError, not in the machine's."""
    target = tmp_path / "target.db"
    child = run_cli("--dsn", f"sqlite:///{target}", "import", "/dev/zero", max_memory=2 * 2**30)
    error = child_error(child)
    assert "line 1 of /dev/zero is longer than 256 MiB, longer than any line an export writes" in error
    assert not MemoryStore(f"sqlite:///{target}").has_schema(), "nothing written"


@pytest.mark.parametrize(("first", "refused"), [("", "line 1 is not valid JSON"), (HEADER_LINE, "line 2 ")])
def test_an_endless_stream_of_no_export_on_standard_input_is_refused_at_once(tmp_path, first, refused):
    """`yes | memoric import -` spooled standard input whole before checking line 1, filling the
    temporary directory while it ran; the child's files may take 8 MB here, so the code before
    stops on a full spool instead of the first line that is no export."""
    yes = subprocess.Popen(
        [sys.executable, "-c", YES, first], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    target = tmp_path / "target.db"
    with yes.stdout:
        child = run_cli(
            "--dsn", f"sqlite:///{target}", "import", "-", stdin=yes.stdout, max_file_size=8 * 2**20
        )
    yes.wait()
    assert refused in child_error(child)
    assert not MemoryStore(f"sqlite:///{target}").has_schema(), "nothing written"


YES = "import sys; sys.stdout.write(sys.argv[1])\nwhile True: sys.stdout.write('y\\n')"


def test_a_full_temporary_directory_while_copying_standard_input_is_one_line(tmp_path):
    """The copy's error was one line, then closing the copy failed its flush again: a traceback."""
    memories = tmp_path / "memories.jsonl"
    lines = (
        json.dumps({"type": "memory", "id": n, "user_id": "ada", "content": "m" * 100})
        for n in range(1, 30001)
    )
    memories.write_text(HEADER_LINE + "\n".join(lines) + "\n")
    target = tmp_path / "target.db"
    cat = subprocess.Popen(["cat", str(memories)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with cat.stdout:  # a pipe: copied to a temporary file, which may take 1 MiB here
        child = run_cli("--dsn", f"sqlite:///{target}", "import", "-", stdin=cat.stdout, max_file_size=2**20)
    cat.wait()
    assert "could not keep a copy of the export in a temporary file" in child_error(child)
    assert not MemoryStore(f"sqlite:///{target}").has_schema(), "nothing written"
