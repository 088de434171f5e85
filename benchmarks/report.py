"""Plain-text tables of benchmark results, with the targets, the early estimates and the peer beside them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import peers
from benchmarks import queries as q
from memoric.db.catalogue import METADATA_KEYS_TABLE

# Targets for the median (ms) or rate (rows/s), by (measure, dialect, rows).
TARGET_MS = {
    ("filter_user", "sqlite", 10_000): 1, ("filter_user", "postgresql", 10_000): 1,
    ("filter_user", "sqlite", 1_000_000): 5, ("filter_user", "postgresql", 1_000_000): 3,
    ("filter_all_2keys", "sqlite", 10_000): 2, ("filter_all_2keys", "postgresql", 10_000): 2,
    ("filter_all_2keys", "sqlite", 1_000_000): 10, ("filter_all_2keys", "postgresql", 1_000_000): 5,
    ("filter_no_match", "sqlite", 10_000): 20, ("filter_no_match", "postgresql", 10_000): 2,
    ("filter_no_match", "sqlite", 1_000_000): 2000, ("filter_no_match", "postgresql", 1_000_000): 5,
    ("user_thread", "sqlite", 10_000): 0.5, ("user_thread", "postgresql", 10_000): 1,
    ("user_thread", "sqlite", 1_000_000): 1, ("user_thread", "postgresql", 1_000_000): 2,
    ("cluster_lookup", "sqlite", 10_000): 0.5, ("cluster_lookup", "postgresql", 10_000): 1,
    ("cluster_lookup", "sqlite", 1_000_000): 1, ("cluster_lookup", "postgresql", 1_000_000): 2,
}  # fmt: skip
TARGET_RATE = {
    ("single_insert", "sqlite"): 2000, ("single_insert", "postgresql"): 1500,
    ("bulk_insert", "sqlite"): 50_000, ("bulk_insert", "postgresql"): 20_000,
}  # fmt: skip
PEAK_RSS_TARGET_MB = 200
# Estimates made before anything was measured (10,000 memories): (PostgreSQL, SQLite).
SEED_CLAIMS_MS = {
    "filter_user": (8, 150),
    "user_thread": (5, 45),
    "tier_updated": (12, 200),
    "cluster_lookup": (2, 25),
}


def _verdict(value: float, target: float | None, higher_is_better: bool = False) -> str:
    if target is None:
        return ""
    met = value >= target if higher_is_better else value <= target
    return "ok" if met else "MISS"


def _query_lines(result: dict) -> list[str]:
    header = f"{'query':38} {'min ms':>9} {'median':>9} {'p95':>9} {'n':>5}  target"
    lines = [header, "-" * len(header)]
    for query in q.QUERIES:
        stats = result.get("queries", {}).get(query.name)
        if stats is None:
            continue
        target = TARGET_MS.get((query.name, result["dialect"], result["rows"]))
        goal = f"<= {target} ms {_verdict(stats['median'], target)}" if target is not None else ""
        lines.append(
            f"{query.label:38} {stats['min']:9.3f} {stats['median']:9.3f} {stats['p95']:9.3f} "
            f"{stats['n']:5d}  {goal}"
        )
    return lines


def _rate_line(label: str, measure: str, result: dict) -> str:
    stats = result.get(measure)
    if not stats:
        return f"{label:38} n/a"
    target = TARGET_RATE.get((measure.replace("load", "bulk_insert"), result["dialect"]))
    goal = f">= {target:,}/s {_verdict(stats['rows_per_s'], target, True)}" if target else ""
    return f"{label:38} {stats['rows_per_s']:12,.0f} rows/s ({stats['rows']:,} rows)  {goal}"


def _other_lines(result: dict) -> list[str]:
    lines = [
        _rate_line("single-row insert", "single_insert", result),
        _rate_line("bulk insert", "load", result),
    ]
    if "clusters" in result:
        c = result["clusters"]
        lines.append(f"{'upsert_cluster':38} {c['per_s']:12,.0f} clusters/s ({c['clusters']:,} clusters)")
    migrate = result.get("migrate_upgrade", {})
    text = migrate.get("skipped") or f"{migrate['seconds']:.3f} s (now at {migrate['head']})"
    lines.append(f"{'migrate upgrade (from empty)':38} {text}")
    s = result["sizes"]
    lines.append(
        f"{'size: table / +indexes / overhead':38} {_mb(s['table_bytes'])} / {_mb(s['with_indexes_bytes'])}"
        f" / +{s['index_overhead_pct']}%"
    )
    keys = s["indexes"].get(METADATA_KEYS_TABLE)
    if keys is not None:
        lines.append(f"{'size: metadata keys (SQLite index)':38} {_mb(keys)}")
    if "load_peak_rss_mb" in result:
        lines.append(
            f"{'peak RSS, load phase':38} {result['load_peak_rss_mb']:.0f} MB"
            f" (after open: {result['load_rss_before_mb']:.0f})"
        )
    rss = result["peak_rss_mb"]
    rss_goal = ""
    if result["dialect"] == "sqlite" and result["rows"] >= 1_000_000:
        rss_goal = f"  <= {PEAK_RSS_TARGET_MB} MB {_verdict(rss, PEAK_RSS_TARGET_MB)}"
    lines.append(
        f"{'peak RSS, query phase':38} {rss:.0f} MB (after open: {result['rss_before_mb']:.0f})" + rss_goal
    )
    return lines


def _ahead(mine: float | None, theirs: float | None, higher_is_better: bool) -> str:
    """How many times better memoric's figure is than the peer's (below 1: the peer is ahead)."""
    if not mine or not theirs:
        return ""
    return f"{(mine / theirs if higher_is_better else theirs / mine):7.2f}x"


def _peer_lines(result: dict) -> list[str]:
    """memoric beside each peer: every query both can ask, the insert rates and both peak RSS."""
    lines = []
    for name, peer in result.get("peers", {}).items():
        header = f"{'queries: median ms':38} {'memoric':>12} {name:>12} {'ahead':>8}"
        lines += ["", f"memoric beside {peer['label']}, in the same run:", header, "-" * len(header)]
        for query in q.QUERIES:
            theirs = peer["queries"].get(query.name)
            mine = result.get("queries", {}).get(query.name)
            if theirs and mine:
                mine, theirs = mine["median"], theirs["median"]
                ahead = _ahead(mine, theirs, False)
                lines.append(f"{query.label:38} {mine:12.3f} {theirs:12.3f} {ahead}")
        for label, pick, form, higher in PEER_MEASURES:
            mine, theirs = pick(result), pick(peer)
            cells = " ".join(f"{'-':>12}" if v is None else form.format(v) for v in (mine, theirs))
            lines.append(f"{label:38} {cells} {_ahead(mine, theirs, higher)}")
        lines.append("ahead: how many times faster (or smaller) memoric's figure is than the peer's")
        lines.extend(f"note: {name}: {note}" for note in peer.get("notes", []))
    return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _plan_lines(result: dict) -> list[str]:
    lines = []
    for name, plan in result.get("plans", {}).items():
        lines.append(f"EXPLAIN {name}:")
        lines.extend(f"    {step}" for step in plan["plan"])
    lines.append(f"index check: {index_check(result)}")
    return lines


# What the plans of the no-match filters show when their dialect's metadata index serves them,
# in a step that ran (on Citus, in the plan of a shard, whose index names end in the shard's
# number): everyone's values, then one user's.
INDEX_STEPS = {
    "filter_no_match": {
        "postgresql": "Bitmap Index Scan on idx_memories_metadata_gin",
        "citus": "Bitmap Index Scan on idx_memories_metadata_gin",
        "sqlite": "USING PRIMARY KEY (name=? AND value=?",  # the keys table, aliased in the query
    },
    "filter_no_match_user": {
        "postgresql": "Bitmap Index Scan on idx_memories_user_metadata_gin",
        "citus": "Bitmap Index Scan on idx_memories_user_metadata_gin",
        "sqlite": "USING PRIMARY KEY (name=? AND value=? AND user_id=?",
    },
}


def index_served(result: dict, query: str = "filter_no_match") -> bool:
    """Whether a no-match containment filter was served by the dialect's metadata index."""
    plan = result.get("plans", {}).get(query, {}).get("plan", [])
    step = INDEX_STEPS[query][result["dialect"]]
    return any(step in line and "never executed" not in line for line in plan)


def index_check(result: dict) -> str:
    """One line per no-match filter: whether its dialect's metadata index served it."""
    checks = []
    for query, steps in INDEX_STEPS.items():
        verdict = "served by" if index_served(result, query) else "NOT served by"
        checks.append(f"{query} {verdict} {steps[result['dialect']]}")
    return "; ".join(checks)


def run_text(result: dict) -> str:
    """One (dialect, rows) run: timings, rates, sizes, RSS, plans and notes."""
    title = f"== {result['dialect']} {result.get('engine_version', '')}, {result['rows']:,} rows =="
    parts = [title, *_query_lines(result), "", *_other_lines(result), *_peer_lines(result)]
    parts += ["", *_plan_lines(result)]
    parts.extend(f"note: {note}" for note in result.get("notes", []))
    return "\n".join(parts) + "\n"


def summary_text(output: dict) -> str:
    """Every run side by side (medians, rates, sizes, RSS), with the early estimates for 10,000 rows."""
    runs = output["runs"]
    heads = [f"{r['dialect'][:6]} {_short(r['rows'])}" for r in runs]
    header = f"{'median ms':38} " + " ".join(f"{h:>12}" for h in heads) + f" {'seed PG/SQLite':>16}"
    lines = [header, "-" * len(header)]
    for query in q.QUERIES:
        cells = [r.get("queries", {}).get(query.name) for r in runs]
        if any(cells):
            claim = SEED_CLAIMS_MS.get(query.name)
            claim_text = f"{claim[0]} / {claim[1]}" if claim else ""
            lines.append(_row(query.label, [c and c["median"] for c in cells], "{:12.3f}", claim_text))
            lines.extend(_peer_rows(runs, _get("queries", query.name, "median"), "{:12.3f}"))
    for label, pick, form, claim in SUMMARY_EXTRAS:
        lines.append(_row(label, [pick(r) for r in runs], form, claim))
        if label in PEER_PICKS:
            lines.extend(_peer_rows(runs, PEER_PICKS[label], form))
    m = output["machine"]
    lines.append(f"machine: {m['cpus']} cpus, Python {m['python']}, peewee {m['peewee']}, {m['date']}")
    return "\n".join(lines)


def _peer_rows(runs: list[dict], pick, form: str) -> list[str]:
    """One row per peer under memoric's: the peer's figure in each run, where it has one."""
    names = sorted({name for r in runs for name in r.get("peers", {})})
    rows = []
    for name in names:
        values = [pick(r["peers"][name]) if name in r.get("peers", {}) else None for r in runs]
        if any(v is not None for v in values):
            rows.append(_row(f"  {peers.LABEL if name == peers.NAME else name}", values, form, ""))
    return rows


def _row(label: str, values: list, form: str, claim: str) -> str:
    cells = " ".join(f"{'-':>12}" if v is None else form.format(v) for v in values)
    return f"{label:38} {cells} {claim:>16}"


def _get(*keys):
    def pick(result: dict):
        for key in keys:
            if not isinstance(result, dict) or key not in result:
                return None
            result = result[key]
        return result

    return pick


SUMMARY_EXTRAS = (
    ("single-row insert, rows/s", _get("single_insert", "rows_per_s"), "{:12,.0f}", ""),
    ("bulk insert, rows/s", _get("load", "rows_per_s"), "{:12,.0f}", ""),
    ("migrate upgrade from empty, s", _get("migrate_upgrade", "seconds"), "{:12.3f}", "2.5 / 1.8"),
    ("table (no indexes), MB", lambda r: r["sizes"]["table_bytes"] / 1e6, "{:12.1f}", ""),
    ("table + indexes, MB", lambda r: r["sizes"]["with_indexes_bytes"] / 1e6, "{:12.1f}", ""),
    ("index overhead, %", _get("sizes", "index_overhead_pct"), "{:12.1f}", "87 / 50"),
    ("peak RSS of the load phase, MB", _get("load_peak_rss_mb"), "{:12.0f}", ""),
    ("peak RSS of the query phase, MB", _get("peak_rss_mb"), "{:12.0f}", ""),
)
# What a peer is compared on besides the queries: (label, pick, format, higher is better).
PEER_MEASURES = (
    ("single-row insert, rows/s", _get("single_insert", "rows_per_s"), "{:12,.0f}", True),
    ("bulk insert, rows/s", _get("load", "rows_per_s"), "{:12,.0f}", True),
    ("peak RSS of the load phase, MB", _get("load_peak_rss_mb"), "{:12.0f}", False),
    ("peak RSS of the query phase, MB", _get("peak_rss_mb"), "{:12.0f}", False),
)
PEER_PICKS = {label: pick for label, pick, _, _ in PEER_MEASURES}


def main(argv: list[str]) -> int:
    """Print the summary of saved `--json` outputs together: `python -m benchmarks.report A.json ...`;
    a file that cannot be read is one line on stderr and exit status 1."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    parser.add_argument("paths", nargs="+", metavar="RESULTS.json", help="files saved by bench --save")
    paths = parser.parse_args(argv).paths
    try:
        outputs = [json.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
        merged = {"machine": outputs[0]["machine"], "runs": [run for out in outputs for run in out["runs"]]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"Error: cannot read the results ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    print(summary_text(merged))
    return 0


def _short(rows: int) -> str:
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1000 and rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
