"""Thread summaries stand and fall with their sources.

A thread summary (metadata containing `SUMMARY_METADATA`) holds text of the memories of its thread
that it summarized; those are marked `summarized` and hidden from recall. Which summary holds
which source is not recorded, so a change that makes a summary untrue releases all of its
thread's summaries at once: deleting a summary or a summarized memory, or editing the content or
metadata of a summarized memory, deletes the thread's summaries and unmarks its summarized
memories, which come back into recall and are summarized again by the next policy run. So
no fact outlives its deletion in a summary, no edit is hidden behind an older summary, and no
source is left hidden once the summary holding it is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import peewee

from memoric.db import postings
from memoric.db.filters import namespace_is
from memoric.db.jsonfilter import all_of
from memoric.db.rows import ID_CHUNK_SIZE

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

SUMMARY_METADATA = {"kind": "thread_summary"}
SOURCE_EDITS = frozenset({"content", "metadata"})  # what a summarizer reads that an update changes

Thread = tuple[str, str | None, str]  # (user_id, namespace, thread_id)


def is_summary(store: MemoryStore) -> peewee.Node:
    """True for a thread summary: metadata holding SUMMARY_METADATA, not itself summarized."""
    m = store.Memory
    return m.metadata.contains(SUMMARY_METADATA) & (m.summarized == False)  # noqa: E712 (SQL)


def is_summarized(store: MemoryStore) -> peewee.Node:
    """True for a memory a thread summary holds."""
    return store.Memory.summarized == True  # noqa: E712 (SQL comparison)


def thread_fields(store: MemoryStore) -> tuple:
    """What a DELETE returns for `released_threads`: namespace, thread, and whether the memory is
    a summary or summarized."""
    m = store.Memory
    return m.namespace, m.thread_id, is_summary(store) | is_summarized(store)


def released_threads(rows: Iterable[tuple]) -> set[Thread]:
    """The threads whose summaries these memories' deletion or edit makes untrue, of their
    (user_id, namespace, thread_id, whether a summary or summarized), as the statement returned
    them: a memory a policy run marked meanwhile is seen marked once that run commits."""
    return {
        (user_id, namespace, thread_id)
        for user_id, namespace, thread_id, involved in rows
        if involved and thread_id is not None
    }


def release(store: MemoryStore, threads: set[Thread]) -> int:
    """Delete the summaries of these threads and unmark their summarized memories (inside the
    caller's transaction); how many summaries were deleted. Rows are unmarked in id order, the
    order in which a policy run marks them, so the two wait for each other, never deadlock."""
    m = store.Memory
    deleted = 0
    for user_id, namespace, thread_id in sorted(threads, key=_thread_order):
        thread = [m.user_id == user_id, namespace_is(store, namespace), m.thread_id == thread_id]
        deleted += len(postings.delete_memories(store, [*thread, is_summary(store)]))
        marked = m.select(m.id).where(all_of([*thread, is_summarized(store)])).order_by(m.id).tuples()
        for chunk in peewee.chunked([memory_id for (memory_id,) in marked], ID_CHUNK_SIZE):
            unmarked = m.id.in_(chunk) & (m.user_id == user_id) & is_summarized(store)
            m.update(summarized=False, updated_at=store.clock()).where(unmarked).execute()
    return deleted


def _thread_order(thread: Thread) -> tuple:
    user_id, namespace, thread_id = thread
    return user_id, namespace is not None, namespace or "", thread_id
