"""Error messages: a misspelled keyword or field is named with the accepted ones.

A misspelled keyword is a ValidationError naming it and the accepted ones, not a TypeError naming
a private method. (Values shown in messages, cut with "…", are tested in test_validation.py.)
"""

from __future__ import annotations

import re

import pytest

from memoric.errors import ValidationError

# --- misspelled keywords -------------------------------------------------------------------------

MISSPELLED = [
    ("get_memories", {"user": "ada"}, "get_memories got an unexpected keyword argument 'user'"),
    (
        "get_memories",
        {"thread": "t"},
        "unexpected keyword argument 'thread' (accepted: limit, offset, user_id",
    ),
    (
        "count_memories",
        {"metadata": {"a": 1}},
        "count_memories got an unexpected keyword argument 'metadata'",
    ),
    ("count_memories", {"limit": 3}, "count_memories got an unexpected keyword argument 'limit'"),
    ("insert_memory", {"user_id": "ada", "content": "x", "colour": "red"}, "unexpected field 'colour'"),
    ("insert_memory", {"user": "ada", "content": "x"}, "unexpected field 'user' (accepted: user_id, content"),
    ("insert_memory", {"content": "x"}, "missing field user_id"),
    ("insert_memory", {"user_id": "ada"}, "missing field content"),
]


@pytest.mark.parametrize(("method", "arguments", "message"), MISSPELLED)
def test_a_misspelled_keyword_is_a_validation_error_naming_it_and_the_accepted_ones(
    db, method, arguments, message
):
    with pytest.raises(ValidationError) as raised:
        getattr(db, method)(**arguments)
    assert message in str(raised.value)
    assert "_checked_filters" not in str(raised.value) and "_validated_row" not in str(raised.value)
    assert db.count_memories() == 0


def test_a_malformed_cluster_is_a_validation_error(db):
    good = {"topic": "t", "category": "c", "memory_ids": [1]}
    cases = [
        ({**good, "colour": "red"}, "unexpected cluster field 'colour' (accepted: topic, category"),
        ({"topic": "t", "memory_ids": [1]}, "missing cluster field category"),
        ("not a dict", "clusters[1] must be a dict, got str"),
    ]
    for cluster, message in cases:
        with pytest.raises(ValidationError) as raised:
            db.upsert_clusters(user_id="ada", clusters=[good, cluster])
        assert message in str(raised.value)
    assert db.get_clusters() == []


def test_a_misspelled_field_in_a_bulk_row_names_the_row(db):
    with pytest.raises(ValidationError, match=r"rows\[1\]: unexpected field 'tags' \(accepted: user_id"):
        db.insert_memories(
            [{"user_id": "ada", "content": "x"}, {"user_id": "ada", "content": "y", "tags": []}]
        )
    with pytest.raises(ValidationError, match=r"rows\[0\]: missing field content"):
        db.insert_memories([{"user_id": "ada"}])
    assert db.count_memories() == 0


@pytest.mark.parametrize("given", [None, 5, 2.5, {"user_id": "ada", "content": "x"}])
def test_rows_or_clusters_that_are_no_iterable_of_dicts_are_named(db, given):
    """None or a number raised Python's TypeError ('NoneType' object is not iterable)."""
    kind = "one dict" if isinstance(given, dict) else type(given).__name__
    with pytest.raises(ValidationError, match=f"^rows must be an iterable of dicts, got {kind}$"):
        db.insert_memories(given)
    with pytest.raises(ValidationError, match=f"^clusters must be an iterable of dicts, got {kind}$"):
        db.upsert_clusters(user_id="ada", clusters=given)
    assert db.count_memories() == 0 and db.get_clusters() == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (5, "lock name must be a string, got int"),
        (["x"], "lock name must be a string, got list"),
        ((letter for letter in "x"), "lock name must be a string, got generator"),
        ("", "lock name must be a non-empty string"),
        ("x" * 65, "lock name must be at most 64 characters, got 65"),
        ("\x00", "lock name contains a NUL character"),
        ("a/b", "lock name 'a/b' may hold only ASCII letters, digits"),
        ("b.c", "lock name 'b.c' may hold only ASCII letters, digits"),
        ("../jobs", "lock name '../jobs' may hold only ASCII letters, digits"),
        ("nightly job", "lock name 'nightly job' may hold only ASCII letters, digits"),
    ],
)
def test_a_lock_name_is_checked_alike_on_both_dialects(db, name, message):
    """Names were not checked: on SQLite a generator's repr named a lock file and NUL or a long name
    were "a stored value memoric cannot read", where PostgreSQL took them; with a '.', the lock
    `b.c` of `a.db` was the lock `c` of `a.db.b`, one file."""
    with pytest.raises(ValidationError, match=re.escape(message)), db.lock(name):
        pass
    with db.lock("jobs_nightly-2"):
        pass
