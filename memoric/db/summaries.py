"""Thread summaries stand and fall with their sources.

A thread summary (metadata containing `SUMMARY_METADATA`) holds text of the memories of its thread
that it summarized; those are marked `summarized` and hidden from recall. Which summary holds
which source is not recorded, so a change that makes a summary untrue releases all of its
thread's summaries at once: deleting a summary or a summarized memory, or editing the content or
metadata of a summarized memory, deletes the thread's summaries and unmarks its summarized
memories, which come back into recall and are summarized again by the next policy run. So
no fact outlives its deletion in a summary, no edit is hidden behind an older summary, and no
source is left hidden once the summary holding it is gone. A summary is any memory whose
metadata holds SUMMARY_METADATA, marked summarized or not; one whose metadata was edited to
lack it is an ordinary memory, text and all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import peewee

from memoric.db import cluster_members, postings
from memoric.db.chunks import chunks
from memoric.db.filters import namespace_is
from memoric.db.jsonfilter import all_of
from memoric.db.rows import ID_CHUNK_SIZE

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

SUMMARY_METADATA = {"kind": "thread_summary"}
SOURCE_EDITS = frozenset({"content", "metadata"})  # what a summarizer reads that an update changes

Thread = tuple[str, str | None, str]  # (user_id, namespace, thread_id)


def is_summary(store: MemoryStore) -> peewee.Node:
    """True for a thread summary: a memory whose metadata holds SUMMARY_METADATA."""
    return store.Memory.metadata.contains(SUMMARY_METADATA)


def is_summarized(store: MemoryStore) -> peewee.Node:
    """True for a memory a thread summary holds."""
    return store.Memory.summarized == True  # noqa: E712 (SQL comparison)


def involved(store: MemoryStore) -> peewee.Node:
    """True for a summary or a memory one holds: what a release deletes or unmarks."""
    return is_summary(store) | is_summarized(store)


def thread_fields(store: MemoryStore) -> tuple:
    """What a DELETE returns for `released_threads`: namespace, thread, and `involved`."""
    m = store.Memory
    return m.namespace, m.thread_id, involved(store)


def released_threads(rows: Iterable[tuple]) -> set[Thread]:
    """The threads whose summaries these memories' deletion or edit makes untrue, of their
    (user_id, namespace, thread_id, whether involved), as the statement returned them: a memory
    a policy run marked meanwhile is seen marked once that run commits."""
    return {
        (user_id, namespace, thread_id)
        for user_id, namespace, thread_id, involved in rows
        if involved and thread_id is not None
    }


def lock_threads(store: MemoryStore, selections: list[list], which: peewee.Node) -> None:
    """Before a delete or edit of the memories meeting any of `selections` (lists of conditions,
    one per chunk of ids): lock every summary and summarized memory of the threads of those of
    them that are `which`, thread after thread in one order, each in id order. Two changes in
    one thread then take turns; each locking its own row first, then the other's to release the
    thread, they deadlocked (PostgreSQL; on SQLite writers take turns anyway). What this cannot
    see (marks of a policy run not committed yet) can still meet in a deadlock: `deadlocks`."""
    m = store.Memory
    found = m.select(m.user_id, m.namespace, m.thread_id).distinct()
    threads = set()
    for conditions in selections:
        threads |= set(found.where(all_of([*conditions, which, m.thread_id.is_null(False)])).tuples())
    for thread in sorted(threads, key=thread_order):
        query = m.select(m.id).where(all_of([*_in_thread(store, thread), involved(store)])).order_by(m.id)
        store.dialect.locked_rows(store.database, query)


def release(
    store: MemoryStore, threads: set[Thread], kept: Iterable[int] = (), deleted: Iterable[tuple] = ()
) -> int:
    """Delete the summaries of these threads and unmark their summarized memories, `updated_at`
    left as it is (inside the caller's transaction); how many summaries were deleted. `kept`:
    ids just edited, never deleted (an edit may give a memory a summary's metadata); `deleted`:
    rows the caller deleted, taken out of clusters with the summaries in one pass."""
    m = store.Memory
    kept = sorted(set(kept))
    released = []
    for thread in sorted(threads, key=thread_order):
        where = _in_thread(store, thread)
        its_summaries = [*where, is_summary(store), *([m.id.not_in(kept)] if kept else [])]
        released += postings.delete_memories(store, its_summaries)
        marked = m.select(m.id).where(all_of([*where, is_summarized(store)])).order_by(m.id).tuples()
        for chunk in chunks([memory_id for (memory_id,) in marked], ID_CHUNK_SIZE):
            unmarked = m.id.in_(chunk) & (m.user_id == thread[0]) & is_summarized(store)
            m.update(summarized=False).where(unmarked).execute()
    cluster_members.forget(store, [*deleted, *released])
    return len(released)


def _in_thread(store: MemoryStore, thread: Thread) -> list:
    m = store.Memory
    user_id, namespace, thread_id = thread
    return [m.user_id == user_id, namespace_is(store, namespace), m.thread_id == thread_id]


def thread_order(thread: Thread) -> tuple:
    """The sort key of a (user_id, namespace, thread_id): by user, then namespace (None first),
    then thread; the one order in which threads are locked and summarized."""
    user_id, namespace, thread_id = thread
    return user_id, namespace is not None, namespace or "", thread_id
