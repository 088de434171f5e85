"""The JSON input rules of `memoric.json_input`, without a database: what PostgreSQL's JSONB stores,
at its boundaries and with its messages, and the fast check agreeing with the slow walk."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoric import json_input as j
from memoric.db.jsoncodec import dump_json
from memoric.errors import ValidationError
from memoric.json_input import JSON_INT_LIMIT, MAX_JSON_DEPTH
from memoric.validation import MAX_JSON_LENGTH
from tests.helpers.dialects import refusal
from tests.helpers.odd_input import nested, nested_lists

# --- metadata: JSON that PostgreSQL's JSONB stores -------------------------------------------------


def test_metadata_is_a_json_object_and_none_means_empty():
    document = {
        "s": "ünï",
        "i": -(2**62),
        "f": 1.5,
        "b": False,
        "n": None,
        "l": [1, [2, {"x": "y"}]],
        "d": {},
    }
    assert j.metadata(document) is document
    assert j.metadata(None) == {}
    for value, kind in (([], "list"), ("{}", "str"), (5, "int")):
        assert refusal(j.metadata, value) == f"metadata must be a dict, got {kind}"
    assert refusal(j.metadata, [], "new_metadata") == "new_metadata must be a dict, got list"


def test_metadata_keys_are_strings():
    for key, as_shown in ((1, "1"), (None, "None"), (("t",), "('t',)")):
        assert refusal(j.metadata, {key: "a"}) == f"metadata has a non-string key {as_shown}"


NOT_JSON = [
    ({1, 2}, "a set ({1, 2})"),
    (frozenset(), "a frozenset (frozenset())"),
    (b"raw", "a bytes (b'raw')"),
    (bytearray(b"raw"), "a bytearray (bytearray(b'raw'))"),
    (dt.date(2026, 1, 1), "a date (datetime.date(2026, 1, 1))"),
    (decimal.Decimal("1.5"), "a Decimal (Decimal('1.5'))"),
    ((1, 2), "a tuple ((1, 2))"),
]


@pytest.mark.parametrize(("value", "described"), NOT_JSON, ids=lambda x: type(x).__name__)
def test_a_value_that_is_not_json_is_named_with_its_path(value, described):
    assert refusal(j.metadata, {"x": value}) == f"metadata['x'] holds {described}, which is not JSON"
    assert refusal(j.metadata, {"x": [1, {"y": value}]}) == (
        f"metadata['x'][1]['y'] holds {described}, which is not JSON"
    )
    assert refusal(j.metadata, {"x": object()}).startswith("metadata['x'] holds a object (<object object")


def test_json_numbers_are_finite():
    for value in (math.nan, math.inf, -math.inf):
        assert (
            refusal(j.metadata, {"x": value}) == f"metadata['x'] holds {value!r}; JSON numbers must be finite"
        )
    assert refusal(j.metadata, {"x": [1, {"y": math.nan}]}) == (
        "metadata['x'][1]['y'] holds nan; JSON numbers must be finite"
    )


def test_json_ints_have_at_most_4300_digits():
    largest = JSON_INT_LIMIT - 1
    assert j.metadata({"big": largest, "small": -largest, "mixed": [largest, 1]})
    for value, path in (
        ({"k": JSON_INT_LIMIT}, "['k']"),
        ({"k": [1, -JSON_INT_LIMIT]}, "['k'][1]"),
        ({"k": {"n": 10**5000}}, "['k']['n']"),
    ):
        message = refusal(j.metadata, value)
        assert message == f"metadata{path} holds an int of more than 4300 digits, which JSON cannot carry"


def test_json_text_is_storable():
    nul = "contains a NUL character, which PostgreSQL cannot store"
    cases = [
        ({"nul\x00key": 1}, f"metadata key 'nul\\x00key' {nul}"),
        ({"k": "nul\x00value"}, f"metadata['k'] {nul}"),
        ({"k": ["ok", "nul\x00"]}, f"metadata['k'][1] {nul}"),
        ({"k": {"nested\x00": 1}}, f"metadata['k'] key 'nested\\x00' {nul}"),
        ({"k": "lone \udfff"}, "metadata['k'] is not valid Unicode (lone surrogate at 5)"),
        ({"lone \udfff": 1}, "metadata key 'lone \\udfff' is not valid Unicode (lone surrogate at 5)"),
    ]
    for value, message in cases:
        assert refusal(j.metadata, value) == message


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 5000])
def test_json_nests_at_most_64_levels(depth):
    assert j.metadata(nested(MAX_JSON_DEPTH))
    assert j.metadata(nested(MAX_JSON_DEPTH - 1, leaf=[]))
    message = refusal(j.metadata, nested(depth))
    assert message.startswith("metadata['k']['k']") and message.endswith("is nested deeper than 64 levels")
    assert len(message) < 300
    lists = refusal(j.metadata_filter, {"l": nested_lists(depth - 1)})
    assert lists.startswith("where_metadata['l'][0][0]") and lists.endswith("is nested deeper than 64 levels")


def longest_document(kind=dict) -> dict:
    """A document memoric writes in exactly MAX_JSON_LENGTH characters: `{"k":"éé…"}`."""
    return kind(k="é" * (MAX_JSON_LENGTH - len('{"k":""}')))


def test_json_takes_at_most_ten_million_characters_as_memoric_writes_it():
    longest = longest_document()
    assert j.metadata(longest) is longest
    over = {**longest, "k": longest["k"] + "\n"}  # written as two characters: `\n`
    too_long = f"takes {MAX_JSON_LENGTH + 2:,} characters as JSON; at most {MAX_JSON_LENGTH:,} fit both"
    too_long += " dialects"
    assert refusal(j.metadata, over) == f"metadata {too_long}"
    assert refusal(j.metadata, over, "new_metadata") == f"new_metadata {too_long}"
    assert refusal(j.metadata_filter, over) == f"where_metadata {too_long}"
    copied = j.metadata(longest_document(PlainDict))  # a subclass, copied by the slow walk
    assert type(copied) is dict and copied == longest
    assert refusal(j.metadata, PlainDict(over)) == f"metadata {too_long}"


class PlainDict(dict):
    """A dict subclass: the fast check passes it to the slow walk, which copies it."""


def test_a_filter_is_a_json_object_and_empty_means_none():
    assert j.metadata_filter(None) is None
    assert j.metadata_filter({}) is None
    assert j.metadata_filter({"topic": "x"}) == {"topic": "x"}
    assert refusal(j.metadata_filter, ["topic"]) == "where_metadata must be a dict, got list"
    assert (
        refusal(j.metadata_filter, {"k": math.inf})
        == "where_metadata['k'] holds inf; JSON numbers must be finite"
    )


def test_json_text_from_the_command_line_holds_only_numbers_a_float_holds_exactly():
    assert j.from_text("--metadata", '{"a": [1E2, 0.50, -0.0, 5e-324]}') == {"a": [100.0, 0.5, 0.0, 5e-324]}
    for number, stored_as in (("0.10000000000000000000000001", "0.1"), ("1e-400", "0.0"), ("1e400", "inf")):
        refused = refusal(j.from_text, "--metadata", f'{{"a": {number}}}')
        assert refused == f"--metadata holds the number {number}, which a float would change: " + (
            f"it would be stored as {stored_as}"
        )


def test_json_text_from_the_command_line_parses_within_the_limits():
    assert j.from_text("--metadata", '{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert j.from_text("--metadata", '{"a": ' + "9" * 4300 + "}") == {"a": int("9" * 4300)}
    assert refusal(j.from_text, "--metadata", "{oops").startswith("--metadata is not valid JSON: Expecting")
    assert refusal(j.from_text, "--metadata", "").startswith("--metadata is not valid JSON")
    twice = '{"a": {"b": 1, "c": [{"b": 2, "b": 3}]}}'
    assert refusal(j.from_text, "--metadata", twice) == "--metadata gives the key 'b' twice"
    for text, message in (
        ('{"a": ' * 5000 + "1" + "}" * 5000, "--metadata is nested deeper than 64 levels"),
        (
            '{"a": ' + "9" * 5000 + "}",
            "--metadata holds an int of 5000 digits; JSON ints may have at most 4300",
        ),
        (
            '{"a": [-' + "9" * 4301 + "]}",
            "--metadata holds an int of 4301 digits; JSON ints may have at most 4300",
        ),
    ):
        assert refusal(j.from_text, "--metadata", text) == message


# --- the fast JSON check agrees with the slow one ------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # includes nan and infinities, which are refused
    st.text(alphabet=st.characters(codec=None, exclude_categories=())),  # NUL and lone surrogates too
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.none()), children, max_size=4),
    ),
    max_leaves=20,
)


def slow_verdict(value: dict) -> str | None:
    """The error message of the full walk (None when the document is valid)."""
    try:
        j._plain_json("metadata", value, depth=0)
    except ValidationError as exc:
        return str(exc)
    return None


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_the_fast_json_check_never_passes_what_the_full_walk_refuses(document):
    width = j._plain_json_width(document, depth=0)
    if width is not None:
        assert slow_verdict(document) is None
        assert width >= len(dump_json(document))
    verdict = slow_verdict(document)
    if verdict is None:
        assert j.metadata(document) is document
    else:
        with pytest.raises(ValidationError) as raised:
            j.metadata(document)
        assert str(raised.value) == verdict


def test_the_fast_json_check_never_measures_a_document_shorter_than_memoric_writes_it():
    widest = {
        "\x01\x1f\"\\": ["\x01" * 50, "\n\t\u2028\U0001f600"],
        "float": [-sys.float_info.max, -0.0, 5e-324, 1e16],
        "int": [1 - JSON_INT_LIMIT, JSON_INT_LIMIT - 1, -(2**63)],
        "rest": [False, True, None, {}, [], [[]], {"": {}}],
    }
    assert len(dump_json(widest)) <= j._plain_json_width(widest, depth=0)
    for key, value in widest.items():
        assert len(dump_json({key: value})) <= j._plain_json_width({key: value}, depth=0)


def test_the_fast_json_check_stops_at_the_depth_limit():
    document: dict = {}
    inner = document
    for _ in range(j.MAX_JSON_DEPTH):
        inner["x"] = {}
        inner = inner["x"]
    j.metadata(document)  # exactly at the limit: accepted
    inner["x"] = 1
    with pytest.raises(ValidationError, match="nested deeper than 64"):
        j.metadata(document)
