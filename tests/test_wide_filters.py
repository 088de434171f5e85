"""Filters of any width, depth and length: SQLite answers exactly as PostgreSQL and the reference.

Before, a `where_metadata` of 78 keys failed on SQLite with "parser stack overflow" and one of
1,000 keys with a RecursionError (the conditions were nested `((a AND b) AND c)` by
`functools.reduce`), while PostgreSQL answered 5,000 keys; a long `related_threads_any_of` ran
into SQLite's host-parameter limit.
"""

from __future__ import annotations

import pytest

from memoric.db import recall_queries
from memoric.db.jsonfilter import MAX_EXACT_CONDITIONS, contains
from memoric.json_input import MAX_JSON_DEPTH
from memoric.scoring import ScoreFormula
from tests.helpers.dialects import selected_dialects

WIDTHS = (1, 78, 100, 1000, 5000)
FULL_WIDTH = max(WIDTHS)
# More names than SQLite binds in one statement (250,000 in Debian's build, 32,766 by default):
# each name was bound twice, once for thread_id and once for related_threads.
MANY_THREADS = 150_000
MANY_IDS = 100_000


def value_of(i: int):
    """A JSON value of one of eight kinds, so that every kind of condition comes up."""
    kinds = (
        f"s{i}",
        i,
        i % 3 == 0,
        None,
        i + 0.5,
        [i, f"t{i}"],
        {"n": i, "s": f"n{i}"},
        2**60 + i,
    )
    return kinds[i % len(kinds)]


def other_value_of(i: int):
    """A value of the same kind as `value_of(i)` that it does not contain."""
    value = value_of(i)
    if isinstance(value, bool):
        return not value
    if value is None:
        return 0
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [i + 1]
    if isinstance(value, dict):
        return {"n": i + 1}
    return value + 1


FULL = {f"k{i}": value_of(i) for i in range(FULL_WIDTH)}


def documents() -> list[dict]:
    """The full document, and for each width one missing and one differing in its last key."""
    docs = [FULL, {}, {key: FULL[key] for key in list(FULL)[:10]}]
    for width in WIDTHS:
        last = f"k{width - 1}"
        docs.append({key: value for key, value in FULL.items() if key != last})
        docs.append({**FULL, last: other_value_of(width - 1)})
    return docs


def pattern_of(width: int) -> dict:
    return {f"k{i}": value_of(i) for i in range(width)}


@pytest.fixture(scope="module")
def wide(stores):
    """Every selected store holding the documents for user "wide"; {dialect: {id: document}}."""
    docs = documents()
    stored = {}
    for dialect, store in stores.items():
        store.truncate()
        stored[dialect] = {
            store.insert_memory(user_id="wide", content="doc", metadata=document): document
            for document in docs
        }
    return stored


def expected_ids(docs: dict, pattern: dict) -> list[int]:
    """The ids of the documents containing `pattern`, newest (highest id) first."""
    return sorted((memory_id for memory_id, doc in docs.items() if contains(doc, pattern)), reverse=True)


def found_ids(store, pattern, **filters) -> list[int]:
    return [memory["id"] for memory in store.get_memories(where_metadata=pattern, limit=None, **filters)]


@pytest.mark.parametrize("width", WIDTHS)
def test_a_filter_of_any_width_answers_as_the_reference_on_every_dialect(stores, wide, width):
    pattern = pattern_of(width)
    for dialect, store in stores.items():
        expected = expected_ids(wide[dialect], pattern)
        # the full document, those differing only further on, and the 10-key one for narrow filters
        assert len(expected) == 1 + 2 * sum(w > width for w in WIDTHS) + (width <= 10)
        assert found_ids(store, pattern, user_id="wide") == expected, dialect
        assert store.count_memories(user_id="wide", where_metadata=pattern) == len(expected), dialect
        first = store.get_memories(user_id="wide", where_metadata=pattern, limit=1)
        assert [memory["id"] for memory in first] == expected[:1], dialect


@pytest.mark.parametrize("width", WIDTHS)
def test_a_wide_filter_differing_only_in_its_last_key_matches_nothing_extra(stores, wide, width):
    last = f"k{width - 1}"
    for pattern in (
        {**pattern_of(width), last: other_value_of(width - 1)},
        {**pattern_of(width), "absent": 1},
    ):
        for dialect, store in stores.items():
            assert found_ids(store, pattern, user_id="wide") == expected_ids(wide[dialect], pattern), dialect


def test_a_wide_filter_in_recall(stores, wide):
    formula = ScoreFormula.from_config({"importance": 0.5, "recency": 0.3, "thread": 0.2, "decay_days": 60})
    pattern = pattern_of(FULL_WIDTH)
    for dialect, store in stores.items():
        ranked = recall_queries.ranked_memories(
            store, user_id="wide", formula=formula, where_metadata=pattern, limit=100
        )
        assert sorted(memory["id"] for memory in ranked) == sorted(expected_ids(wide[dialect], pattern))


def test_the_sqlite_pre_filter_is_bounded_and_the_rest_is_checked_exactly(stores, wide):
    """Keys beyond MAX_EXACT_CONDITIONS are left to the containment function, still exact."""
    width = MAX_EXACT_CONDITIONS + 2
    pattern = {**pattern_of(width), f"k{width - 1}": other_value_of(width - 1)}
    for dialect, store in stores.items():
        assert found_ids(store, pattern, user_id="wide") == expected_ids(wide[dialect], pattern), dialect


@pytest.mark.skipif(len(selected_dialects()) < 2, reason="compares two dialects; only one selected")
def test_both_dialects_return_the_same_rows_for_wide_filters(stores, wide):
    def rows(store, pattern):
        """The rows but for their timestamps (each store stamps rows with its own clock)."""
        return [
            {key: value for key, value in memory.items() if key not in ("created_at", "updated_at")}
            for memory in store.get_memories(user_id="wide", where_metadata=pattern, limit=None)
        ]

    for width in WIDTHS:
        pattern = pattern_of(width)
        assert rows(stores["sqlite"], pattern) == rows(stores["postgresql"], pattern)


def nested(levels: int, leaf) -> dict:
    """`levels` objects one inside the other around `leaf`: {"k": {"k": ... leaf}}."""
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def nested_lists(levels: int, leaf) -> list:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


DEEP_DOCUMENTS = [
    nested(MAX_JSON_DEPTH, 1),
    nested(MAX_JSON_DEPTH, "one"),
    nested(MAX_JSON_DEPTH - 1, [1, 2, 3]),
    nested(MAX_JSON_DEPTH - 1, {"a": True, "b": None}),
    {"l": nested_lists(MAX_JSON_DEPTH - 1, 1)},
    {"l": nested_lists(MAX_JSON_DEPTH - 1, "x")},
]
DEEP_PATTERNS = [
    nested(MAX_JSON_DEPTH, 1),
    nested(MAX_JSON_DEPTH, 1.0),
    nested(MAX_JSON_DEPTH, 2),
    nested(MAX_JSON_DEPTH, "one"),
    nested(MAX_JSON_DEPTH - 1, [3]),
    nested(MAX_JSON_DEPTH - 1, [4]),
    nested(MAX_JSON_DEPTH - 1, {"b": None}),
    nested(MAX_JSON_DEPTH - 1, {}),
    nested(32, {}),
    {"l": nested_lists(MAX_JSON_DEPTH - 1, 1)},
    {"l": nested_lists(MAX_JSON_DEPTH - 2, 1)},
    {"l": nested_lists(MAX_JSON_DEPTH - 1, "y")},
]


def stored(store, user_id: str, docs: list[dict]) -> dict[int, dict]:
    """{id: document} of `docs`, stored for `user_id` unless they already are."""
    if not store.count_memories(user_id=user_id):
        for document in docs:
            store.insert_memory(user_id=user_id, content="doc", metadata=document)
    memories = store.get_memories(user_id=user_id, limit=None)
    return {memory["id"]: memory["metadata"] for memory in memories}


@pytest.mark.parametrize("pattern", DEEP_PATTERNS, ids=range(len(DEEP_PATTERNS)))
def test_filters_as_deep_as_metadata_may_be_answer_as_the_reference(stores, pattern):
    for dialect, store in stores.items():
        docs = stored(store, "deep", DEEP_DOCUMENTS)
        assert sorted(docs.values(), key=repr) == sorted(DEEP_DOCUMENTS, key=repr)
        assert found_ids(store, pattern, user_id="deep") == expected_ids(docs, pattern), dialect
        assert [m["id"] for m in store.get_memories(user_id="deep", where_metadata=pattern)] == expected_ids(
            docs, pattern
        )[:50]


WIDE_ARRAY = [*range(5000), *(f"s{i}" for i in range(1000)), *({"o": i, "p": [i]} for i in range(1000))]
ARRAY_DOCUMENTS = [{"tags": WIDE_ARRAY}, {"tags": WIDE_ARRAY[:100]}, {"tags": "not a list"}]
ARRAY_PATTERNS = [
    {"tags": list(range(5000))},
    {"tags": [4999, "s999", {"o": 999}]},
    {"tags": [{"p": [i]} for i in range(0, 1000, 7)]},
    {"tags": [*range(5000), 5000]},
    {"tags": ["s1000"]},
    {"tags": [[0]]},
    {"tags": []},
]


@pytest.mark.parametrize("pattern", ARRAY_PATTERNS, ids=range(len(ARRAY_PATTERNS)))
def test_wide_arrays_in_filters_answer_as_the_reference(stores, pattern):
    for dialect, store in stores.items():
        docs = stored(store, "arrays", ARRAY_DOCUMENTS)
        assert found_ids(store, pattern, user_id="arrays") == expected_ids(docs, pattern), dialect


def test_related_threads_any_of_takes_any_number_of_threads(stores):
    threads = [f"thread-{i}" for i in range(MANY_THREADS)]
    for dialect, store in stores.items():
        store.insert_memory(user_id="r", thread_id="thread-7", content="in a listed thread")
        store.insert_memory(
            user_id="r", thread_id="elsewhere", content="related", related_threads=[threads[-1]]
        )
        store.insert_memory(user_id="r", thread_id="unrelated", content="no", related_threads=["thread-x"])
        found = store.get_memories(user_id="r", related_threads_any_of=threads, limit=None)
        assert [memory["content"] for memory in found] == ["related", "in a listed thread"], dialect
        assert store.count_memories(user_id="r", related_threads_any_of=threads) == 2, dialect
        store.delete_memories(memory_ids=[memory["id"] for memory in store.get_memories(user_id="r")])


def test_memory_id_lists_of_any_length_update_and_delete_exactly_the_rows_there(stores):
    for dialect, store in stores.items():
        kept = [store.insert_memory(user_id="ids", content=f"m{i}") for i in range(3)]
        many = [*range(-MANY_IDS // 2, 0), *range(10**6, 10**6 + MANY_IDS // 2), kept[0], kept[2]]
        assert store.update_tier(memory_ids=many, new_tier="long_term") == 2, dialect
        assert store.mark_summarized(memory_ids=many) == 2, dialect
        assert store.delete_memories(memory_ids=many) == 2, dialect
        assert [memory["id"] for memory in store.get_memories(user_id="ids")] == [kept[1]], dialect
        store.delete_memories(memory_ids=[kept[1]])
