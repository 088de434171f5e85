"""How long `memoric migrate upgrade` takes from an empty database to head, per dialect.

    python -m benchmarks.migrate_bench                       # both dialects, 5 runs each
    python -m benchmarks.migrate_bench --dialect sqlite --runs 20

Targets: 0.5 s on SQLite, 1 s on PostgreSQL (a fresh database each run; PostgreSQL from
$MEMORIC_TEST_POSTGRES_URL or an embedded server).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator

from memoric.db.store import MemoryStore
from memoric.migrate import Migrations
from memoric.testing import new_databases, postgres_server

TARGETS = {"sqlite": 0.5, "postgresql": 1.0}


def time_upgrade(dsn: str) -> float:
    """Seconds `Migrations(store).upgrade()` takes on the (empty) database at `dsn`."""
    store = MemoryStore(dsn)
    try:
        start = time.perf_counter()
        Migrations(store).upgrade()
        return time.perf_counter() - start
    finally:
        store.close()


@contextlib.contextmanager
def fresh_databases(dialect: str) -> Iterator:
    """A factory of empty databases of `dialect` (URLs), all removed afterwards."""
    if dialect == "postgresql":
        with (
            postgres_server(durable=True) as server_url,
            new_databases(server_url, "memoric_migrate_bench") as create,
        ):
            yield create
        return
    with tempfile.TemporaryDirectory(prefix="memoric-migrate-bench-") as workdir:
        yield lambda: f"sqlite:///{os.path.join(workdir, uuid.uuid4().hex)}.db"


def measure(dialect: str, runs: int) -> dict:
    """Median and worst upgrade time over `runs` fresh databases."""
    with fresh_databases(dialect) as new_database:
        seconds = [time_upgrade(new_database()) for _ in range(runs)]
    return {
        "dialect": dialect,
        "runs": runs,
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "target_s": TARGETS[dialect],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("memoric").setLevel(logging.ERROR)
    dialects = list(TARGETS) if args.dialect == "all" else [args.dialect]
    for dialect in dialects:
        result = measure(dialect, args.runs)
        verdict = "ok" if result["max_s"] <= result["target_s"] else "SLOWER THAN TARGET"
        print(
            f"{dialect:<10} migrate upgrade empty -> head: median {result['median_s'] * 1000:.1f} ms, "
            f"max {result['max_s'] * 1000:.1f} ms over {result['runs']} runs "
            f"(target {result['target_s']} s) {verdict}"
        )


if __name__ == "__main__":
    main()
