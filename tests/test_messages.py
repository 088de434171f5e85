"""Error messages: a misspelled keyword or field is named with the accepted ones.

A misspelled keyword is a ValidationError naming it and the accepted ones, not a TypeError naming
a private method. (Values shown in messages, cut with "…", are tested in test_validation.py.)
"""

from __future__ import annotations

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
        ("not a dict", "a cluster must be a dict, got str"),
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
