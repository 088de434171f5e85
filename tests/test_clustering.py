"""Topic clusters on both dialects: grouping, min_size, stale removal, idempotence, concurrency."""

from __future__ import annotations

import threading

import pytest

from memoric.clustering import GENERAL, cluster_key, describe, rebuild_clusters
from memoric.errors import ValidationError
from memoric.policies import SUMMARY_METADATA
from tests.helpers.reference import cluster_snapshot


def put(store, user: str, metadata: dict | None, thread: str | None = "t1") -> int:
    return store.insert_memory(user_id=user, content="a memory", thread_id=thread, metadata=metadata)


def keyed(store, user: str | None = None) -> dict:
    return {
        (c["user_id"], c["topic"], c["category"]): c for c in store.get_clusters(user_id=user, limit=None)
    }


def test_groups_by_topic_and_category_with_general_where_missing(db):
    a = put(db, "ada", {"topic": "travel", "category": "booking"})
    b = put(db, "ada", {"topic": "travel", "category": "booking"}, thread="t2")
    c = put(db, "ada", {"topic": "travel"})
    d = put(db, "ada", {})
    e = put(db, "ada", {"topic": 42, "category": ["x"]}, thread=None)
    f = put(db, "ada", {"topic": "  ", "category": None})
    g = put(db, "bob", {"topic": "travel", "category": "booking"})
    db.insert_memory(user_id="ada", content="summary", thread_id="t1", metadata=SUMMARY_METADATA)

    assert rebuild_clusters(db) == 4
    clusters = keyed(db)
    assert set(clusters) == {
        ("ada", "travel", "booking"),
        ("ada", "travel", GENERAL),
        ("ada", GENERAL, GENERAL),
        ("bob", "travel", "booking"),
    }
    booking = clusters[("ada", "travel", "booking")]
    assert booking["memory_ids"] == [a, b]
    assert booking["memory_count"] == 2
    assert booking["summary"] == "2 memories about travel (booking) across 2 threads"
    assert clusters[("ada", "travel", GENERAL)]["memory_ids"] == [c]
    assert clusters[("ada", GENERAL, GENERAL)]["memory_ids"] == [d, e, f]
    assert clusters[("bob", "travel", "booking")]["memory_ids"] == [g]


def test_cluster_keys_and_summaries_are_deterministic():
    assert cluster_key("travel") == "travel"
    assert cluster_key(7) == GENERAL
    assert cluster_key(True) == GENERAL
    assert cluster_key({"a": 1}) == GENERAL
    assert cluster_key("x" * 300) == "x" * 255
    for invisible in ("\u200b", " \ufeff\u00ad ", "\U000e0001", "\u3000"):  # show nothing: general
        assert cluster_key(invisible) == GENERAL
    assert cluster_key("\u200bx") == "\u200bx", "a key that shows something is kept as written"
    assert describe("t", "c", [(1, None)]) == "1 memory about t (c) outside any thread"
    assert describe("t", "c", [(1, "a"), (2, "a")]) == "2 memories about t (c) across 1 thread"


def test_an_on_progress_that_is_no_function_is_refused_before_any_user_is_rebuilt(db):
    """It was called after the first user's clusters had committed: a TypeError, the run half done."""
    put(db, "ada", {"topic": "travel"})
    with pytest.raises(ValidationError, match=r"^on_progress must be a function .*, got str$"):
        rebuild_clusters(db, on_progress="x")
    assert keyed(db) == {}


def test_min_size_drops_small_groups(db):
    for _ in range(3):
        put(db, "ada", {"topic": "food"})
    put(db, "ada", {"topic": "travel"})
    assert rebuild_clusters(db, min_size=2) == 1
    assert list(keyed(db)) == [("ada", "food", GENERAL)]


def test_rebuild_is_idempotent(db):
    for i in range(20):
        put(db, f"u{i % 3}", {"topic": f"t{i % 4}", "category": f"c{i % 2}"}, thread=f"th{i % 5}")
    first = rebuild_clusters(db)
    before = cluster_snapshot(db)
    assert rebuild_clusters(db) == first
    assert cluster_snapshot(db) == before


def test_stale_clusters_of_the_rebuilt_user_are_removed(db):
    travel = put(db, "ada", {"topic": "travel"})
    put(db, "ada", {"topic": "food"})
    put(db, "bob", {"topic": "travel"})
    rebuild_clusters(db)
    kept_id = keyed(db)[("ada", "food", GENERAL)]["cluster_id"]

    db.update_metadata(memory_id=travel, new_metadata={"topic": "food"})
    assert rebuild_clusters(db, user_id="ada") == 1
    clusters = keyed(db)
    assert set(clusters) == {("ada", "food", GENERAL), ("bob", "travel", GENERAL)}
    assert clusters[("ada", "food", GENERAL)]["cluster_id"] == kept_id
    assert clusters[("ada", "food", GENERAL)]["memory_count"] == 2


def test_users_without_memories_lose_their_clusters_on_a_full_rebuild(db):
    gone = put(db, "ada", {"topic": "travel"})
    put(db, "bob", {"topic": "travel"})
    rebuild_clusters(db)
    db.delete_memories(memory_ids=[gone])
    assert rebuild_clusters(db) == 1
    assert list(keyed(db)) == [("bob", "travel", GENERAL)]


def test_progress_reports_every_memory(db):
    for i in range(7):
        put(db, f"u{i % 2}", {"topic": "x"})
    seen = []
    rebuild_clusters(db, on_progress=seen.append)
    assert sum(seen) == 7


def test_eight_concurrent_rebuilds_end_consistent(db):
    for i in range(400):
        put(db, f"u{i % 5}", {"topic": f"t{i % 7}", "category": f"c{i % 3}"}, thread=f"th{i % 9}")
    rebuild_clusters(db)
    expected = cluster_snapshot(db)
    db.truncate()
    for i in range(400):
        put(db, f"u{i % 5}", {"topic": f"t{i % 7}", "category": f"c{i % 3}"}, thread=f"th{i % 9}")
    put(db, "u0", {"topic": "stale"})
    rebuild_clusters(db)
    db.delete_memories(memory_ids=[m["id"] for m in db.get_memories(where_metadata={"topic": "stale"})])

    barrier = threading.Barrier(8)
    errors, counts = [], []

    def worker(user):
        try:
            barrier.wait()
            counts.append(rebuild_clusters(db, user_id=user))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=worker, args=(None if i % 2 else "u0",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = cluster_snapshot(db)
    assert [row[1:] for row in final] == [row[1:] for row in expected]
    assert len({row[0] for row in final}) == len(final)


def test_bulk_upsert_follows_the_rules_of_upsert_cluster(db):
    one, two, three = (db.insert_memory(user_id="ada", content=f"m{n}") for n in range(3))
    first = db.upsert_cluster(
        user_id="ada", topic="t", category="c", memory_ids=[three, one, three], summary="one"
    )
    assert db.get_clusters(user_id="ada")[0]["memory_ids"] == [one, three]
    assert (
        db.upsert_clusters(user_id="ada", clusters=[{"topic": "t", "category": "c", "memory_ids": [two]}])
        == 1
    )
    (cluster,) = db.get_clusters(user_id="ada")
    assert (cluster["cluster_id"], cluster["memory_ids"], cluster["summary"]) == (first, [two], "")
    for bad in (
        {"topic": "", "category": "c", "memory_ids": []},
        {"topic": "t", "category": "c", "memory_ids": ["1"]},
    ):
        with pytest.raises(ValidationError):
            db.upsert_clusters(user_id="ada", clusters=[bad])
    with pytest.raises(ValidationError):
        db.upsert_clusters(user_id="", clusters=[])
