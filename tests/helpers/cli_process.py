"""The CLI in a child process: start it, read its output until a line, run two at once."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memoric.db.store import MemoryStore
from memoric.migrate import LOCK_NAME

CLI = "import sys; from memoric.__main__ import main; sys.exit(main())"


WAITING = "Waiting for the migration lock"


def start_cli(dsn: str, *args: str, cwd: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "MEMORIC_DATABASE_URL"}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "--dsn", dsn, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(dsn: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI run to its end in a child process, killed after `timeout` seconds (a hang then
    fails the test with TimeoutExpired instead of stopping the suite)."""
    process = start_cli(dsn, *args, cwd=cwd)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def read_until(process: subprocess.Popen, text: str, timeout: float = 60) -> str:
    """stderr of `process` up to `text` (fails if the process ends or the time runs out first).

    Reads the raw pipe so that no line can sit unseen in a Python buffer while select() waits.
    """
    descriptor, seen = process.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        ready = remaining > 0 and select.select([descriptor], [], [], remaining)[0]
        chunk = os.read(descriptor, 4096) if ready else b""
        if not chunk:
            process.kill()
            pytest.fail(f"never printed {text!r}; stderr so far: {seen.decode(errors='replace')!r}")
        seen += chunk
    return seen.decode()


def run_twice_at_once(store: MemoryStore, dsn: str, *args: str, cwd: Path) -> list[str]:
    """Two `memoric --dsn DSN ARGS` started while `store` holds the migration lock, released once
    both wait for it; their standard outputs, sorted (both must exit 0)."""
    with store.lock(LOCK_NAME):
        processes = [start_cli(dsn, *args, cwd=cwd) for _ in range(2)]
        for process in processes:
            read_until(process, WAITING)
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    return sorted(out for out, _ in outputs)
