"""The memoric benchmark: load a seeded workload through the public API, then time the queries.

    python -m benchmarks.bench --rows 10000 --dialect all            # full timing run
    python -m benchmarks.bench --rows 10000 --dialect all --quick    # CI smoke (seconds)
    python -m benchmarks.bench --rows 1000000 --dialect sqlite --json --save results.json
    python -m benchmarks.bench --rows 10000 --dialect all --peers langgraph  # beside LangGraph
    python -m benchmarks.bench --rows 10000 --dialect citus          # a coordinator and two workers

Each (dialect, row count) gets a fresh database: the memories are bulk-loaded with
`MemoryStore.insert_memories` in chunks, one cluster per (user, topic, category) is written with
`upsert_cluster`, and every query is then timed many times. The load and the queries each run in
a process of their own, so each phase's peak RSS is its own. Single-row and bulk insert rates,
`migrate upgrade` from empty, the table and index sizes, and the query plans are reported with
the timings. LangGraph's SqliteStore and PostgresStore (benchmarks/peers.py) are loaded with the
same memories in a database of their own and timed the same way in the same run, when installed
(`pip install '.[bench]'`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import importlib.util
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import peewee

from benchmarks import databases, peers, report
from benchmarks import queries as q
from benchmarks import workload as w
from memoric.db.store import MemoryStore

DIALECTS = ("sqlite", "postgresql")
CITUS = "citus"  # PostgreSQL distributed by Citus: a target of its own, not part of "all"
LOAD_CHUNK = 10_000
EXPLAINED = (
    "filter_no_match",
    "filter_user",
    "filter_no_match_user",
    "filter_all_2keys",
    "user_thread",
    "cluster_lookup",
)


@dataclass(frozen=True)
class Settings:
    """How hard to time: repetitions and time budget per query, rows for the insert rates."""

    max_reps: int = 200
    min_reps: int = 5
    budget_s: float = 3.0
    single_inserts: int = 1000
    seed: int = 42

    @classmethod
    def quick(cls, seed: int) -> Settings:
        return cls(max_reps=3, min_reps=1, budget_s=0.2, single_inserts=50, seed=seed)


def quiet_logging() -> None:
    """Drop memoric's per-store SQLite warning: it would be printed once per store."""
    logging.getLogger("memoric").setLevel(logging.ERROR)


def has_retrieve() -> bool:
    from memoric.core import Memoric

    return hasattr(Memoric, "retrieve")


def has_migrations() -> bool:
    return importlib.util.find_spec("memoric.migrate") is not None


# --- loading ------------------------------------------------------------------------------


def create_schema(dsn: str) -> MemoryStore:
    """A store on `dsn` with the schema built as users build it (`init_db` when it exists)."""
    from memoric.core import Memoric

    if hasattr(Memoric, "init_db"):
        Memoric(dsn=dsn).init_db()
    store = MemoryStore(dsn, clock=w.fixed_clock)
    store.create_schema()
    return store


def load(store: MemoryStore, rows: int, seed: int) -> tuple[dict, w.ClusterCollector]:
    """Bulk-load the workload in chunks; time only the `insert_memories` calls."""
    collector = w.ClusterCollector()
    spent = 0.0
    for chunk in w.generate(rows, seed, LOAD_CHUNK):
        collector.add(chunk)
        start = time.perf_counter()
        store.insert_memories(chunk)
        spent += time.perf_counter() - start
    highest = store.database.execute_sql("SELECT MAX(id) FROM memories").fetchone()[0]
    if highest != rows:
        raise RuntimeError(f"expected ids 1..{rows} in a fresh database, the highest is {highest}")
    return {"rows": rows, "seconds": spent, "rows_per_s": rows / spent}, collector


def create_clusters(store: MemoryStore, collector: w.ClusterCollector) -> dict:
    """One cluster per (user, topic, category) group, through `upsert_cluster`."""
    start = time.perf_counter()
    for (user, topic, category), ids in collector.groups.items():
        store.upsert_cluster(
            user_id=user, topic=topic, category=category, memory_ids=list(ids), summary="bench"
        )
    spent = time.perf_counter() - start
    count = len(collector.groups)
    return {"clusters": count, "seconds": spent, "per_s": count / spent}


def load_phase(dsn: str, rows: int, seed: int) -> dict:
    """Schema, bulk load and clusters (in its own process: `load_peak_rss_mb` is the bulk load's peak)."""
    quiet_logging()
    store = create_schema(dsn)
    before = _rss_mb()
    loaded, collector = load(store, rows, seed)
    peak = _rss_mb()
    clusters = create_clusters(store, collector)
    store.close()
    return {"load": loaded, "clusters": clusters, "load_rss_before_mb": before, "load_peak_rss_mb": peak}


def is_loaded(store: MemoryStore, rows: int) -> bool:
    """Whether a reused database already holds the whole workload."""
    try:
        memories = store.count_memories()
        clusters = store.database.execute_sql("SELECT COUNT(*) FROM memory_clusters").fetchone()[0]
    except Exception:
        return False
    return memories == rows and clusters > 0


# --- timing -------------------------------------------------------------------------------


def time_calls(call, settings: Settings) -> dict:
    """min/median/p95 in ms of `call(i)` over i = 1, 2, ... after one warm-up call."""
    call(0)
    samples = []
    deadline = time.perf_counter() + settings.budget_s
    i = 1
    while i <= settings.max_reps and (i <= settings.min_reps or time.perf_counter() < deadline):
        start = time.perf_counter_ns()
        call(i)
        samples.append((time.perf_counter_ns() - start) / 1e6)
        i += 1
    return summarize(samples)


def summarize(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(ordered), "min": ordered[0], "median": statistics.median(ordered), "p95": p95}


def query_phase(dsn: str, settings: Settings) -> dict:
    """Time every query (run in its own process: `peak_rss_mb` is this phase's peak)."""
    quiet_logging()
    store = MemoryStore(dsn, clock=w.fixed_clock)
    targets = {"store": store, "memoric": memoric_for(dsn)}
    baseline = _rss_mb()
    results, notes = {}, []
    for query in q.QUERIES:
        target = targets[query.needs]
        if target is None:
            notes.append(f"{query.name}: skipped, Memoric.retrieve does not exist yet")
            continue
        results[query.name] = time_calls(lambda i, run=query.run, t=target: run(t, i), settings)
    store.close()
    return {"queries": results, "notes": notes, "rss_before_mb": baseline, "peak_rss_mb": _rss_mb()}


def memoric_for(dsn: str):
    """A Memoric on `dsn` for the recall query, or None while `Memoric.retrieve` does not exist."""
    if not has_retrieve():
        return None
    from memoric.core import Memoric

    return Memoric(dsn=dsn)


def _rss_mb() -> float:
    """This process's peak RSS so far, in MB: Linux's VmHWM, which starts afresh at exec, whereas
    `ru_maxrss` keeps the peak of the forked parent a spawned phase started as."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            peak_kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
        return int(peak_kb) / 1024
    except (OSError, StopIteration):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def isolated(phase, *args) -> dict:
    """`phase(*args)` in a fresh interpreter, so the peak RSS it reports is its own."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(phase, *args).result()


# --- inserts, migrations, plans -----------------------------------------------------------


def single_insert_rate(store: MemoryStore, settings: Settings) -> dict:
    """Rows per second of `insert_memory`, one call (one transaction) per row; rows removed after."""
    rows = next(w.generate(settings.single_inserts, settings.seed + 1, settings.single_inserts))
    start = time.perf_counter()
    ids = [store.insert_memory(**row) for row in rows]
    spent = time.perf_counter() - start
    store.delete_memories(memory_ids=ids)
    return {"rows": len(ids), "seconds": spent, "rows_per_s": len(ids) / spent}


def migrate_upgrade(server: databases.Server, name: str) -> dict:
    """Seconds of `migrate upgrade` from an empty database to head (migrate_bench.time_upgrade)."""
    if not has_migrations():
        return {"skipped": "memoric.migrate does not exist yet"}
    from benchmarks.migrate_bench import time_upgrade
    from memoric.migrate import Migrations

    dsn = server.dsn(name)
    seconds = time_upgrade(dsn)
    store = MemoryStore(dsn)
    head = Migrations(store).current()
    store.close()
    server.drop(name)
    return {"seconds": seconds, "head": head}


def plans(store: MemoryStore) -> dict:
    """The plan of each query in EXPLAINED, from the SQL the library actually sends."""
    by_name = {query.name: query for query in q.QUERIES}
    return {name: databases.explain(store, lambda n=name: by_name[n].run(store, 1)) for name in EXPLAINED}


# --- one run ------------------------------------------------------------------------------


def run(server: databases.Server, rows: int, settings: Settings, reuse: bool, compare: bool = False) -> dict:
    """Everything measured for one (dialect, row count), and for the peer too when `compare`."""
    name = server.name(str(rows))
    dsn = server.dsn(name, fresh=not reuse)
    result = {"dialect": server.dialect, "rows": rows, "notes": []}
    store = MemoryStore(dsn, clock=w.fixed_clock)
    if reuse and is_loaded(store, rows):
        result["notes"].append("database reused: load and cluster times are from an earlier run")
    else:
        store.close()
        result.update(isolated(load_phase, server.dsn(name), rows, settings.seed))
    databases.analyze(store)
    result["engine_version"] = databases.server_version(store)
    store.close()
    phase = isolated(query_phase, dsn, settings)
    result["notes"].extend(phase.pop("notes"))
    result.update(phase)
    result["plans"] = plans(store)
    result["sizes"] = databases.sizes(store)
    result["sizes"]["primary_key_bytes"] = databases.primary_key_bytes(store)
    result["sizes"]["postings_bytes"] = databases.posting_sizes(store)
    result["single_insert"] = single_insert_rate(store, settings)
    store.close()
    result["migrate_upgrade"] = migrate_upgrade(server, server.name(f"migrate_{rows}"))
    if not reuse:
        server.drop(name)
    if compare:
        result["peers"] = {peers.NAME: run_peer(server, rows, settings, reuse)}
    return result


# --- the peer -----------------------------------------------------------------------------


def run_peer(server: databases.Server, rows: int, settings: Settings, reuse: bool) -> dict:
    """LangGraph's store on a database of its own: load, queries and single-row puts, as memoric's."""
    name = server.name(f"{peers.NAME}_{rows}")
    dsn = server.dsn(name, fresh=not reuse)
    result = {"label": peers.label(server.dialect), "notes": []}
    with peers.open_store(dsn) as store:
        loaded = reuse and peers.is_loaded(store, rows)
    if loaded:
        result["notes"].append("database reused: the load time is from an earlier run")
    else:
        result.update(isolated(peer_load_phase, server.dsn(name), rows, settings.seed))
    result.update(isolated(peer_query_phase, dsn, settings))
    with peers.open_store(dsn) as store:
        result["single_insert"] = peers.single_insert_rate(store, settings.single_inserts, settings.seed + 1)
        note = peers.settings_note(store)
    if note:
        result["notes"].append(note)
    if not reuse:
        server.drop(name)
    return result


def peer_load_phase(dsn: str, rows: int, seed: int) -> dict:
    """The peer's bulk load (in its own process: `load_peak_rss_mb` is the load's peak)."""
    with peers.open_store(dsn) as store:
        before = _rss_mb()
        loaded = peers.load(store, rows, seed)
        peak = _rss_mb()
        peers.analyze(store)
    return {"load": loaded, "load_rss_before_mb": before, "load_peak_rss_mb": peak}


def peer_query_phase(dsn: str, settings: Settings) -> dict:
    """Time every query the peer can ask (in its own process: `peak_rss_mb` is this phase's peak)."""
    with peers.open_store(dsn) as store:
        baseline = _rss_mb()
        results = {
            name: time_calls(lambda i, run=run: run(store, i), settings)
            for name, run in peers.QUERIES.items()
        }
    return {"queries": results, "rss_before_mb": baseline, "peak_rss_mb": _rss_mb()}


def machine() -> dict:
    return {
        "date": dt.date.today().isoformat(),
        "python": platform.python_version(),
        "peewee": peewee.__version__,
        "cpus": multiprocessing.cpu_count(),
        "platform": platform.platform(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="10000", help="row counts, comma separated (e.g. 10000,100000)")
    parser.add_argument(
        "--dialect",
        default="all",
        choices=(*DIALECTS, CITUS, "all"),
        help=f"all: {', '.join(DIALECTS)}; {CITUS}: a coordinator and two workers (memoric.testing_citus)",
    )
    parser.add_argument("--postgres-url", help="an existing server to use instead of the embedded one")
    parser.add_argument("--quick", action="store_true", help="one or a few runs per query (CI smoke)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--save", help="write the JSON results to this file after every run, as they stand")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", help="keep databases here (default: a temporary directory)")
    parser.add_argument("--reuse", action="store_true", help="reuse a loaded database in --workdir")
    parser.add_argument(
        "--peers",
        default="auto",
        choices=("auto", peers.NAME, "none"),
        help=f"time LangGraph's stores beside memoric (auto: when installed, {peers.INSTALL_HINT})",
    )
    args = parser.parse_args(argv)
    if args.reuse and not args.workdir:
        parser.error("--reuse needs --workdir")
    args.compare = args.peers != "none" and peers.missing() is None
    if args.peers == peers.NAME and not args.compare:
        parser.error(f"--peers {peers.NAME}: {peers.missing()}")
    args.row_counts = [int(part.replace("_", "")) for part in args.rows.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_logging()
    if args.peers == "auto" and not args.compare:
        print(f"peers: {peers.missing()}; memoric runs alone", file=sys.stderr, flush=True)
    settings = Settings.quick(args.seed) if args.quick else Settings(seed=args.seed)
    dialects = DIALECTS if args.dialect == "all" else (args.dialect,)
    output = {"machine": machine(), "settings": asdict(settings), "runs": []}
    for dialect in dialects:
        workdir = f"{args.workdir}/{dialect}" if args.workdir else None
        server = databases.Server(dialect, workdir, args.postgres_url)
        try:
            for rows in args.row_counts:
                output["runs"].append(run(server, rows, settings, args.reuse, args.compare))
                if args.save:
                    save(output, args.save)
                if not args.json:
                    print(report.run_text(output["runs"][-1]), flush=True)
        finally:
            server.close()
    print(as_json(output) if args.json else report.summary_text(output))
    return 0


def as_json(output: dict) -> str:
    return json.dumps(output, indent=2, default=str)


def save(output: dict, path: str) -> None:
    """Replace `path` with the results so far, whole: a reader never sees half a file."""
    partial = f"{path}.partial"
    with open(partial, "w") as file:
        file.write(as_json(output))
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
