"""Error messages: values shortened with an ellipsis, misspelled keywords named with the accepted ones.

A value shown in a message is cut to SHOWN_WIDTH characters ending in "…" (before, `{value!r:.40}`
cut without a mark, so a datetime's microseconds read as one digit), and is never converted whole
(a 5,000-deep dict or a 10,000-digit int). A misspelled keyword is a ValidationError naming it and
the accepted ones, not a TypeError naming a private method.
"""

from __future__ import annotations

import datetime as dt

import pytest

from memoric.errors import ValidationError
from memoric.validation import SHOWN_WIDTH, shown


def nested(levels: int, leaf=1) -> dict:
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


# --- error messages: values shortened with an ellipsis --------------------------------------------


def test_shown_values_are_cut_with_an_ellipsis_and_never_built_whole():
    moment = dt.datetime(2026, 1, 1, 12, 30, 45, 123456, tzinfo=dt.UTC)
    assert shown(moment.replace(tzinfo=None)) == repr(moment.replace(tzinfo=None))
    assert shown(moment).endswith("…") and len(shown(moment)) == SHOWN_WIDTH
    assert shown("x" * 10**7) == "'" + "x" * (SHOWN_WIDTH - 2) + "…"
    assert shown(b"\x00" * 10**6).endswith("…")
    assert shown(10**5000) == "<an int of 16610 bits>"
    assert shown(nested(5000)).startswith("{'k': {'k':")
    assert shown("short") == "'short'"


LONG_VALUES = [
    ("insert_memory", {"user_id": "ada", "content": "x", "metadata": {"k": b"x" * 1000}}, "holds a bytes"),
    ("insert_memory", {"user_id": "ada", "content": "x", "tier": "t" * 1000}, "tier must be one of"),
    ("insert_memory", {"user_id": "ada", "content": "x", "metadata": {"k" * 1000: {1, 2}}}, "holds a set"),
    ("insert_memory", {"user_id": "ada", "content": "x", "score": "9" * 1000}, "score must be an int"),
    ("insert_memory", {"user_id": "ada", "content": "x", "summarized": "y" * 1000}, "summarized must be"),
    ("get_memories", {"limit": "9" * 1000}, "limit must be a non-negative int"),
    ("get_memory", {"memory_id": [0] * 1000}, "memory_id must be an int"),
]


@pytest.mark.parametrize(("method", "arguments", "message"), LONG_VALUES)
def test_long_values_in_messages_end_with_an_ellipsis(db, method, arguments, message):
    with pytest.raises(ValidationError, match=message) as raised:
        getattr(db, method)(**arguments)
    text = str(raised.value)
    assert "…" in text and len(text) < 400, text


def test_a_datetime_in_metadata_is_shown_whole_or_with_an_ellipsis(db):
    """Cut at 40 characters, the microseconds of a datetime once read as a single digit."""
    moment = dt.datetime(2026, 1, 1, 12, 30, 45, 123456)
    with pytest.raises(ValidationError) as raised:
        db.insert_memory(user_id="ada", content="x", metadata={"when": moment})
    assert repr(moment) in str(raised.value)
    with pytest.raises(ValidationError) as raised:
        db.insert_memory(user_id="ada", content="x", metadata={"when": moment.replace(tzinfo=dt.UTC)})
    assert "123456, tzinfo=" in str(raised.value) and "…" in str(raised.value)


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
