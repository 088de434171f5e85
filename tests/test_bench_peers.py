"""The benchmark's peer, LangGraph's stores: its queries ask what memoric's ask, and a run compares both.

The peer tests need the `bench` extra (`pip install '.[bench]'`) and skip without it; the tests of
a run without LangGraph hide it from a child interpreter, so they run everywhere. No timings are
asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench, peers, queries, report, workload

ROWS = 500
SEED = 11
ITERATIONS = range(20)
BY_NAME = {query.name: query for query in queries.QUERIES}
CHECKOUT = Path(__file__).resolve().parents[1]
# The benchmark in a child interpreter where `import langgraph` fails, as where it is not installed.
WITHOUT_LANGGRAPH = (
    "import sys; sys.modules['langgraph'] = None; "
    "from benchmarks.bench import main; sys.exit(main(sys.argv[1:]))"
)

needs_langgraph = pytest.mark.skipif(peers.missing() is not None, reason=str(peers.missing()))


def _run_args(dialect: str, request, *extra: str) -> list[str]:
    args = ["--rows", "300", "--dialect", dialect, "--quick", "--json", *extra]
    if dialect == "postgresql":
        args += ["--postgres-url", request.getfixturevalue("postgres_server_url")]
    return args


@pytest.fixture
def peer_store(new_dsn):
    """A LangGraph store holding the workload, and the rows by their ids (the items' keys)."""
    with peers.open_store(new_dsn()) as store:
        peers.load(store, ROWS, SEED)
        rows = [row for chunk in workload.generate(ROWS, SEED) for row in chunk]
        yield store, dict(enumerate(rows, start=1))


@needs_langgraph
def test_every_peer_query_asks_what_memorics_asks(peer_store):
    store, by_id = peer_store
    for name, run in peers.QUERIES.items():
        query = BY_NAME[name]
        answered = False
        for i in ITERATIONS:
            ids = peers.result_ids(run(store, i))
            keeps = query.keeps(i)
            matching = sum(1 for row in by_id.values() if keeps(row))
            assert len(ids) == len(set(ids)) == min(query.limit, matching), f"{name}, iteration {i}"
            assert all(keeps(by_id[memory_id]) for memory_id in ids), f"{name}, iteration {i}"
            answered = answered or bool(ids)
        assert answered or name.startswith("filter_no_match"), f"{name} never returned anything"


@needs_langgraph
def test_peer_items_carry_the_memory_and_its_metadata(peer_store):
    store, by_id = peer_store
    row = by_id[7]
    item = store.get(peers.namespace_of(row), "7")
    assert item.value == peers.value_of(row)
    assert item.value["topic"] == row["metadata"]["topic"] and item.value["content"] == row["content"]


@needs_langgraph
def test_quick_run_puts_memoric_beside_langgraph(dialect, request, capsys):
    assert bench.main(_run_args(dialect, request, "--peers", peers.NAME)) == 0
    output = json.loads(capsys.readouterr().out)
    (run,) = output["runs"]
    peer = run["peers"][peers.NAME]
    assert set(peer["queries"]) == set(peers.QUERIES) and set(peers.QUERIES) <= set(run["queries"])
    assert peer["load"]["rows"] == 300 and peer["load"]["rows_per_s"] > 0
    assert peer["single_insert"]["rows_per_s"] > 0
    for phase in (run, peer):
        assert phase["load_peak_rss_mb"] >= phase["load_rss_before_mb"] > 0
        assert phase["peak_rss_mb"] >= phase["rss_before_mb"] > 0
    text = report.run_text(run)
    assert f"memoric beside {peer['label']}" in text
    assert all(BY_NAME[name].label in text for name in peers.QUERIES)
    assert f"  {peers.LABEL}" in report.summary_text(output)


def test_without_langgraph_memoric_runs_alone_and_says_how_to_install(dialect, request):
    args = _run_args(dialect, request)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_LANGGRAPH, *args], cwd=CHECKOUT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("peers:")]
    assert len(said) == 1 and peers.INSTALL_HINT in said[0], done.stderr
    (run,) = json.loads(done.stdout)["runs"]
    assert "peers" not in run
    assert run["load_peak_rss_mb"] >= run["load_rss_before_mb"] > 0


def test_asking_for_langgraph_without_it_is_a_usage_error():
    args = ["--rows", "300", "--dialect", "sqlite", "--peers", peers.NAME]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_LANGGRAPH, *args], cwd=CHECKOUT, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr
    assert f"--peers {peers.NAME}:" in done.stderr and peers.INSTALL_HINT in done.stderr
