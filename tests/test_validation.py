"""The input rules of `memoric.validation`, once each, without a database: boundaries and messages
(the JSON rules of `memoric.json_input` are in test_json_input.py).

Every entry point (the store, the facade, the CLI, import) hands its input to these functions;
test_bad_input.py proves each is wired to them, and test_integer_arguments.py walks every integer
argument. Here each rule is tried at its boundary values, and each refusal's message is checked
to the letter: it names the field and the value at fault, on one short line.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict

import pytest

from memoric import arguments
from memoric import json_input as j
from memoric import validation as v
from memoric.errors import MemoricError, ValidationError
from memoric.validation import (
    MAX_CONTENT_LENGTH,
    MAX_INT,
    MAX_JSON_LENGTH,
    MAX_STORED_ID,
    MAX_TIMESTAMP,
    MIN_INT,
    MIN_TIMESTAMP,
    SHOWN_WIDTH,
    shown,
)
from tests.helpers.dialects import refusal
from tests.helpers.odd_input import LyingText, PrintedText, nested

TIERS = ["short_term", "mid_term", "long_term"]
EAST = dt.timezone(dt.timedelta(hours=14))
WEST = dt.timezone(dt.timedelta(hours=-12))


def test_validation_error_is_a_memoric_error_and_a_value_error():
    assert issubclass(ValidationError, MemoricError)
    assert issubclass(ValidationError, ValueError)


# --- text: ids, content, cluster keys ------------------------------------------------------------

ID_CHECKS = {
    "user_id": v.user_id,
    "thread_id": lambda value: v.optional_text("thread_id", value),
    "namespace": lambda value: v.optional_text("namespace", value),
}


@pytest.mark.parametrize("field", sorted(ID_CHECKS))
def test_an_id_is_a_non_empty_storable_string_of_at_most_128_characters(field):
    check = ID_CHECKS[field]
    for good in ("ada", "x" * 128, "é" * 128, "ünï 🐢", " padded "):
        assert check(good) == good
    refused = [
        ("", f"{field} must be a non-empty string"),
        ("   ", f"{field} must be a non-empty string"),
        ("\t\n", f"{field} must be a non-empty string"),
        ("x" * 129, f"{field} must be at most 128 characters, got 129"),
        ("é" * 129, f"{field} must be at most 128 characters, got 129"),
        ("x" * 1_000_000, f"{field} must be at most 128 characters, got 1000000"),
        (42, f"{field} must be a string, got int"),
        (b"ada", f"{field} must be a string, got bytes"),
        (["ada"], f"{field} must be a string, got list"),
        ("a\x00b", f"{field} contains a NUL character, which PostgreSQL cannot store"),
        ("lone \ud800", f"{field} is not valid Unicode (lone surrogate at 5)"),
    ]
    for value, message in refused:
        assert refusal(check, value) == message


def test_a_user_id_is_required_and_the_other_ids_are_optional():
    assert refusal(v.user_id, None) == "user_id must be a string, got NoneType"
    assert v.optional_text("thread_id", None) is None
    assert v.optional_text("topic", "t" * 200, max_length=None) == "t" * 200


def test_content_is_a_non_empty_storable_string_of_at_most_ten_million_characters():
    longest = "é" * MAX_CONTENT_LENGTH
    assert v.content(longest) is longest
    too_long = f"must be at most {MAX_CONTENT_LENGTH} characters, got {MAX_CONTENT_LENGTH + 1}"
    assert refusal(v.content, longest + "x") == f"content {too_long}"
    assert refusal(v.content, longest + "x", "new_content") == f"new_content {too_long}"
    assert refusal(v.content, " ") == "content must be a non-empty string"
    assert refusal(v.content, None) == "content must be a string, got NoneType"
    assert refusal(v.content, b"bytes") == "content must be a string, got bytes"
    assert (
        refusal(v.content, "nul \x00 inside")
        == "content contains a NUL character, which PostgreSQL cannot store"
    )
    assert refusal(v.content, "lone \ud800 surrogate") == "content is not valid Unicode (lone surrogate at 5)"


def test_a_cluster_key_is_a_storable_string_of_at_most_255_characters():
    assert v.cluster_key("topic", "t" * 255) == "t" * 255
    assert refusal(v.cluster_key, "topic", "t" * 256) == "topic must be at most 255 characters, got 256"
    assert refusal(v.cluster_key, "category", "") == "category must be a non-empty string"
    assert refusal(v.cluster_key, "category", "c\x00") == (
        "category contains a NUL character, which PostgreSQL cannot store"
    )


# --- tier, score, flags --------------------------------------------------------------------------


def test_a_tier_is_one_of_the_configured_tiers():
    for tier in TIERS:
        assert v.tier(tier, TIERS) == tier
    assert refusal(v.tier, "forever", TIERS) == f"tier must be one of {TIERS}, got 'forever'"
    for value, as_shown in (("", "''"), (1, "1"), (None, "None"), (["short_term"], "['short_term']")):
        assert refusal(v.tier, value, TIERS) == f"tier must be one of {TIERS}, got {as_shown}"


class Posing:
    """Not a str, though `isinstance(posing, str)` says it is (a faked `__class__`)."""

    __class__ = property(lambda self: str)


def test_text_is_taken_by_its_type_and_its_characters():
    """Every text rule takes a str subclass as the plain str of its characters, and refuses an
    object that only poses as a str."""
    posing_checks = (
        v.user_id,
        v.content,
        lambda value: v.tier(value, TIERS),
        lambda value: v.one_of("scope", value, ["user"]),
    )
    for check in posing_checks:
        assert "Posing" in refusal(check, Posing())
    taken = v.user_id(LyingText("ada"))
    assert type(taken) is str and taken == "ada"
    assert type(v.tier(LyingText("long_term"), TIERS)) is str
    assert refusal(v.tier, LyingText("forever"), TIERS).startswith(f"tier must be one of {TIERS}, got ")
    pattern = j.metadata_filter(
        {PrintedText("k"): [LyingText("v"), {PrintedText("n"): LyingText("w")}], "x": 1}
    )
    assert pattern == {"k": ["v", {"n": "w"}], "x": 1}
    keys_and_strings = [*pattern, pattern["k"][0], *pattern["k"][1], pattern["k"][1]["n"]]
    assert {type(item) for item in keys_and_strings} == {str}


class NoSlice(str):
    """A str subclass that cannot be sliced (its own way)."""

    def __getitem__(self, index):
        raise RuntimeError("no slicing")


class Identity(str):
    """A str subclass compared by identity, so two of one text are two dict keys."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__


class Number(int):
    def __repr__(self):
        return "lie"


class Decimalish(float):
    def __repr__(self):
        return "lie"


def test_json_is_checked_by_type_and_comes_back_as_plain_values():
    plain = {"a": [1, "x", {"b": None}]}
    assert j.metadata(plain) is plain  # already plain: no copy
    assert (
        refusal(j.metadata, OrderedDict(t=(1, 2)))
        == "metadata['t'] holds a tuple ((1, 2)), which is not JSON"
    )
    assert "holds a Posing" in refusal(j.metadata, {"a": Posing()})
    assert "holds a Posing" in refusal(j.metadata_filter, {"a": [Posing()]})
    document = j.metadata(
        OrderedDict(n=Number(7), f=Decimalish(0.5), s=[PrintedText("text")], d=OrderedDict(k=1))
    )
    assert document == {"n": 7, "f": 0.5, "s": ["text"], "d": {"k": 1}}
    kinds = [
        type(document),
        type(document["n"]),
        type(document["f"]),
        type(document["s"][0]),
        type(document["d"]),
    ]
    assert kinds == [dict, int, float, str, dict]
    assert refusal(j.metadata, {Identity("a"): 1, Identity("a"): 2}) == "metadata gives the key 'a' twice"
    assert (
        refusal(v.one_of, "scope", NoSlice("nope"), ["user"]) == "scope must be one of ['user'], got 'nope'"
    )


def test_a_store_takes_its_tier_names_as_plain_distinct_strings():
    names = v.tier_names([LyingText("short_term"), "long_term"])
    assert names == ("short_term", "long_term") and {type(name) for name in names} == {str}
    assert refusal(v.tier_names, []) == "tiers must be one or more distinct names, got []"
    assert refusal(v.tier_names, ["a", "a"]) == "tiers must be one or more distinct names, got ['a', 'a']"
    assert refusal(v.tier_names, [123]) == "tiers[0] must be a string, got int"
    assert refusal(v.tier_names, "short_term") == "tiers must be a list of tier names, got str"


def test_a_score_is_an_int_from_0_to_100_defaulting_to_50():
    assert v.score(None) == v.DEFAULT_SCORE == 50
    assert (v.score(0), v.score(100)) == (0, 100)
    for value in (-1, 101, 10**20):
        assert refusal(v.score, value) == f"score must be from 0 to 100, got {value}"
    for value, as_shown in (
        (True, "True"),
        (False, "False"),
        (50.0, "50.0"),
        (math.nan, "nan"),
        ("50", "'50'"),
    ):
        assert refusal(v.score, value) == f"score must be an int from 0 to 100, got {as_shown}"


def test_a_flag_is_true_false_or_none():
    assert [v.flag("summarized", value) for value in (True, False, None)] == [True, False, None]
    for value, as_shown in (("yes", "'yes'"), (1, "1"), (0, "0")):
        assert (
            refusal(v.flag, "summarized", value) == f"summarized must be True, False or None, got {as_shown}"
        )


# --- thread lists and id lists -------------------------------------------------------------------


def test_a_thread_list_is_a_list_of_ids():
    assert v.thread_list("related_threads", None) == []
    assert v.thread_list("related_threads", ("t1", "t2")) == ["t1", "t2"]
    assert v.thread_list("related_threads", iter(["t1"])) == ["t1"]
    for value, kind in (("t1", "str"), (b"t1", "bytes"), (5, "int"), ({"t1": 1}, "dict")):  # not its keys
        assert refusal(v.thread_list, "related_threads", value) == (
            f"related_threads must be a list of thread ids, got {kind}"
        )
    assert (
        refusal(v.thread_list, "related_threads", ["ok", ""])
        == "related_threads[1] must be a non-empty string"
    )
    assert (
        refusal(v.thread_list, "related_threads", [None])
        == "related_threads[0] must be a string, got NoneType"
    )
    assert refusal(v.thread_list, "related_threads_any_of", ["t" * 129]) == (
        "related_threads_any_of[0] must be at most 128 characters, got 129"
    )


def test_a_thread_list_takes_at_most_ten_million_characters_as_json():
    full, rest = divmod(MAX_JSON_LENGTH - len("[]") + len(","), len('"",') + 128)
    longest = ["t" * 128] * full + ["t" * (rest - len('"",'))]  # `["ttt…","ttt…",…]`
    assert v.thread_list("related_threads", longest) == longest
    assert refusal(v.thread_list, "related_threads_any_of", [*longest, "t"]) == (
        f"related_threads_any_of takes {MAX_JSON_LENGTH + 4:,} characters as JSON; "
        f"at most {MAX_JSON_LENGTH:,} fit both dialects"
    )


def test_a_memory_id_list_is_a_list_of_64_bit_ints():
    assert v.memory_ids([MIN_INT, 0, MAX_INT]) == [MIN_INT, 0, MAX_INT]
    assert v.memory_ids(iter((1, 2))) == [1, 2]
    for value, kind in (("12", "str"), (b"1", "bytes"), ({1: 1}, "dict"), (1, "int"), (None, "NoneType")):
        assert refusal(v.memory_ids, value) == f"memory_ids must be a list of ints, got {kind}"
    for item, as_shown in (("1", "'1'"), (True, "True"), (1.0, "1.0"), (None, "None")):
        assert refusal(v.memory_ids, [7, item]) == f"memory_ids[1] must be an int, got {as_shown}"


# --- integers and numbers ------------------------------------------------------------------------


def test_an_integer_is_an_int_within_its_range():
    assert (v.integer("n", MIN_INT), v.integer("n", MAX_INT)) == (MIN_INT, MAX_INT)
    for value in (MIN_INT - 1, MAX_INT + 1):
        assert refusal(v.integer, "n", value) == f"n must be an int from {MIN_INT} to {MAX_INT}, got {value}"
    for value, as_shown in ((True, "True"), (1.0, "1.0"), ("3", "'3'"), (None, "None")):
        assert refusal(v.integer, "n", value) == f"n must be an int, got {as_shown}"
    assert v.integer("n", 5, minimum=5, maximum=5) == 5
    assert refusal(v.integer, "n", 4, minimum=5, maximum=9) == "n must be an int from 5 to 9, got 4"


def test_an_id_to_look_up_is_any_64_bit_int_and_an_id_to_write_fits_the_id_columns():
    assert v.memory_id(MIN_INT) == MIN_INT
    assert refusal(v.memory_id, "1") == "memory_id must be an int, got '1'"
    assert refusal(v.memory_id, MAX_INT + 1, "cluster_id").startswith("cluster_id must be an int from")
    assert (v.stored_id(1), v.stored_id(MAX_STORED_ID)) == (1, MAX_STORED_ID)
    for value in (0, MAX_STORED_ID + 1):
        assert refusal(v.stored_id, value) == f"id must be an int from 1 to {MAX_STORED_ID}, got {value}"


def test_a_count_is_a_non_negative_int_of_at_most_its_maximum():
    assert (v.count("limit", 0), v.count("limit", MAX_INT)) == (0, MAX_INT)
    assert v.count("limit", None, allow_none=True) is None
    for value, as_shown in ((-1, "-1"), (True, "True"), (1.5, "1.5"), ("3", "'3'"), (None, "None")):
        assert refusal(v.count, "limit", value) == f"limit must be a non-negative int, got {as_shown}"
    assert refusal(v.count, "limit", MAX_INT + 1) == f"limit must be at most {MAX_INT}, got {MAX_INT + 1}"
    assert refusal(v.count, "memory_count", 8, maximum=7) == "memory_count must be at most 7, got 8"


def test_a_number_of_days_or_seconds_is_non_negative_and_finite():
    for value in (0, 0.0, 1.5, 1e300, MAX_INT):
        assert v.days(value) == value
        assert v.non_negative_number("timeout", value) == value
    for value, as_shown in ((-1, "-1"), (-0.5, "-0.5"), (math.nan, "nan"), (math.inf, "inf"), (True, "True"),
                            ("5", "'5'"), (None, "None")):  # fmt: skip
        assert refusal(v.days, value) == f"days must be a non-negative number, got {as_shown}"
        assert refusal(v.non_negative_number, "timeout", value) == (
            f"timeout must be a non-negative number, got {as_shown}"
        )
    assert refusal(v.days, MAX_INT + 1) == f"days must be at most {MAX_INT}, got {MAX_INT + 1}"


# --- timestamps ----------------------------------------------------------------------------------


def test_a_timestamp_is_a_datetime_in_utc_within_the_stored_range():
    assert v.timestamp("created_at", None) is None
    naive = dt.datetime(2026, 1, 1, 12)
    assert v.timestamp("created_at", naive) == naive.replace(tzinfo=dt.UTC)
    assert v.timestamp("created_at", naive.replace(tzinfo=EAST)).tzinfo is dt.UTC
    assert v.timestamp("created_at", MIN_TIMESTAMP.astimezone(EAST)) == MIN_TIMESTAMP
    assert v.timestamp("updated_at", MAX_TIMESTAMP.astimezone(WEST)) == MAX_TIMESTAMP
    assert refusal(v.timestamp, "created_at", "2026-01-01") == "created_at must be a datetime, got str"
    assert (
        refusal(v.timestamp, "updated_at", dt.date(2026, 1, 1)) == "updated_at must be a datetime, got date"
    )


OUT_OF_RANGE_TIMESTAMPS = [
    dt.datetime.max.replace(tzinfo=dt.UTC),
    dt.datetime.min,
    MIN_TIMESTAMP - dt.timedelta(microseconds=1),
    MAX_TIMESTAMP + dt.timedelta(microseconds=1),
]


@pytest.mark.parametrize("moment", OUT_OF_RANGE_TIMESTAMPS, ids=str)
def test_a_timestamp_outside_the_stored_range_is_refused(moment):
    as_utc = moment.replace(tzinfo=moment.tzinfo or dt.UTC)
    assert refusal(v.timestamp, "created_at", moment) == (
        f"created_at must lie from 0001-01-02 to 9999-12-30 (UTC), got {as_utc.isoformat()}"
    )


@pytest.mark.parametrize(
    "moment", [dt.datetime.max.replace(tzinfo=WEST), dt.datetime.min.replace(tzinfo=EAST)]
)
def test_a_timestamp_with_no_utc_equivalent_is_refused(moment):
    assert refusal(v.timestamp, "updated_at", moment) == (
        f"updated_at {moment.isoformat()} lies outside the datetime range in UTC"
    )


def test_a_cutoff_before_the_calendar_is_the_earliest_instant():
    now = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    assert v.cutoff(now, 1.5) == now - dt.timedelta(days=1.5)
    assert v.cutoff(now.replace(tzinfo=None), 0) == now
    for days in (10**6, MAX_INT, 1e300, (now - v.EARLIEST).days + 1):
        assert v.cutoff(now, days) == v.EARLIEST
    assert refusal(v.cutoff, "now", 1) == "now must be a datetime, got str"


# --- values shown in messages: cut with an ellipsis, never converted whole --------------------------


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
    (lambda: j.metadata({"k": b"x" * 1000}), "metadata['k'] holds a bytes"),
    (lambda: j.metadata({"k" * 1000: {1, 2}}), "holds a set"),
    (lambda: v.tier("t" * 1000, TIERS), "tier must be one of"),
    (lambda: v.score("9" * 1000), "score must be an int"),
    (lambda: v.flag("summarized", "y" * 1000), "summarized must be True, False or None"),
    (lambda: v.count("limit", "9" * 1000), "limit must be a non-negative int"),
    (lambda: v.memory_id([0] * 1000), "memory_id must be an int"),
]


@pytest.mark.parametrize(("check", "message"), LONG_VALUES, ids=[m for _, m in LONG_VALUES])
def test_long_values_in_messages_end_with_an_ellipsis(check, message):
    text = refusal(check)
    assert text.startswith(message) or message in text
    assert "…" in text and len(text) < 400, text


def test_a_datetime_in_metadata_is_shown_whole_or_with_an_ellipsis():
    """Cut at 40 characters, the microseconds of a datetime once read as a single digit."""
    moment = dt.datetime(2026, 1, 1, 12, 30, 45, 123456)
    assert repr(moment) in refusal(j.metadata, {"when": moment})
    message = refusal(j.metadata, {"when": moment.replace(tzinfo=dt.UTC)})
    assert "123456, tzinfo=" in message and "…" in message


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("notes.jsonl", None),
        ("dir/ünïcode ✓.jsonl", None),
        ("a\0b", "it holds a NUL character"),
        ("lone \udc80 surrogate", None),  # os.fsencode takes back what the system decoded
        ("lone \ud800 surrogate", "surrogates not allowed"),
    ],
)
def test_a_file_name_the_system_cannot_take_says_why(name, problem):
    assert arguments.file_name_problem(name) == problem
