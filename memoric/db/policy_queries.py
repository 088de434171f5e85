"""The queries of the tier policies (`memoric.policies`): expiry, trimming, thread summaries.

Memories are selected by slices of tier and age: `(tier, updated_before, updated_since)`, either
bound None for "any"; a list of slices means any of them. Updates run in batches of consecutive
ids, one transaction each (`batched_update`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import peewee

from memoric import validation
from memoric.db import postings
from memoric.db.chunks import chunks
from memoric.db.deadlocks import retried
from memoric.db.driver_errors import translate_errors
from memoric.db.filters import filter_conditions, in_slices, lacks_metadata, select_memories
from memoric.db.jsonfilter import all_of
from memoric.db.rows import ID_CHUNK_SIZE, ids_left, memory_dict, memory_row
from memoric.db.summaries import thread_order

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

# What a summary is made of: a source changed in any of these since the summarizer read it
# makes the summary untrue (content, score), or the memory no source (tier, metadata, thread).
SOURCE_FIELDS = ("content", "tier", "score", "metadata", "thread_id", "namespace")


@translate_errors
def count_in_slices(store: MemoryStore, *, slices, user_id=None, longer_than: int | None = None) -> int:
    """Memories in any of `slices`, optionally only those with content longer than `longer_than`."""
    m = store.Memory
    conditions = [in_slices(store, slices), *filter_conditions(store, user_id=user_id)]
    if longer_than is not None:
        conditions.append(peewee.fn.LENGTH(m.content) > validation.count("longer_than", longer_than))
    return select_memories(store, conditions).count()


def _batched_update(store: MemoryStore, conditions: list, values: dict, batch_size: int, on_batch) -> int:
    """UPDATE the rows matching `conditions` in batches of consecutive ids, one transaction each.

    A batch ends at the `batch_size`-th matching id after the previous batch (found in SQL,
    no ids travel to Python), so it touches neighbouring pages and uses the primary key.
    `on_batch(n)` is called after each batch.
    """
    batch_size = max(1, validation.count("batch_size", batch_size))
    m = store.Memory
    changed = last_id = 0
    while True:
        after = [*conditions, m.id > last_id]
        boundary = (
            select_memories(store, after).select(m.id).order_by(m.id).offset(batch_size - 1).limit(1).scalar()
        )
        bounded = after if boundary is None else [*after, m.id <= boundary]
        with store.database.atomic():
            done = _update(store, bounded, values)
        changed += done
        if on_batch is not None and done:
            on_batch(done)
        if boundary is None:
            return changed
        last_id = boundary


def _update(store: MemoryStore, conditions: list, values: dict) -> int:
    """UPDATE the rows matching `conditions`; rows changed. A new content rebuilds their postings."""
    m = store.Memory
    query = m.update(**values).where(all_of(conditions))
    if "content" not in values:
        return query.execute()
    changed = list(query.returning(*postings.posted_fields(m)).dicts().execute())
    postings.reindex(store, changed)
    return len(changed)


@translate_errors
def move_expired(
    store: MemoryStore,
    *,
    from_tier,
    to_tier,
    updated_before,
    user_id=None,
    batch_size: int = 10000,
    on_batch=None,
) -> int:
    """Move memories of `from_tier` not updated since `updated_before` to `to_tier`.

    Set-based and batched (`_batched_update`; the candidates come from the (tier, updated_at)
    index or the primary key); moving sets `updated_at` to now.
    """
    to_tier = validation.tier(to_tier, store.tiers)
    conditions = [
        in_slices(store, [(from_tier, updated_before, None)]),
        *filter_conditions(store, user_id=user_id),
    ]
    values = {"tier": to_tier, "updated_at": store.clock()}
    return _batched_update(store, conditions, values, batch_size, on_batch)


@translate_errors
def trim_content(
    store: MemoryStore, *, tier, max_chars: int, user_id=None, batch_size: int = 10000, on_batch=None
) -> int:
    """Cut content longer than `max_chars` in `tier` to `max_chars` characters ending in "…".

    Batched like `move_expired`; `updated_at` is left alone (trimming is not new information).
    """
    max_chars = validation.count("max_chars", max_chars)
    if max_chars < 2:
        raise validation.ValidationError(f"max_chars must be at least 2, got {max_chars}")
    # No text on either dialect is longer than MAX_COUNT characters (PostgreSQL: 1 GB,
    # SQLite: 1e9 bytes), and PostgreSQL's SUBSTR takes no larger length.
    max_chars = min(max_chars, validation.MAX_COUNT)
    m = store.Memory
    conditions = [
        in_slices(store, [(tier, None, None)]),
        *filter_conditions(store, user_id=user_id),
        peewee.fn.LENGTH(m.content) > max_chars,
    ]
    cut = peewee.fn.SUBSTR(m.content, 1, max_chars - 1).concat("…")
    return _batched_update(store, conditions, {"content": cut}, batch_size, on_batch)


@translate_errors
def summary_groups(
    store: MemoryStore, *, slices, min_records: int, exclude_metadata: dict, user_id=None
) -> list[dict]:
    """(user_id, namespace, thread_id, count) of threads with ≥ `min_records` unsummarized memories.

    Only memories in `slices`, with a thread, and whose metadata lacks `exclude_metadata`
    (the summaries themselves) count. Sorted by user, namespace (None first), thread.
    """
    min_records = validation.count("min_records", min_records)
    m = store.Memory
    conditions = [
        in_slices(store, slices),
        *filter_conditions(store, user_id=user_id),
        m.summarized == False,  # noqa: E712 (SQL comparison)
        m.thread_id.is_null(False),
        lacks_metadata(store, exclude_metadata),
    ]
    n = peewee.fn.COUNT(m.id)
    query = (
        m.select(m.user_id, m.namespace, m.thread_id, n.alias("count"))
        .where(all_of(conditions))
        .group_by(m.user_id, m.namespace, m.thread_id)
        .having(n >= min_records)
    )
    groups = list(query.dicts())
    return sorted(groups, key=lambda g: thread_order((g["user_id"], g["namespace"], g["thread_id"])))


@translate_errors
def summary_sources(store: MemoryStore, *, user_ids, tier, exclude_metadata: dict) -> list[dict]:
    """The unsummarized memories with a thread of these users in `tier`, oldest first.

    Memories whose metadata contains `exclude_metadata` (the summaries) are left out.
    """
    users = [validation.user_id(user) for user in user_ids]
    if not users:
        return []
    m = store.Memory
    conditions = [
        m.user_id.in_(users),
        in_slices(store, [(tier, None, None)]),
        m.summarized == False,  # noqa: E712 (SQL comparison)
        m.thread_id.is_null(False),
        lacks_metadata(store, exclude_metadata),
    ]
    query = select_memories(store, conditions).order_by(m.created_at, m.id)
    return [memory_dict(row) for row in query.dicts()]


@translate_errors
@retried
def write_summaries(
    store: MemoryStore, items: Iterable[tuple[dict, list[int]]], *, as_read: Mapping[int, dict] | None = None
) -> tuple[int, int]:
    """Mark each summary's sources summarized and insert the summaries, all in one transaction.

    A summary whose sources are not all there unsummarized any more (forgotten, or summarized,
    since they were read), or (given `as_read`, the sources by id as the summarizer read them)
    whose sources changed since, is not written: its text would hold what was forgotten or
    replaced, or cover a memory twice. Returns (summaries written, sources marked).
    """
    by_user: dict[str, list[tuple[dict, list[int]]]] = {}
    for row, ids in items:
        checked = memory_row(store, row)
        by_user.setdefault(checked["user_id"], []).append((checked, sorted(set(validation.memory_ids(ids)))))
    if not by_user:
        return 0, 0
    kept, marked = [], 0
    with store.database.atomic():
        for user_id, summaries in by_user.items():
            for row, ids in _whole(store, user_id, summaries, as_read or {}):
                kept.append(row)
                marked += len(ids)
        if kept:
            with ids_left(store, store.Memory):
                postings.insert_memories(store, kept)
    return len(kept), marked


def _whole(
    store: MemoryStore, user_id: str, summaries: list[tuple[dict, list[int]]], as_read: Mapping[int, dict]
) -> list[tuple]:
    """The user's summaries whose sources were all there unsummarized and unchanged, those sources
    now marked: all at once in the usual case, else each summary on its own."""
    every_source = sorted(memory_id for _, ids in summaries for memory_id in ids)
    if _marked_all(store, user_id, every_source, as_read):
        return summaries
    return [(row, ids) for row, ids in summaries if _marked_all(store, user_id, sorted(ids), as_read)]


def _marked_all(store: MemoryStore, user_id: str, ids: list[int], as_read: Mapping[int, dict]) -> bool:
    """Mark the user's memories of `ids` summarized, in a savepoint undone unless every one of them
    was there unsummarized and is as read; whether they were. The UPDATE locks the rows it marks,
    so what is read after it stays so until the commit."""
    with store.database.atomic() as savepoint:
        if _mark_summarized(store, user_id, ids) == len(ids) and _as_read(store, user_id, ids, as_read):
            return True
        savepoint.rollback()
    return False


def _as_read(store: MemoryStore, user_id: str, ids: list[int], as_read: Mapping[int, dict]) -> bool:
    """Whether the user's memories of `ids` that `as_read` holds are still as it holds them."""
    known = [memory_id for memory_id in ids if memory_id in as_read]
    m = store.Memory
    columns = [getattr(m, field) for field in SOURCE_FIELDS]
    for chunk in chunks(known, ID_CHUNK_SIZE):
        # The compared columns alone, as tuples: half the time of whole memories as dicts.
        query = m.select(m.id, *columns).where((m.user_id == user_id) & m.id.in_(chunk)).tuples()
        for memory_id, *now in query:
            read = as_read[memory_id]
            if any(value != read[field] for field, value in zip(SOURCE_FIELDS, now, strict=True)):
                return False
    return True


def _mark_summarized(store: MemoryStore, user_id: str, ids: list[int]) -> int:
    """Mark the user's memories of `ids` that are not summarized yet; how many were (one user per
    UPDATE: one shard on a distributed table). Sorted ids lock rows in the order a delete takes
    them, so the two wait for each other instead of deadlocking."""
    m = store.Memory
    marked = 0
    for chunk in chunks(ids, ID_CHUNK_SIZE):
        unmarked = (m.user_id == user_id) & m.id.in_(chunk) & (m.summarized == False)  # noqa: E712
        marked += m.update(summarized=True, updated_at=store.clock()).where(unmarked).execute()
    return marked
