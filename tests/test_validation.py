"""Bad input raises ValidationError naming the problem, and leaves the tables unchanged."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from memoric.errors import MemoricError, ValidationError

GOOD = {"user_id": "ada", "content": "a memory"}

BAD_MEMORIES = [
    ({"user_id": ""}, "user_id"),
    ({"user_id": "   "}, "user_id"),
    ({"user_id": "x" * 129}, "user_id"),
    ({"user_id": None}, "user_id"),
    ({"user_id": 7}, "user_id"),
    ({"user_id": "a\x00b"}, "NUL"),
    ({"content": ""}, "content"),
    ({"content": None}, "content"),
    ({"content": b"bytes"}, "content"),
    ({"content": "nul\x00here"}, "NUL"),
    ({"content": "lone \ud800 surrogate"}, "surrogate"),
    ({"thread_id": ""}, "thread_id"),
    ({"thread_id": "t" * 129}, "thread_id"),
    ({"namespace": 3}, "namespace"),
    ({"tier": "forever"}, "tier"),
    ({"score": 101}, "score"),
    ({"score": -1}, "score"),
    ({"score": True}, "score"),
    ({"score": 5.0}, "score"),
    ({"score": "50"}, "score"),
    ({"metadata": ["not", "a", "dict"]}, "metadata"),
    ({"metadata": "{}"}, "metadata"),
    ({"metadata": {1: "int key"}}, "non-string key"),
    ({"metadata": {"nan": math.nan}}, "finite"),
    ({"metadata": {"inf": [math.inf]}}, "finite"),
    ({"metadata": {"set": {1, 2}}}, "set"),
    ({"metadata": {"bytes": b"x"}}, "bytes"),
    ({"metadata": {"when": dt.datetime(2026, 1, 1)}}, "datetime"),
    ({"metadata": {"tuple": (1, 2)}}, "tuple"),
    ({"metadata": {"k": "nul\x00"}}, "NUL"),
    ({"metadata": {"nul\x00key": 1}}, "NUL"),
    ({"metadata": {"deep": {"deeper": [{"x": object()}]}}}, "object"),
    ({"related_threads": "t1"}, "related_threads"),
    ({"related_threads": ["ok", ""]}, r"related_threads\[1\]"),
    ({"created_at": "2026-01-01"}, "created_at"),
    ({"colour": "blue"}, "unexpected"),
]


@pytest.mark.parametrize(("change", "named"), BAD_MEMORIES)
def test_bad_memory_is_refused_and_nothing_is_written(db, change, named):
    with pytest.raises(ValidationError, match=named):
        db.insert_memory(**{**GOOD, **change})
    with pytest.raises(ValidationError, match=named):
        db.insert_memories([GOOD, {**GOOD, **change}])
    assert db.count_memories() == 0


def test_validation_error_is_a_memoric_error_and_a_value_error():
    assert issubclass(ValidationError, MemoricError)
    assert issubclass(ValidationError, ValueError)


def test_bulk_error_names_the_row(db):
    rows = [GOOD, GOOD, {**GOOD, "score": 500}]
    with pytest.raises(ValidationError, match=r"rows\[2\]: score"):
        db.insert_memories(rows)
    with pytest.raises(ValidationError, match=r"rows\[0\] must be a dict"):
        db.insert_memories(["not a row"])
    assert db.count_memories() == 0


BAD_CALLS = [
    ("update_tier", {"memory_ids": [1], "new_tier": "nope"}, "tier"),
    ("update_tier", {"memory_ids": ["1"], "new_tier": "mid_term"}, r"memory_ids\[0\]"),
    ("update_tier", {"memory_ids": [True], "new_tier": "mid_term"}, r"memory_ids\[0\]"),
    ("update_tier", {"memory_ids": 1, "new_tier": "mid_term"}, "memory_ids"),
    ("mark_summarized", {"memory_ids": [1.0]}, r"memory_ids\[0\]"),
    ("delete_memories", {"memory_ids": "12"}, "memory_ids"),
    ("update_content", {"memory_id": 1, "new_content": ""}, "new_content"),
    ("update_content", {"memory_id": "1", "new_content": "x"}, "memory_id"),
    ("update_metadata", {"memory_id": 1, "new_metadata": {"x": math.nan}}, "finite"),
    ("set_related_threads", {"memory_id": 1, "related_threads": [None]}, "related_threads"),
    ("get_memories", {"where_metadata": ["topic"]}, "where_metadata"),
    ("get_memories", {"where_metadata": {"k": {1, 2}}}, "set"),
    ("get_memories", {"limit": -1}, "limit"),
    ("get_memories", {"offset": "3"}, "offset"),
    ("get_memories", {"tier": "nope"}, "tier"),
    ("get_memories", {"summarized": "yes"}, "summarized"),
    ("get_memories", {"related_threads_any_of": "t1"}, "related_threads_any_of"),
    ("count_memories", {"user_id": ""}, "user_id"),
    ("find_older_than", {"days": -1}, "days"),
    ("find_older_than", {"days": math.inf}, "days"),
    ("upsert_cluster", {"user_id": "ada", "topic": "", "category": "c", "memory_ids": []}, "topic"),
    ("upsert_cluster", {"user_id": "ada", "topic": "t", "category": "c", "memory_ids": ["x"]}, "memory_ids"),
    (
        "upsert_cluster",
        {"user_id": "ada", "topic": "t", "category": "c", "memory_ids": [], "summary": 3},
        "summary",
    ),
    ("delete_cluster", {"cluster_id": "1"}, "cluster_id"),
]


@pytest.mark.parametrize(("method", "arguments", "named"), BAD_CALLS)
def test_bad_arguments_are_refused_and_nothing_changes(db, method, arguments, named):
    memory_id = db.insert_memory(**GOOD, metadata={"k": "v"})
    before = db.get_memories(limit=None), db.get_clusters()
    with pytest.raises(ValidationError, match=named):
        getattr(db, method)(**arguments)
    assert (db.get_memories(limit=None), db.get_clusters()) == before
    assert db.get_memory(memory_id)["metadata"] == {"k": "v"}


def test_get_memory_refuses_a_non_int_id(db):
    with pytest.raises(ValidationError, match="memory_id"):
        db.get_memory("1")
