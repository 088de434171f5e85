"""The text postings follow every write: after each public write path, on both dialects, they equal
what a rebuild from the stored memories would write."""

from __future__ import annotations

import io

import pytest

from memoric import Memoric
from memoric.db import postings
from memoric.db.postings import posting_rows
from memoric.errors import MemoricError
from memoric.transfer import copy_database, export_jsonl, import_jsonl
from tests.helpers.chain import facade
from tests.helpers.odd_input import LyingText, PrintedText
from tests.helpers.postings import assert_postings_match, stored_postings

pytestmark = pytest.mark.citus  # also on a Citus cluster: the same answers, bit for bit


CONFIG = {
    "tiers": [{"name": "short_term", "trim_chars": 12}, {"name": "long_term"}],
    "summarization": {"enabled": True, "min_records": 3, "max_chars": 200},
}


def test_every_write_path_keeps_the_postings_equal_to_a_rebuild(new_dsn):
    memoric = Memoric(new_dsn(), config=CONFIG)
    store = memoric.store
    first = memoric.save("ada", "Refund policy: refunds within fourteen days", thread_id="t1")
    memoric.save("ada", "refund refund REFUND", namespace="shop")
    assert_postings_match(store)
    store.insert_memories(
        [
            {
                "user_id": "bob",
                "content": f"bulk memory {n} on tea, refunds",
                "thread_id": "t2",
                "tier": "long_term",
            }
            for n in range(7)
        ]
        + [
            {"user_id": "bob", "content": "explicit id 👍 café", "id": 500},
            {"user_id": "eve", "content": "..."},
        ],
        batch_size=3,
    )
    assert_postings_match(store)
    store.update_content(memory_id=first, new_content="Nothing about money any more")
    assert_postings_match(store)
    counts = memoric.run_policies()  # trims the short-term tier, then summarizes threads
    assert counts["trimmed"] > 0 and counts["summaries_created"] > 0
    assert_postings_match(store)
    memoric.forget("eve")
    store.delete_memories(memory_ids=[500, first])
    assert_postings_match(store)

    exported = io.StringIO()
    export_jsonl(store, exported)
    store.delete_memories(user_id="bob")
    import_jsonl(store, exported.getvalue().splitlines())  # the missing come back, the others are skipped
    assert_postings_match(store)
    copy = Memoric(new_dsn())
    copy.migrate()
    copy_database(store, copy.store)
    assert_postings_match(copy.store)
    assert stored_postings(copy.store) == stored_postings(store)
    store.truncate()
    assert stored_postings(store) == ([], [])


def test_a_batch_writes_its_terms_in_the_lookup_index_order():
    """Each user and namespace's terms together, by term, memory order within a term: a bulk
    insert visits each page of the lookup index once."""
    memories = [
        {"id": 1, "user_id": "ada", "namespace": None, "content": "zebra apple"},
        {"id": 2, "user_id": "bob", "namespace": "work", "content": "apple"},
        {"id": 3, "user_id": "ada", "namespace": None, "content": "mango apple"},
        {"id": 4, "user_id": "ada", "namespace": "work", "content": "apple"},
    ]
    terms, documents = posting_rows(memories)
    assert [(user, namespace, term, memory_id) for memory_id, user, namespace, term, _, _ in terms] == [
        ("ada", None, "apple", 1),
        ("ada", None, "apple", 3),
        ("ada", None, "mango", 3),
        ("ada", None, "zebra", 1),
        ("bob", "work", "apple", 2),
        ("ada", "work", "apple", 4),
    ]
    assert [document[0] for document in documents] == [1, 2, 3, 4]


def test_a_bulk_insert_that_fails_midway_leaves_no_postings(db):
    taken = db.insert_memory(user_id="ada", content="already here")
    rows = [{"user_id": "ada", "content": f"new words {n}"} for n in range(5)]
    with pytest.raises(MemoricError):
        db.insert_memories([*rows, {"user_id": "ada", "content": "clash", "id": taken}], batch_size=100)
    assert len(db.get_memories(limit=None)) == 1
    assert_postings_match(db)


def test_a_batch_longer_than_one_statement_posts_every_memory(db, monkeypatch):
    monkeypatch.setattr(postings, "POSTED_PER_STATEMENT", 3)
    users = ["ada", "bob", "cy"]
    rows = [
        {"user_id": users[n % 3], "namespace": [None, "work"][n % 2], "content": f"word{n % 4} shared {n}"}
        for n in range(20)
    ]
    db.insert_memories(rows, batch_size=20)
    assert len(db.get_memories(limit=None)) == 20
    assert_postings_match(db)


def test_text_given_as_a_str_subclass_is_stored_as_its_characters_by_every_write(db):
    """The checks of every text field turn a subclass into the plain text of its characters."""
    fields = {"user_id": "ada", "namespace": "work", "thread_id": "t1", "content": "refund tea"}
    given = {name: LyingText(value) for name, value in fields.items()}
    given |= {"tier": LyingText("long_term"), "related_threads": [LyingText("t2")]}
    db.insert_memories([given, {**given, "content": LyingText("zebra tea")}])
    saved = db.insert_memory(**given)
    memories = db.get_memories(limit=None)
    expected = {**fields, "tier": "long_term", "related_threads": ["t2"]}
    for memory in memories:
        stored = {name: memory[name] for name in expected}
        assert stored == {**expected, "content": stored["content"]}
    assert sorted(memory["content"] for memory in memories) == ["refund tea", "refund tea", "zebra tea"]
    assert_postings_match(db)
    recalled = facade(db).retrieve("ada", query="refund", scope="user", namespace="work")
    assert sorted(memory["id"] for memory in recalled) == sorted(
        memory["id"] for memory in memories if memory["content"] == "refund tea"
    )
    assert saved in [memory["id"] for memory in recalled]


def test_filters_choices_and_tier_names_given_as_str_subclasses_go_by_their_characters(db):
    memoric = facade(db, config={"tiers": [{"name": LyingText("short_term")}, {"name": "long_term"}]})
    saved = memoric.save("ada", "refund tea", metadata={"k": "v", "topic": "billing"})
    with pytest.raises(MemoricError, match="tier must be one of"):
        memoric.save("ada", "refund", tier="no_such_tier")
    found = memoric.retrieve("ada", scope="user", query="refund", metadata_filter={PrintedText("k"): "v"})
    assert [memory["id"] for memory in found] == [saved]
    with pytest.raises(MemoricError, match="needs metadata_filter"):
        memoric.retrieve("ada", scope=LyingText("topic"))
    memoric.close()


def test_odd_contents_have_a_document_row_and_only_their_terms(db):
    contents = ["!!!", "👍" * 3, "a", "x" * 100_000, "word " * 20_000, "e\u0301" * 10]
    for content in contents:
        db.insert_memory(user_id="ada", content=content)
    assert_postings_match(db)
    documents = {length for *_, length in stored_postings(db)[1]}
    assert documents == {0, 1, 20_000}, "punctuation and emoji only: a document of length 0"
