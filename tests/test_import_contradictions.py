"""An import refuses a file that contradicts itself or the target, naming the lines, and writes
nothing; a cluster must list its own user's memories, once each, in order."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from memoric.db import transfer_queries
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.transfer import (
    copy_database,
    import_jsonl,
)
from tests.helpers.transfer_data import (
    T0,
    assert_identical,
    cluster_line,
    export_of,
    memory_line,
    snapshot,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster


# --- a file that contradicts itself, or the target ------------------------------------------


@pytest.mark.parametrize(
    ("records", "named"),
    [
        (
            [memory_line(1), memory_line(1, content="another memory")],
            "line 2 and line 3 are two different memories with id 1",
        ),
        (
            [memory_line(1, metadata={"a": 1}), memory_line(2), memory_line(1, metadata={"a": True})],
            "line 2 and line 4 are two different memories with id 1",
        ),
        (
            [memory_line(5), memory_line(2), memory_line(5, content="another memory")],
            "line 2 and line 4 are two different memories with id 5",
        ),
        (
            [memory_line(5), memory_line(2), memory_line(3), memory_line(2, content="another memory")],
            "line 3 and line 5 are two different memories with id 2",
        ),
        (
            [memory_line(1), cluster_line(1), cluster_line(1, summary="other")],
            "line 3 and line 4 are two different clusters with cluster_id 1",
        ),
        (
            [memory_line(1), cluster_line(1), cluster_line(2, memory_ids=[2])],
            "line 3 and line 4 are two clusters (ids 1 and 2) for the same user_id, topic and category",
        ),
    ],
)
@pytest.mark.parametrize("clusters", [True, False], ids=["clusters", "clusters left out"])
def test_a_file_that_contradicts_itself_is_refused_naming_both_lines_and_writes_nothing(
    db, records, named, clusters
):
    """The same whether the file's clusters are written or left out (`clusters=False`)."""
    with pytest.raises(ValidationError, match=re.escape(named)):
        import_jsonl(db, export_of(*records), clusters=clusters)
    assert_identical(snapshot(db), [[], []])


def test_the_same_line_twice_is_one_row(db):
    counts = import_jsonl(db, export_of(memory_line(1), cluster_line(1), memory_line(1), cluster_line(1)))
    assert counts == {"memories": 1, "clusters": 1, "skipped": 2}
    assert [m["id"] for m in db.get_memories()] == [1]


def test_a_file_out_of_id_order_imports_each_row_once(db):
    """Ids that do not rise (a file put together by hand) are found again wherever they come."""
    lines = [memory_line(3), memory_line(1), memory_line(3), memory_line(2), memory_line(1)]
    counts = import_jsonl(db, export_of(*lines))
    assert counts == {"memories": 3, "clusters": 0, "skipped": 2}
    assert sorted(m["id"] for m in db.get_memories()) == [1, 2, 3]


def test_new_ids_follow_the_order_of_the_old_ones_whatever_the_order_of_the_lines(db):
    first = db.insert_memory(user_id="ada", content="already there")
    lines = [memory_line(30), memory_line(10), memory_line(20), memory_line(10)]
    import_jsonl(db, export_of(*lines), new_ids=True)
    given = {m["content"]: m["id"] for m in db.get_memories() if m["id"] != first}
    assert given == {"memory 10": first + 1, "memory 20": first + 2, "memory 30": first + 3}


# --- a cluster must list its own user's memories, once each, in order --------------------


ANOTHER_USERS = "which this export holds for another user_id"
NOWHERE = "which is neither in this export nor a memory of that user_id in the target"
NOT_RENUMBERED = "which is not in this export, so it cannot be given a new id"


@pytest.mark.parametrize(
    ("cluster", "named", "named_with_new_ids"),
    [
        (
            cluster_line(1, user_id="mallory", memory_ids=[5]),
            f"line 4: cluster 1 of user_id 'mallory' lists memory 5, {ANOTHER_USERS}",
            None,
        ),
        (
            cluster_line(1, memory_ids=[999999]),
            f"line 4: cluster 1 of user_id 'ada' lists memory 999999, {NOWHERE}",
            f"line 4: cluster 1 lists memory 999999, {NOT_RENUMBERED}",
        ),
        (
            cluster_line(1, user_id="mallory", memory_ids=[7]),
            f"line 4: cluster 1 of user_id 'mallory' lists memory 7, {NOWHERE}",
            f"line 4: cluster 1 lists memory 7, {NOT_RENUMBERED}",
        ),
        (
            cluster_line(1, memory_ids=[9, 9, 1]),
            "line 4: memory_ids must be unique and ascending, but memory_ids[1] 9 follows 9",
            None,
        ),
        (
            cluster_line(1, memory_ids=[1, 9, 5]),
            "line 4: memory_ids must be unique and ascending, but memory_ids[2] 5 follows 9",
            None,
        ),
        (
            cluster_line(1, memory_ids=[9], memory_count=42),
            "line 4: memory_count 42 is not the number of",
            None,
        ),
        (cluster_line(1, memory_ids=[], memory_count=1), "line 4: memory_count 1 is not the number of", None),
    ],
    ids=[
        "another user's",
        "nowhere",
        "another user's in the target",
        "repeated",
        "unordered",
        "count",
        "none",
    ],
)
@pytest.mark.parametrize("new_ids", [False, True], ids=["ids kept", "new ids"])
@pytest.mark.parametrize("clusters", [True, False], ids=["clusters", "clusters left out"])
def test_a_cluster_contradicting_its_memories_is_refused_naming_the_line_and_id(
    db, cluster, named, named_with_new_ids, new_ids, clusters
):
    """Clusters left out (`clusters=False`) are checked all the same: the file is refused whole."""
    db.insert_memories([{"id": 7, "user_id": "demo-ada", "content": "stored", "created_at": T0}])
    before = snapshot(db)
    lines = export_of(memory_line(5, user_id="demo-ada"), memory_line(9), cluster)
    with pytest.raises(ValidationError, match=re.escape((new_ids and named_with_new_ids) or named)):
        import_jsonl(db, lines, new_ids=new_ids, clusters=clusters)
    assert_identical(snapshot(db), before)


def test_a_cluster_may_list_memories_of_its_user_from_the_file_and_the_target(db):
    db.insert_memories([{"id": 3, "user_id": "ada", "content": "stored", "created_at": T0}])
    lines = export_of(cluster_line(1, memory_ids=[1, 3, 8]), memory_line(8), memory_line(1))
    assert import_jsonl(db, lines) == {"memories": 2, "clusters": 1, "skipped": 0}
    assert transfer_queries.all_clusters(db)[0]["memory_ids"] == [1, 3, 8]


def test_a_copy_refuses_a_source_cluster_listing_another_users_memory(db, new_dsn):
    db.insert_memories([{"user_id": "demo-ada", "content": "secret"}, {"user_id": "mallory", "content": "m"}])
    db.upsert_cluster(user_id="mallory", topic="t", category="general", memory_ids=[2])
    db.MemoryCluster.update(memory_ids=[1, 2], memory_count=2).execute()  # written outside memoric
    target = MemoryStore(new_dsn())
    target.create_schema()
    message = "source cluster 1: cluster 1 of user_id 'mallory' lists memory 1, which the source database"
    with pytest.raises(ValidationError, match=re.escape(message)):
        copy_database(db, target)
    assert_identical(snapshot(target), [[], []])


STORED = {"id": 1, "user_id": "ada", "content": "c", "thread_id": "t1", "namespace": "ns", "tier": "mid_term",
          "score": 70, "metadata": {"flag": 1, "ratio": 1, "deep": {"list": [1, {"x": False}]}},
          "related_threads": ["t2"], "summarized": True, "created_at": T0, "updated_at": T0}  # fmt: skip
STORED_LINE = {"type": "memory", **STORED, "created_at": T0.isoformat(), "updated_at": T0.isoformat()}


def without(key: str) -> dict:
    return {k: v for k, v in STORED_LINE.items() if k != key}


@pytest.mark.parametrize(
    ("line", "differing"),
    [
        ({**STORED_LINE, "metadata": {**STORED["metadata"], "flag": True}}, "metadata"),
        ({**STORED_LINE, "metadata": {**STORED["metadata"], "ratio": 1.0}}, "metadata"),
        (
            {**STORED_LINE, "metadata": {**STORED["metadata"], "deep": {"list": [1.0, {"x": False}]}}},
            "metadata",
        ),
        ({**STORED_LINE, "metadata": {**STORED["metadata"], "deep": {"list": [1, {"x": 0}]}}}, "metadata"),
        (without("metadata"), "metadata"),
        (without("tier"), "tier"),
        (without("score"), "score"),
        (without("thread_id"), "thread_id"),
        (without("namespace"), "namespace"),
        (without("related_threads"), "related_threads"),
        (without("summarized"), "summarized"),
        ({**STORED_LINE, "updated_at": (T0 - dt.timedelta(microseconds=1)).isoformat()}, "updated_at"),
        ({**STORED_LINE, "user_id": "bob", "score": 71}, "user_id, score"),
    ],
)
def test_a_line_differing_from_the_target_in_type_or_by_a_default_is_refused(db, line, differing):
    db.insert_memories([STORED])
    before = snapshot(db)
    message = f"line 2: memory id 1 is already in the target with other data (differing: {differing})"
    with pytest.raises(ValidationError, match=re.escape(message)):
        import_jsonl(db, export_of(line, memory_line(2)))
    assert_identical(snapshot(db), before)


@pytest.mark.parametrize(
    "line",
    [
        STORED_LINE,
        {**STORED_LINE, "created_at": T0.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()},
        without("created_at") | {"updated_at": T0.isoformat()},
        {k: v for k, v in STORED_LINE.items() if k not in ("created_at", "updated_at")},
    ],
    ids=["same", "same instant elsewhere", "created_at left out", "timestamps left out"],
)
def test_a_line_saying_what_the_target_holds_is_skipped(db, line):
    db.insert_memories([STORED])
    before = snapshot(db)
    assert import_jsonl(db, export_of(line)) == {"memories": 0, "clusters": 0, "skipped": 1}
    assert_identical(snapshot(db), before)


def test_a_cluster_whose_key_the_target_holds_under_another_id_is_refused(db):
    db.insert_memories([{"id": 1, "user_id": "ada", "content": "x"}])
    db.upsert_cluster(user_id="ada", topic="t", category="general", memory_ids=[1])
    db.upsert_cluster(user_id="ada", topic="u", category="general", memory_ids=[1])
    before = snapshot(db)
    taken = export_of(cluster_line(7))
    with pytest.raises(
        ValidationError, match=r"line 2: cluster 7 is for user_id, topic and category \['ada', 't'"
    ):
        import_jsonl(db, taken)
    other_data = export_of(cluster_line(2, topic="u", summary="not the same"))
    with pytest.raises(ValidationError, match=r"line 2: cluster id 2 is already in the target .*summary"):
        import_jsonl(db, other_data)
    assert_identical(snapshot(db), before)
