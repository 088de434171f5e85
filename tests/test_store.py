"""MemoryStore: every method, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from memoric.db.models import UTC
from memoric.db.store import DEFAULT_TIERS

pytestmark = pytest.mark.citus  # also on a Citus cluster


T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> dt.datetime:
    return dt.datetime.now(UTC) - dt.timedelta(days=days)


def add(db, content="a memory", **fields):
    return db.insert_memory(user_id=fields.pop("user_id", "ada"), content=content, **fields)


def test_insert_and_get_round_trip_every_field(db):
    memory_id = add(
        db,
        "Prefers email over phone",
        thread_id="t1",
        namespace="support",
        tier="mid_term",
        score=80,
        metadata={"topic": "contact", "nested": {"list": [1, 2.5, None, True, "x"]}},
        related_threads=["t2", "t3"],
    )
    memory = db.get_memory(memory_id)
    assert memory["id"] == memory_id
    assert memory["user_id"] == "ada"
    assert memory["namespace"] == "support"
    assert memory["thread_id"] == "t1"
    assert memory["content"] == "Prefers email over phone"
    assert memory["tier"] == "mid_term"
    assert memory["score"] == 80
    assert memory["metadata"] == {"topic": "contact", "nested": {"list": [1, 2.5, None, True, "x"]}}
    assert memory["related_threads"] == ["t2", "t3"]
    assert memory["summarized"] is False
    assert memory["created_at"].tzinfo is not None
    assert memory["created_at"].utcoffset() == dt.timedelta(0)
    assert memory["created_at"] == memory["updated_at"]


def test_defaults_fill_tier_score_metadata_and_threads(db):
    memory = db.get_memory(add(db))
    assert memory["tier"] == DEFAULT_TIERS[0]
    assert memory["score"] == 50
    assert memory["metadata"] == {}
    assert memory["related_threads"] == []
    assert memory["namespace"] is None and memory["thread_id"] is None


def test_metadata_types_survive_exactly(db):
    metadata = {
        "int": 1,
        "float": 1.0,
        "big": 2**62,
        "bool": True,
        "null": None,
        "text": "1",
        "uni": "żółw 🐢",
    }
    stored = db.get_memory(add(db, metadata=metadata))["metadata"]
    assert stored == metadata
    assert [type(stored[key]) for key in metadata] == [type(value) for value in metadata.values()]


def test_get_memory_of_unknown_id_is_none(db):
    assert db.get_memory(12345) is None


def test_insert_memories_counts_rows_and_keeps_order_of_ids(db):
    rows = [{"user_id": "ada", "content": f"note {i}", "thread_id": f"t{i % 3}"} for i in range(2500)]
    assert db.insert_memories(rows, batch_size=1000) == 2500
    assert db.count_memories() == 2500
    assert db.count_memories(thread_id="t0") == 834


def test_insert_memories_accepts_explicit_ids_and_timestamps(db):
    rows = [
        {
            "id": 40,
            "user_id": "ada",
            "content": "old",
            "created_at": T0,
            "updated_at": T0,
            "summarized": True,
        },
        {"user_id": "ada", "content": "new"},
    ]
    assert db.insert_memories(rows) == 2
    old = db.get_memory(40)
    assert (old["created_at"], old["updated_at"], old["summarized"]) == (T0, T0, True)
    assert db.insert_memory(user_id="ada", content="after") > 40


def test_get_memories_newest_first_with_id_tiebreak(db):
    same_time = [{"user_id": "ada", "content": f"n{i}", "created_at": T0} for i in range(3)]
    db.insert_memories(same_time)
    newest = add(db, "later", created_at=T0 + dt.timedelta(seconds=1))
    ids = [m["id"] for m in db.get_memories(user_id="ada")]
    assert ids == [newest, 3, 2, 1]


def test_get_memories_filters_combine_with_and(db):
    add(db, "a", user_id="ada", thread_id="t1", tier="short_term", metadata={"topic": "x"})
    add(db, "b", user_id="ada", thread_id="t1", tier="mid_term", metadata={"topic": "x"})
    add(db, "c", user_id="ada", thread_id="t2", tier="short_term", metadata={"topic": "y"})
    add(db, "d", user_id="bob", thread_id="t1", tier="short_term", metadata={"topic": "x"})
    add(db, "e", user_id="ada", namespace="ns", thread_id="t1", metadata={"topic": "x"})

    def contents(**filters):
        return sorted(m["content"] for m in db.get_memories(**filters))

    assert contents(user_id="ada") == ["a", "b", "c", "e"]
    assert contents(user_id="ada", thread_id="t1") == ["a", "b", "e"]
    assert contents(user_id="ada", thread_id="t1", tier="short_term") == ["a", "e"]
    assert contents(user_id="ada", where_metadata={"topic": "x"}) == ["a", "b", "e"]
    assert contents(namespace="ns") == ["e"]
    assert contents(where_metadata={}) == ["a", "b", "c", "d", "e"]
    assert db.count_memories(user_id="ada", where_metadata={"topic": "x"}, tier="mid_term") == 1


def test_limit_none_returns_all_and_offset_pages(db):
    db.insert_memories([{"user_id": "ada", "content": f"n{i}"} for i in range(120)])
    assert len(db.get_memories(limit=None)) == 120
    assert len(db.get_memories()) == 50
    page_one = [m["id"] for m in db.get_memories(limit=50)]
    page_two = [m["id"] for m in db.get_memories(limit=50, offset=50)]
    assert not set(page_one) & set(page_two)
    assert page_one + page_two == [m["id"] for m in db.get_memories(limit=100)]


def test_summarized_filter(db):
    kept, hidden = add(db, "kept"), add(db, "hidden")
    assert db.mark_summarized(memory_ids=[hidden]) == 1
    assert [m["id"] for m in db.get_memories(summarized=False)] == [kept]
    assert [m["id"] for m in db.get_memories(summarized=True)] == [hidden]


def test_related_threads_any_of_matches_own_or_related_thread(db):
    own = add(db, thread_id="t1")
    related = add(db, thread_id="t9", related_threads=["t1", "t5"])
    add(db, thread_id="t2", related_threads=["t3"])
    add(db, thread_id=None)
    assert {m["id"] for m in db.get_memories(related_threads_any_of=["t1"])} == {own, related}
    assert {m["id"] for m in db.get_memories(related_threads_any_of=["t5"])} == {related}
    assert db.get_memories(related_threads_any_of=[]) == []
    assert db.count_memories(related_threads_any_of=["nope"]) == 0


def test_link_threads_by_topic_is_sorted_distinct_and_per_user(db):
    add(db, thread_id="b", metadata={"topic": "billing"})
    add(db, thread_id="a", metadata={"topic": "billing"})
    add(db, thread_id="a", metadata={"topic": "billing"})
    add(db, thread_id="c", metadata={"topic": "other"})
    add(db, thread_id=None, metadata={"topic": "billing"})
    add(db, user_id="bob", thread_id="z", metadata={"topic": "billing"})
    assert db.link_threads_by_topic("ada", "billing") == ["a", "b"]
    assert db.link_threads_by_topic("ada", "nothing") == []


def test_distinct_threads_and_count_by_tier(db):
    add(db, thread_id="t2", tier="mid_term")
    add(db, thread_id="t1")
    add(db, thread_id="t1")
    add(db, user_id="bob", thread_id="t3", tier="long_term")
    assert db.distinct_threads() == ["t1", "t2", "t3"]
    assert db.distinct_threads(user_id="ada", tier="short_term") == ["t1"]
    assert db.distinct_threads(limit=2) == ["t1", "t2"]
    assert db.count_by_tier() == {"short_term": 2, "mid_term": 1, "long_term": 1}
    assert db.count_by_tier(user_id="bob") == {"short_term": 0, "mid_term": 0, "long_term": 1}


def test_find_older_than_is_oldest_first(db):
    ten = add(db, "ten days", updated_at=days_ago(10))
    forty = add(db, "forty days", updated_at=days_ago(40))
    add(db, "fresh")
    add(db, "other tier", tier="mid_term", updated_at=days_ago(50))
    found = db.find_older_than(days=7, from_tier="short_term")
    assert [m["id"] for m in found] == [forty, ten]
    assert [m["id"] for m in db.find_older_than(days=7, from_tier="short_term", limit=1)] == [forty]
    assert db.find_older_than(days=45, from_tier="short_term") == []


def test_updates_change_one_thing_and_touch_updated_at(db):
    memory_id = add(db, "old", created_at=T0)
    assert db.update_tier(memory_ids=[memory_id], new_tier="long_term") == 1
    assert db.update_content(memory_id=memory_id, new_content="new") == 1
    assert db.update_metadata(memory_id=memory_id, new_metadata={"k": [1]}) == 1
    assert db.set_related_threads(memory_id=memory_id, related_threads=["t7"]) == 1
    memory = db.get_memory(memory_id)
    assert (memory["tier"], memory["content"], memory["metadata"]) == ("long_term", "new", {"k": [1]})
    assert memory["related_threads"] == ["t7"]
    assert memory["created_at"] == T0 and memory["updated_at"] > T0


def test_updates_on_missing_ids_change_nothing(db):
    assert db.update_tier(memory_ids=[], new_tier="mid_term") == 0
    assert db.update_tier(memory_ids=[999], new_tier="mid_term") == 0
    assert db.update_content(memory_id=999, new_content="x") == 0
    assert db.delete_memories(memory_ids=[999]) == 0


def test_delete_memories_in_chunks(db):
    db.insert_memories([{"user_id": "ada", "content": f"n{i}"} for i in range(12000)])
    assert db.delete_memories(memory_ids=list(range(1, 11001))) == 11000
    assert db.count_memories() == 1000


def memories_of(db, user_id: str, count: int) -> list[int]:
    """The ids of `count` new memories of `user_id` (a cluster lists only its user's memories)."""
    return [db.insert_memory(user_id=user_id, content=f"{user_id} {n}") for n in range(count)]


def test_upsert_cluster_replaces_the_same_key(db):
    ada, bob = memories_of(db, "ada", 4), memories_of(db, "bob", 2)
    first = db.upsert_cluster(
        user_id="ada", topic="billing", category="general", memory_ids=ada[2::-1] + ada[2:3]
    )
    second = db.upsert_cluster(
        user_id="ada", topic="billing", category="general", memory_ids=[ada[3]], summary="s"
    )
    other = db.upsert_cluster(user_id="bob", topic="billing", category="general", memory_ids=bob)
    assert first == second != other
    clusters = db.get_clusters()
    assert [(c["user_id"], c["memory_ids"], c["memory_count"]) for c in clusters] == [
        ("bob", bob, 2),
        ("ada", [ada[3]], 1),
    ]
    ada = db.get_clusters(user_id="ada")[0]
    assert ada["summary"] == "s"
    assert ada["created_at"] <= ada["updated_at"] == ada["last_built_at"]


def test_get_clusters_filters_and_delete(db):
    ada = memories_of(db, "ada", 4)
    keep = db.upsert_cluster(user_id="ada", topic="a", category="x", memory_ids=ada[:3])
    gone = db.upsert_cluster(user_id="ada", topic="b", category="y", memory_ids=ada[3:])
    assert [c["cluster_id"] for c in db.get_clusters(topic="a")] == [keep]
    assert [c["cluster_id"] for c in db.get_clusters(category="y")] == [gone]
    assert [c["cluster_id"] for c in db.get_clusters(limit=1)] == [keep]
    assert db.delete_cluster(cluster_id=gone) == 1
    assert db.delete_cluster(cluster_id=gone) == 0
    assert [c["cluster_id"] for c in db.get_clusters()] == [keep]


def test_concurrent_upserts_of_the_same_keys_leave_one_row_per_key(db):
    ada = memories_of(db, "ada", 20)
    errors = []

    def upsert_many(worker):
        try:
            for round_ in range(20):
                db.upsert_cluster(
                    user_id="ada",
                    topic=f"topic{round_ % 2}",
                    category="general",
                    memory_ids=[ada[worker], ada[round_]],
                )
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            db.close()

    workers = [threading.Thread(target=upsert_many, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert sorted(c["topic"] for c in db.get_clusters()) == ["topic0", "topic1"]


def test_driver_errors_are_wrapped_in_memoric_error(db):
    from memoric.errors import MemoricError

    db.drop_schema()
    try:
        with pytest.raises(MemoricError, match="get_memories failed") as raised:
            db.get_memories()
        assert raised.value.__cause__ is not None
    finally:
        db.create_schema()
