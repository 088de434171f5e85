"""Metadata filtering: the reference containment, and SQLite and PostgreSQL agreeing with it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memoric.db.jsonfilter import contains

# --- the reference, on examples of jsonb @> (objects, arrays, scalars, null) ---------------

CASES = [
    ({"a": 1}, {}, True),
    ({}, {}, True),
    ({}, {"a": 1}, False),
    ({"a": 1, "b": 2}, {"a": 1}, True),
    ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, True),
    ({"a": {"b": 1}}, {"a": {}}, True),
    ({"a": [1]}, {"a": {}}, False),
    ({"tags": ["a", "b"]}, {"tags": ["a"]}, True),
    ({"tags": ["a", "b"]}, {"tags": ["b", "a", "a"]}, True),
    ({"tags": ["a", "b"]}, {"tags": ["c"]}, False),
    ({"tags": ["a", "b"]}, {"tags": "a"}, False),
    ({"tags": "a"}, {"tags": ["a"]}, False),
    ({"tags": ["a"]}, {"tags": []}, True),
    ({"l": [{"b": 1, "c": 2}]}, {"l": [{"b": 1}]}, True),
    ({"l": [[1, 2]]}, {"l": [[1]]}, True),
    ({"l": [1, 2, [1, 3]]}, {"l": [1, 3]}, False),
    ({"l": [[1]]}, {"l": [1]}, False),
    ({"n": 1}, {"n": 1.0}, True),
    ({"n": 1.5}, {"n": 1.5}, True),
    ({"n": True}, {"n": 1}, False),
    ({"n": 1}, {"n": True}, False),
    ({"n": False}, {"n": 0}, False),
    ({"n": "1"}, {"n": 1}, False),
    ({"n": 1}, {"n": "1"}, False),
    ({"n": None}, {"n": None}, True),
    ({}, {"n": None}, False),
    ({"n": 0}, {"n": None}, False),
    ({"a.b": 1}, {"a.b": 1}, True),
    ({"a": {"b": 1}}, {"a.b": 1}, False),
]


@pytest.mark.parametrize(("document", "pattern", "expected"), CASES)
def test_reference_containment(document, pattern, expected):
    assert contains(document, pattern) is expected


# --- the same cases through SQL on both dialects --------------------------------------------


@pytest.mark.parametrize(("document", "pattern", "expected"), CASES)
def test_sql_containment_matches_the_examples(db, document, pattern, expected):
    db.insert_memory(user_id="ada", content="doc", metadata=document)
    assert db.count_memories(where_metadata=pattern) == int(expected)


def test_rows_with_empty_metadata_match_only_the_empty_filter(db):
    db.insert_memory(user_id="ada", content="no metadata")
    assert db.count_memories(where_metadata={}) == 1
    assert db.count_memories(where_metadata={"a": None}) == 0


TRICKY_KEYS = [
    "a.b",
    'quo"te',
    "back\\slash",
    "50%",
    "%s",
    "$.a[0]",
    "[0]",
    "sp ace",
    "żółw",
    "'; DROP TABLE memories; --",
]


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_keys_with_path_syntax_quotes_and_percent_match_literally(db, key):
    db.insert_memory(user_id="ada", content="hit", metadata={key: "v", "nested": {key: [key]}})
    db.insert_memory(user_id="ada", content="miss", metadata={"other": "v"})
    assert [m["content"] for m in db.get_memories(where_metadata={key: "v"})] == ["hit"]
    assert db.count_memories(where_metadata={"nested": {key: [key]}}) == 1
    assert db.count_memories(where_metadata={key: "w"}) == 0
    assert db.count_memories() == 2


# --- limit, offset and order apply in SQL, on a table much larger than the limit ------------


def test_limit_offset_and_order_with_a_filter_on_a_large_table(db):
    rows = [
        {
            "user_id": f"u{i % 7}",
            "content": f"memory {i}",
            "metadata": {"topic": f"t{i % 5}", "tags": [f"g{i % 3}", f"g{i % 4}"], "n": i % 11},
        }
        for i in range(6000)
    ]
    db.insert_memories(rows)
    ids = list(range(1, 6001))  # same created_at within a batch: newest first is id descending

    def expected(pattern, user=None):
        return [
            i for i in reversed(ids)
            if contains(rows[i - 1]["metadata"], pattern) and (user is None or rows[i - 1]["user_id"] == user)
        ]  # fmt: skip

    def got(pattern, **kwargs):
        return [m["id"] for m in db.get_memories(where_metadata=pattern, **kwargs)]

    for pattern in ({"topic": "t2"}, {"tags": ["g1"]}, {"n": 3.0, "tags": ["g2", "g0"]}):
        everything = expected(pattern)
        assert got(pattern, limit=25) == everything[:25]
        assert got(pattern, limit=25, offset=100) == everything[100:125]
        assert got(pattern, limit=None) == everything
        assert db.count_memories(where_metadata=pattern) == len(everything)
    assert got({"topic": "t1"}, user_id="u3", limit=10) == expected({"topic": "t1"}, user="u3")[:10]
    assert got({"topic": "none"}, limit=10) == []


# --- differential property test: reference == SQLite == PostgreSQL ---------------------------

KEY_ALPHABET = st.sampled_from([*"ab.\"\\%[]$' 0żé🐢", "\t", "\n", "\x01", "\u2028"])
keys = st.one_of(
    st.sampled_from(["a", "b", "topic", "a.b", "50%", "%s", '"', "[0]"]), st.text(KEY_ALPHABET, max_size=4)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.sampled_from([10**20, -(10**20), 2**64, 10**308, 10**4299, -(10**4300 - 1)]),
    st.sampled_from([0.0, 1.0, -1.0, 1.5, 2.0, 0.1, 1e16, 2.0**53, 1e20]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from(["", "1", "a", "A", "true", "null", "żółw", "%s", "'", '"']),
    st.text(max_size=3).filter(lambda s: "\x00" not in s and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=8,
)
documents = st.dictionaries(keys, json_values, max_size=5)


@st.composite
def pattern_from(draw, document):
    """A filter built from `document`: mostly contained in it, sometimes subtly not."""
    if isinstance(document, dict):
        chosen = draw(st.lists(st.sampled_from(sorted(document)), unique=True)) if document else []
        pattern = {key: draw(pattern_from(document[key])) for key in chosen}
        if draw(st.integers(0, 9)) == 0:
            pattern[draw(keys)] = draw(json_values)
        return pattern
    if isinstance(document, list):
        picked = draw(st.lists(st.sampled_from(document), max_size=3)) if document else []
        return [draw(pattern_from(element)) for element in picked]
    return draw(twin_of(document))


@st.composite
def twin_of(draw, value):
    """The same scalar, or one that looks alike to a careless implementation."""
    alike = [value]
    if isinstance(value, bool):
        alike += [int(value), str(value).lower()]
    elif isinstance(value, int):
        alike += [float(value) if abs(value) < 2**60 else value + 1, str(value), bool(value % 2), value + 1]
    elif isinstance(value, float):
        alike += [int(value) if value.is_integer() and abs(value) < 2**60 else value, str(value)]
    elif isinstance(value, str):
        alike += [value + "x", value.upper(), int(value) if value.isdigit() and value.isascii() else None]
    elif value is None:
        alike += [0, False, "null", {}]
    return draw(st.sampled_from(alike)) if draw(st.integers(0, 2)) == 0 else value


cases = documents.flatmap(lambda doc: st.tuples(st.just(doc), st.one_of(pattern_from(doc), documents)))
_thread_numbers = itertools.count()


DIFFERENTIAL_EXAMPLES = 2000


@settings(max_examples=DIFFERENTIAL_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=cases)
def test_sqlite_and_postgresql_agree_with_the_reference(stores, case):
    document, pattern = case
    expected = int(contains(document, pattern))
    thread = f"ex{next(_thread_numbers)}"
    for dialect, store in stores.items():
        store.insert_memory(user_id="prop", thread_id=thread, content="doc", metadata=document)
        found = store.count_memories(thread_id=thread, where_metadata=pattern)
        assert found == expected, (dialect, document, pattern)
