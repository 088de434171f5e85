"""`JSONDocumentField`'s query methods, used directly as a peewee user would, on both dialects.

`contains` (`@>`), `contains_any` (`?|`) and `string_at` are BinaryJSONField's operators on
PostgreSQL and memoric's own SQL on SQLite. Each dialect is checked against a Python reference,
so the two give the same rows; documents of every JSON kind but null (a NULL column) are written
through the model, whatever memoric's own input rules would allow.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from memoric.db.jsonfilter import contains, is_number

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DOCUMENTS = [
    {},
    {"topic": "billing", "n": 1},
    {"topic": "Billing"},
    {"topic": 7, "category": "a"},
    {"topic": None},
    {"topic": ["billing"]},
    {"tags": ["a", "b"], "nested": {"topic": "billing", "deep": [1, {"x": 1.5}]}},
    {"50%": "v", 'quo"te': "q", "a.b": "dot", "tab\tkey": "t", "n": 1.0},
    ["a", "b", 1, ["c"], {"a": 1}],
    [1, 2.5, True, None],
    [],
    "a",
    "billing",
    3,
    True,
]
PATTERNS = [
    {},
    {"topic": "billing"},
    {"n": 1},
    {"topic": None},
    {"topic": ["billing"]},
    {"nested": {"deep": [{"x": 1.5}]}},
    {"50%": "v", 'quo"te': "q"},
    ["a"],
    ["c"],
    [["c"]],
    [{"a": 1}],
    [],
    [1],
    "a",
    3,
    True,
]
STRING_SETS = [[], ["a"], ["topic"], ["billing"], ["c", "50%"], ['quo"te'], ["1"], ["nested", "zzz"]]
KEYS = ["topic", "category", "n", "50%", 'quo"te', "a.b", "tab\tkey", "missing"]


def reference_contains_any(document, strings: list[str]) -> bool:
    """PostgreSQL's `?|`: a string is a top-level key, a string element, or the string document."""
    if isinstance(document, dict):
        present = set(document)
    elif isinstance(document, list):
        present = {element for element in document if isinstance(element, str)}
    else:
        present = {document} if isinstance(document, str) else set()
    return any(string in present for string in strings)


def reference_string_at(document, key: str) -> str | None:
    value = document.get(key) if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


@pytest.fixture
def documents(db) -> dict[int, object]:
    """Every document of DOCUMENTS stored as a memory's metadata, by memory id."""
    m = db.Memory
    stored = {}
    for document in DOCUMENTS:
        row = {"user_id": "u", "content": "c", "tier": "short_term", "metadata": document}
        stored[m.insert(**row, related_threads=[], created_at=NOW, updated_at=NOW).execute()] = document
    return stored


def matching(db, condition) -> list[int]:
    m = db.Memory
    return [row.id for row in m.select(m.id).where(condition).order_by(m.id)]


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
def test_contains_is_jsonb_containment(db, documents, pattern):
    expected = [memory_id for memory_id, document in documents.items() if contains(document, pattern)]
    assert matching(db, db.Memory.metadata.contains(pattern)) == expected


@pytest.mark.parametrize("strings", STRING_SETS, ids=repr)
def test_contains_any_is_the_key_or_element_test(db, documents, strings):
    expected = [i for i, document in documents.items() if reference_contains_any(document, strings)]
    assert matching(db, db.Memory.metadata.contains_any(strings)) == expected
    assert matching(db, db.Memory.metadata.contains_any(*strings)) == expected


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_string_at_reads_only_strings(db, documents, key):
    m = db.Memory
    query = m.select(m.id, m.metadata.string_at(key).alias("value")).order_by(m.id)
    found = {row["id"]: row["value"] for row in query.dicts()}
    assert found == {i: reference_string_at(document, key) for i, document in documents.items()}


def test_contains_and_contains_any_combine_with_other_conditions(db, documents):
    m = db.Memory
    either = m.metadata.contains({"topic": "billing"}) | m.metadata.contains_any(["a"])
    expected = [
        i
        for i, document in documents.items()
        if contains(document, {"topic": "billing"}) or reference_contains_any(document, ["a"])
    ]
    assert matching(db, either) == expected
    numbers = [i for i, document in documents.items() if is_number(document)]
    assert matching(db, m.metadata.contains(3)) == numbers


def test_documents_read_back_as_written_through_sql_of_the_connection(db, documents):
    """Raw SQL on memoric's connection reads every kind of JSON document as it was written
    (on PostgreSQL memoric's own JSONB reader; psycopg2's process-wide one stays as it was)."""
    m = db.Memory
    cursor = db.database.execute_sql(f'SELECT "id", "metadata" FROM "{m._meta.table_name}" ORDER BY "id"')
    read = {memory_id: value for memory_id, value in cursor.fetchall()}
    if isinstance(read[min(read)], str):  # SQLite hands back the text
        read = {memory_id: json.loads(value) for memory_id, value in read.items()}
    assert read == documents
    assert all(type(read[key]) is type(documents[key]) for key in documents)


def test_other_psycopg2_connections_keep_their_json_reader(db, documents):
    """memoric's JSONB reader is set on its own connections, never process-wide."""
    if not db.is_postgres:
        pytest.skip("JSONB and its reader are PostgreSQL's")
    psycopg2_extensions = pytest.importorskip("psycopg2.extensions")
    before = psycopg2_extensions.string_types.get(3802)  # JSONB's type oid
    db.database.execute_sql("SELECT 1").fetchall()
    assert psycopg2_extensions.string_types.get(3802) is before
