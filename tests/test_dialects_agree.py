"""The same calls on SQLite and PostgreSQL return the same dicts."""

from __future__ import annotations

import datetime as dt

import pytest

from memoric.db.dialects import DIALECTS, Dialect
from memoric.db.models import UTC
from memoric.db.store import MemoryStore
from tests.helpers.dialects import selected_dialects

START = dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


class SteppingClock:
    """A clock that moves one second per reading: the same timestamps on every run."""

    def __init__(self):
        self.now = START

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


def exercise(store: MemoryStore) -> list:
    """A script of store calls; returns everything they returned."""
    results = []
    for i in range(40):
        results.append(
            store.insert_memory(
                user_id=f"user{i % 3}",
                thread_id=f"t{i % 4}",
                namespace="ns" if i % 5 == 0 else None,
                tier=store.tiers[i % 3],
                score=i * 2,
                content=f"memory number {i} ✓",
                metadata={
                    "topic": f"topic{i % 2}",
                    "n": i % 3,
                    "ratio": i / 4,
                    "tags": [f"g{i % 3}"],
                    "ok": i % 2 == 0,
                },
                related_threads=[f"t{(i + 1) % 4}"] if i % 3 == 0 else [],
            )
        )
    results.append(
        store.insert_memories(
            [{"user_id": "bulk", "content": f"b{i}", "metadata": {"i": i}} for i in range(7)]
        )
    )
    results.append(store.update_tier(memory_ids=[1, 2, 3], new_tier="long_term"))
    results.append(store.mark_summarized(memory_ids=[4, 5]))
    results.append(store.update_content(memory_id=6, new_content="changed"))
    results.append(store.update_metadata(memory_id=7, new_metadata={"topic": "topic9", "deep": {"x": [1.5]}}))
    results.append(store.set_related_threads(memory_id=8, related_threads=["t3", "t9"]))
    results.append(store.delete_memories(memory_ids=[9, 10]))
    for filters in (
        {},
        {"user_id": "user1"},
        {"user_id": "user1", "thread_id": "t1"},
        {"tier": "long_term"},
        {"namespace": "ns"},
        {"where_metadata": {"topic": "topic1", "n": 1.0}},
        {"where_metadata": {"tags": ["g2"]}, "summarized": False},
        {"where_metadata": {"ratio": 2.5}},
        {"where_metadata": {"ok": True}, "limit": 3, "offset": 2},
        {"related_threads_any_of": ["t9", "t1"]},
        {"limit": None},
    ):
        results.append(store.get_memories(**filters))
        results.append(
            store.count_memories(**{k: v for k, v in filters.items() if k not in ("limit", "offset")})
        )
    results.append(store.get_memory(7))
    results.append(store.link_threads_by_topic("user1", "topic1"))
    results.append(store.distinct_threads(user_id="user2"))
    results.append(store.count_by_tier())
    results.append(store.find_older_than(days=0, limit=5))
    results.append(
        store.upsert_cluster(user_id="user1", topic="topic1", category="general", memory_ids=[5, 2, 11])
    )
    results.append(store.upsert_cluster(user_id="user2", topic="topic0", category="x", memory_ids=[12, 3]))
    results.append(store.get_clusters())
    results.append(store.delete_cluster(cluster_id=2))
    return results


@pytest.mark.skipif(len(selected_dialects()) < 2, reason="compares two dialects; only one selected")
def test_every_call_returns_the_same_on_both_dialects(stores):
    outputs = {}
    for dialect, store in stores.items():
        store.truncate()
        store.clock = SteppingClock()
        outputs[dialect] = exercise(store)
    sqlite, postgres = outputs["sqlite"], outputs["postgresql"]
    assert len(sqlite) == len(postgres)
    for index, (left, right) in enumerate(zip(sqlite, postgres, strict=True)):
        assert left == right, f"result {index} differs"


def test_the_dialects_share_one_declared_interface():
    """Each dialect implements every method `Dialect` declares, and has no public method of its own."""
    declared = {*Dialect.__abstractmethods__, "name", "window_first"}
    for name, dialect in DIALECTS.items():
        assert not type(dialect).__abstractmethods__
        assert {member for member in dir(dialect) if not member.startswith("_")} == declared
        assert dialect == name and str(dialect) == name and hash(dialect) == hash(name)
