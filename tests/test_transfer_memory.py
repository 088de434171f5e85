"""An import keeps what its check remembers on disk: its memory does not grow with the rows."""

from __future__ import annotations

import tracemalloc

import pytest

from memoric.db.store import MemoryStore
from memoric.transfer import check_jsonl, compare_with_target, comparing, scratch
from tests.helpers.transfer_data import cluster_line, dump_lines, memory_line

# Rows the check holds before writing them to its temporary file, and compares with the target
# at a time: made small, so that a small file shows what a large one would.
ROWS_BUFFERED = 100


def export_file(tmp_path, clusters: int):
    """An export of one memory of ada's and `clusters` clusters of hers listing it."""
    listed = [cluster_line(c, topic=f"topic {c}") for c in range(1, clusters + 1)]
    path = tmp_path / f"export-{clusters}.jsonl"
    path.write_text(dump_lines([memory_line(1), *listed]), encoding="utf-8")
    return path


def peak_of_checking(store: MemoryStore, path) -> int:
    """The most memory Python held (bytes, above what it held before) while the file was checked
    and compared with the target, the passes that run before anything is written."""
    with path.open(encoding="utf-8") as lines:
        tracemalloc.start()
        try:
            plan = check_jsonl(store, lines)
            compare_with_target(store, plan)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert plan.counts["cluster"] == int(path.stem.split("-")[1])
    return peak


@pytest.fixture
def small_buffers(monkeypatch):
    monkeypatch.setattr(scratch, "FLUSH_ROWS", ROWS_BUFFERED)
    monkeypatch.setattr(comparing, "BATCH_SIZE", ROWS_BUFFERED)


def test_four_times_the_clusters_take_no_more_memory_to_check(store, tmp_path, small_buffers):
    store.create_schema()
    few = peak_of_checking(store, export_file(tmp_path, 400))
    many = peak_of_checking(store, export_file(tmp_path, 1600))
    assert many < 1.5 * few, (few, many)
