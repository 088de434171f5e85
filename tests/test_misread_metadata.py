"""Metadata another writer stores so that SQLite's JSON functions would read it unlike memoric and
PostgreSQL: a member name with an escape where none is needed (Python's `json.dumps` writes
`caf\\u00e9` by default), or a member named twice. SQLite's filters, topics and clusters missed such
memories or matched the wrong value; SQLite now refuses such a write, saying why, and migration
010 writes what was stored before as memoric reads it. PostgreSQL's JSONB reads it as memoric does."""

from __future__ import annotations

import contextlib
import re
import sqlite3

import pytest

from memoric.db.dialects import sqlite_keys
from memoric.db.jsoncodec import load_json
from memoric.db.jsonfilter import contains
from memoric.db.store import MemoryStore
from memoric.db.urls import sqlite_path
from memoric.errors import MigrationError
from memoric.migrate import Migrations
from tests.helpers.chain import HEAD, UNICODE_TERMS
from tests.helpers.dialects import requires_postgres

# (text another writer stores, a pattern memoric's reader says it holds, one it says it does not)
MISREAD = [
    ('{"caf\\u00e9": "central", "topic": "food"}', {"café": "central"}, {"caf": "central"}),
    ('{"a\\/b": 1}', {"a/b": 1}, {"a/b": 2}),
    ('{"nested": {"\\u00e9t\\u00e9": [1, 2]}}', {"nested": {"été": [2]}}, {"nested": {"ete": [2]}}),
    ('{"a": {"b": 1, "b": 2}}', {"a": {"b": 2}}, {"a": {"b": 1}}),
    ('{"topic": "x", "topic": "y"}', {"topic": "y"}, {"topic": "x"}),
    ('{"\\u0074opic": "travel"}', {"topic": "travel"}, {"topic": "food"}),
]
# Names that need an escape in JSON, which memoric writes as such: found, never refused.
NEEDED_ESCAPES = {'say "hi"': 1, "back\\slash": 2, "line\nbreak": 3, "tab\there": {"x\u001fy": [4]}}
REFUSED = r"^memoric: (a metadata member name|the metadata)"
# Names written as they are: none refused either.
PLAIN = {"café": "é", "a/b": 5, "x.y": 6, "\u2028": 7, "emoji😀": {"ñ": [8, {"é": 9}]}}


def raw_sqlite(store: MemoryStore) -> contextlib.closing:
    """A connection of another writer to the store's SQLite file."""
    return contextlib.closing(sqlite3.connect(sqlite_path(store.dsn)))


@pytest.fixture
def sqlite_store(tmp_path):
    store = MemoryStore(f"sqlite:///{tmp_path / 'memories.db'}")
    Migrations(store).upgrade()
    yield store
    store.close()


@pytest.mark.parametrize("text, _holds, _lacks", MISREAD)
def test_sqlite_refuses_a_write_it_would_read_otherwise_saying_why(sqlite_store, text, _holds, _lacks):
    memory_id = sqlite_store.insert_memory(user_id="ada", content="x", metadata={"topic": "food"})
    keys_before = sqlite_store.database.execute_sql(f"SELECT * FROM {sqlite_keys.TABLE}").fetchall()
    with raw_sqlite(sqlite_store) as other:
        for sql, params in [
            ("UPDATE memories SET metadata = ? WHERE id = ?", (text, memory_id)),
            ("INSERT INTO memories (user_id, content, tier, score, metadata, related_threads, summarized, "
             "created_at, updated_at) VALUES ('bob', 'y', 'short_term', 50, ?, '[]', 0, "
             "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')", (text,)),
        ]:  # fmt: skip
            with pytest.raises(
                sqlite3.IntegrityError, match=r"^memoric: (a metadata member name|the metadata)"
            ):
                other.execute(sql, params)
            other.rollback()
    assert [m["metadata"] for m in sqlite_store.get_memories(limit=None)] == [{"topic": "food"}]
    assert sqlite_store.database.execute_sql(f"SELECT * FROM {sqlite_keys.TABLE}").fetchall() == keys_before


@requires_postgres
@pytest.mark.parametrize("text, holds, lacks", MISREAD)
def test_postgresql_reads_such_a_write_as_memoric_does(new_postgres_url, text, holds, lacks):
    store = MemoryStore(new_postgres_url())
    Migrations(store).upgrade()
    memory_id = store.insert_memory(user_id="ada", content="x")
    store.database.execute_sql("UPDATE memories SET metadata = %s::jsonb WHERE id = %s", (text, memory_id))
    assert store.get_memory(memory_id)["metadata"] == load_json(text)
    assert [m["id"] for m in store.get_memories(user_id="ada", where_metadata=holds)] == [memory_id]
    assert store.get_memories(user_id="ada", where_metadata=lacks) == []
    store.close()


@pytest.mark.parametrize("metadata", [NEEDED_ESCAPES, PLAIN])
def test_memorics_own_writes_are_never_refused_and_always_found(store, metadata):
    Migrations(store).upgrade()
    first = store.insert_memory(user_id="ada", content="x", metadata={"topic": "food"})
    second = store.insert_memory(user_id="ada", content="y", metadata=metadata)
    store.update_metadata(memory_id=first, new_metadata=metadata)
    store.insert_memories([{"user_id": "ada", "content": "z", "metadata": metadata}])
    for name, value in metadata.items():
        found = store.get_memories(user_id="ada", where_metadata={name: value}, limit=None)
        assert sorted(m["id"] for m in found) == [first, second, second + 1]


def test_010_writes_what_was_stored_before_as_memoric_reads_it(sqlite_store):
    """Stored before the triggers refused it (written here with them dropped, its keys posted by
    the repair), then the migration: the filters find what memoric returns, and a memory memoric
    reads the same way keeps its text byte for byte."""
    plain = sqlite_store.insert_memory(user_id="ada", content="plain", metadata=PLAIN)
    plain_text = stored_text(sqlite_store, plain)
    for trigger in sqlite_keys.TRIGGERS:
        sqlite_store.database.execute_sql(f"DROP TRIGGER {trigger}")
    with raw_sqlite(sqlite_store) as other:
        for text, _, _ in MISREAD:
            other.execute(
                "INSERT INTO memories (user_id, content, tier, score, metadata, related_threads, summarized, "
                "created_at, updated_at) VALUES ('ada', ?, 'short_term', 50, ?, '[]', 0, "
                "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')",
                (text, text),
            )
        other.commit()
    sqlite_keys.repair(sqlite_store.database)
    migrations = Migrations(sqlite_store)
    assert migrations.downgrade(UNICODE_TERMS) == [HEAD]  # 010's rollback changes nothing
    assert migrations.upgrade() == [HEAD]
    by_content = {m["content"]: m for m in sqlite_store.get_memories(limit=None)}
    for text, holds, lacks in MISREAD:
        memory = by_content[text]
        assert memory["metadata"] == load_json(text)
        assert contains(memory["metadata"], holds) and not contains(memory["metadata"], lacks)
        assert memory["id"] in [m["id"] for m in sqlite_store.get_memories(where_metadata=holds, limit=None)]
        assert memory["id"] not in [
            m["id"] for m in sqlite_store.get_memories(where_metadata=lacks, limit=None)
        ]
    assert stored_text(sqlite_store, plain) == plain_text


def stored_text(store: MemoryStore, memory_id: int) -> str:
    sql = "SELECT metadata FROM memories WHERE id = ?"
    return store.database.execute_sql(sql, (memory_id,)).fetchone()[0]


def found_by(store: MemoryStore, pattern: dict) -> list[int]:
    return [memory["id"] for memory in store.get_memories(where_metadata=pattern, limit=None)]


@pytest.mark.parametrize(
    "text, said",
    [
        ('{"caf\\u00e9": 1, "v": NaN}', "memories {id} hold metadata SQLite does not read as JSON"),
        ('{"caf\\u00e9": "\\ud800"}', "memory {id}'s metadata cannot be written again as memoric reads it"),
    ],
)
def test_010_names_the_memory_it_cannot_write_again(sqlite_store, text, said):
    """Its failure said "malformed JSON" or "utf-8 codec can't encode", naming no row."""
    migrations = Migrations(sqlite_store)
    migrations.downgrade(UNICODE_TERMS)
    memory_id = sqlite_store.insert_memory(user_id="ada", content="x")
    for trigger in sqlite_keys.TRIGGERS:
        sqlite_store.database.execute_sql(f"DROP TRIGGER {trigger}")
    with raw_sqlite(sqlite_store) as other:
        other.execute("UPDATE memories SET metadata = ? WHERE id = ?", (text, memory_id))
        other.commit()
    with pytest.raises(MigrationError, match=re.escape(said.format(id=memory_id))):
        migrations.upgrade()
    assert migrations.current() == UNICODE_TERMS
