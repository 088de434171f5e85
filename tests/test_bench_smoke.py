"""The benchmark's workload and every query it times, once at 500 rows per dialect, against Python.

No timings are asserted: this proves the benchmark measures queries that return the right rows,
and that `python -m benchmarks.bench --quick` runs end to end.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import bench, queries, report, workload
from memoric.db.rows import MEMORY_COLUMNS

ROWS = 500
SEED = 7
ITERATIONS = range(20)
BY_NAME = {query.name: query for query in queries.QUERIES}


@pytest.fixture
def loaded(new_dsn):
    """A database holding the workload and its clusters, and the rows with their ids."""
    dsn = new_dsn()
    store = bench.create_schema(dsn)
    _, collector = bench.load(store, ROWS, SEED)
    bench.create_clusters(store, collector)
    rows = [row for chunk in workload.generate(ROWS, SEED) for row in chunk]
    for number, row in enumerate(rows, start=1):
        row["id"] = number
    yield store, dsn, rows
    store.close()


def test_workload_is_deterministic_and_shaped_as_specified():
    first = [row for chunk in workload.generate(ROWS, SEED, chunk_size=64) for row in chunk]
    again = [row for chunk in workload.generate(ROWS, SEED) for row in chunk]
    assert first == again and len(first) == ROWS
    assert [row["created_at"] for row in first] == sorted(row["created_at"] for row in first)
    assert all(20 <= len(row["content"]) <= 250 or row["content"] == "memory" for row in first)
    assert {row["tier"] for row in first} == {"short_term", "mid_term", "long_term"}
    tags = [row["metadata"]["tags"] for row in first]
    assert all(len(set(pair)) == 2 and set(pair) <= set(workload.TAGS) for pair in tags)
    assert all(row["updated_at"] >= row["created_at"] for row in first)


@pytest.mark.parametrize("name", [query.name for query in queries.QUERIES if query.reference])
def test_query_matches_the_python_reference(loaded, name):
    store, _, rows = loaded
    query = BY_NAME[name]
    answers = []
    for i in ITERATIONS:
        result = query.run(store, i)
        assert queries.result_ids(query, result) == query.reference(rows, i), f"{name}, iteration {i}"
        answers.append(result)
    if not name.startswith("filter_no_match"):
        assert any(answers), f"{name} never returned anything: the check would prove nothing"
    if name != "cluster_lookup":
        assert all(tuple(memory) == MEMORY_COLUMNS for result in answers for memory in result)


def test_recall_returns_the_threads_top_memories(loaded):
    _, dsn, rows = loaded
    memoric = bench.memoric_for(dsn)
    if memoric is None:
        pytest.skip("Memoric.retrieve does not exist yet")
    for i in ITERATIONS:
        result = queries.recall(memoric, i)
        thread = queries.thread_for(i)
        expected = sum(1 for row in rows if row["thread_id"] == thread)
        assert len(result) == min(queries.RECALL_TOP_K, expected)
        assert all(memory["thread_id"] == thread for memory in result)
        scores = [memory["_score"] for memory in result]
        assert scores == sorted(scores, reverse=True)
    memoric.close()


def test_quick_run_reports_every_query(dialect, request, capsys, tmp_path):
    saved = tmp_path / "results.json"
    args = ["--rows", "300", "--dialect", dialect, "--quick", "--json", "--save", str(saved)]
    if dialect == "postgresql":
        args += ["--postgres-url", request.getfixturevalue("postgres_server_url")]
    assert bench.main(args) == 0
    output = json.loads(capsys.readouterr().out)
    assert json.loads(saved.read_text()) == output
    (run,) = output["runs"]
    expected = {query.name for query in queries.QUERIES}
    assert set(run["queries"]) | {note.split(":")[0] for note in run["notes"]} >= expected
    assert run["load"]["rows"] == 300 and run["single_insert"]["rows_per_s"] > 0
    assert run["load_peak_rss_mb"] >= run["load_rss_before_mb"] > 0
    assert run["sizes"]["table_bytes"] > 0 and run["sizes"]["index_bytes"] > 0
    if dialect == "sqlite":  # PostgreSQL's planner reads 300 rows without its GIN indexes
        assert report.index_served(run, "filter_no_match"), report.index_check(run)
        assert report.index_served(run, "filter_no_match_user"), report.index_check(run)
    assert report.main([str(saved)]) == 0
    assert "metadata filter, one user" in capsys.readouterr().out


def test_the_report_of_a_file_it_cannot_read_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"runs": []}', encoding="utf-8")
    for path in (tmp_path / "missing.json", broken):
        assert report.main([str(path)]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("Error: cannot read the results")


def test_a_phase_reports_its_own_peak_memory_not_its_parents():
    """A phase runs in a spawned interpreter; its peak RSS must not start at the parent's."""
    ballast = b"x" * (300 * 2**20)  # the parent: over 300 MB resident
    child_peak = bench.isolated(bench._rss_mb)
    assert bench._rss_mb() > 300 > child_peak
    del ballast
