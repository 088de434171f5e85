"""The text postings as stored, and as a rebuild from the stored memories would write them."""

from __future__ import annotations

from memoric.db.postings import posting_rows


def stored_postings(store) -> tuple[list[tuple], list[tuple]]:
    """The rows of memory_terms and memory_documents, sorted."""
    t, d = store.MemoryTerm, store.MemoryDocument
    terms = sorted(t.select(t.memory_id, t.user_id, t.namespace, t.term, t.tf, t.dl).tuples())
    documents = sorted(d.select(d.memory_id, d.user_id, d.namespace, d.length).tuples())
    return terms, documents


def rebuilt_postings(store) -> tuple[list[tuple], list[tuple]]:
    """The postings a rebuild from the stored memories would write, sorted."""
    terms, documents = posting_rows(store.get_memories(limit=None))
    return sorted(terms), sorted(documents)


def assert_postings_match(store) -> None:
    assert stored_postings(store) == rebuilt_postings(store)
