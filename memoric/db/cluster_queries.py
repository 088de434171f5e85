"""Cluster queries: the documented upserts, reads and deletes, and what the rebuild reads.

One row per (user_id, topic, category), written with `INSERT ... ON CONFLICT` so that agents
upserting the same cluster at once never collide; `cluster_rows` reads only the columns the
rebuild (`memoric.clustering`) groups by.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import peewee

from memoric import validation
from memoric.db import cluster_members
from memoric.db.chunks import chunks
from memoric.db.deadlocks import retried
from memoric.db.driver_errors import translate_errors
from memoric.db.filters import filter_conditions, lacks_metadata, select_memories
from memoric.db.jsonfilter import all_of
from memoric.db.rows import bind, dict_rows, ids_left, known_keywords, read, slot

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

CLUSTER_FIELDS = ("topic", "category", "memory_ids", "summary")  # all but the summary required
CLUSTER_CHUNK_SIZE = 500  # rows per INSERT of upsert_clusters (9 parameters each)


@translate_errors
@retried
def upsert_cluster(store: MemoryStore, *, user_id, topic, category, memory_ids, summary: str = "") -> int:
    """Create or replace the cluster of (user, topic, category) in one statement; its id."""
    cluster = {"topic": topic, "category": category, "memory_ids": memory_ids, "summary": summary}
    user_id = validation.user_id(user_id)
    row = _upserted_cluster_row(user_id, cluster, store.clock())
    query = _replacing_cluster(store, store.MemoryCluster.insert(row))
    with store.database.atomic(), ids_left(store, store.MemoryCluster):
        cluster_members.check(store, user_id, [row])
        return next(iter(query.returning(store.MemoryCluster.cluster_id).tuples().execute()))[0]


def _replacing_cluster(store: MemoryStore, insert: peewee.Insert) -> peewee.Insert:
    """`insert` that, on a (user, topic, category) already there, replaces that cluster's contents."""
    c = store.MemoryCluster
    replaced = [c.memory_ids, c.memory_count, c.summary, c.updated_at, c.last_built_at]
    return insert.on_conflict(conflict_target=[c.user_id, c.topic, c.category], preserve=replaced)


@translate_errors
def upsert_clusters(store: MemoryStore, *, user_id, clusters: Iterable[dict]) -> int:
    """`upsert_cluster` for many clusters of one user: one INSERT ... ON CONFLICT per chunk.

    Each dict has topic, category, memory_ids and summary, checked by the same rules; one
    row per (user, topic, category) as with `upsert_cluster`, a key given twice refused,
    written in key order so that concurrent rebuilds lock rows in the same order. Returns the
    number written.
    """
    user_id = validation.user_id(user_id)
    now = store.clock()
    numbered = sorted(
        ((_cluster_key(row), place, row) for place, row in _numbered_rows(user_id, clusters, now)),
        key=lambda item: item[:2],
    )
    _refuse_repeated_keys(numbered)
    rows = [row for _, _, row in numbered]
    _write_clusters(store, user_id, rows)
    return len(rows)


def _numbered_rows(user_id: str, clusters: Iterable[dict], now: dt.datetime) -> Iterator[tuple[int, dict]]:
    """(place in `clusters`, the row it upserts) of each cluster, validated."""
    for place, cluster in dict_rows(clusters, "clusters"):
        yield place, _upserted_cluster_row(user_id, cluster, now)


def _cluster_key(row: dict) -> tuple[str, str]:
    return row["topic"], row["category"]


def _refuse_repeated_keys(numbered: list[tuple]) -> None:
    """ValidationError for a (topic, category) given twice: which one is written would differ
    (SQLite's last; PostgreSQL refuses to update a row twice in one statement)."""
    for (key, first, _), (same, second, _) in itertools.pairwise(numbered):
        if key == same:
            raise validation.ValidationError(
                f"clusters[{first}] and clusters[{second}] are both topic {validation.shown(key[0])}, "
                f"category {validation.shown(key[1])}: one call writes each cluster once"
            )


@retried
def _write_clusters(store: MemoryStore, user_id: str, rows: list[dict]) -> None:
    """Write the checked rows in one transaction (run again after a deadlock: `rows` is a list)."""
    with store.database.atomic(), ids_left(store, store.MemoryCluster):
        cluster_members.check(store, user_id, rows)
        for chunk in chunks(rows, CLUSTER_CHUNK_SIZE):
            _replacing_cluster(store, store.MemoryCluster.insert_many(chunk)).execute()


def _upserted_cluster_row(user_id: str, cluster: dict, now: dt.datetime) -> dict:
    """The row of one cluster of `user_id` as the upserts write it, validated."""
    if not isinstance(cluster, dict):
        raise validation.ValidationError(f"a cluster must be a dict, got {type(cluster).__name__}")
    known_keywords("cluster field", cluster, CLUSTER_FIELDS)
    for name in CLUSTER_FIELDS[:-1]:
        if name not in cluster:
            raise validation.ValidationError(f"missing cluster field {name}")
    ids = sorted(set(validation.memory_ids(cluster["memory_ids"])))
    summary = cluster.get("summary", "")
    if not isinstance(summary, str):
        raise validation.ValidationError(f"summary must be a string, got {type(summary).__name__}")
    if summary:
        validation.clean_text("summary", summary)
    return {
        "user_id": user_id,
        "topic": validation.cluster_key("topic", cluster["topic"]),
        "category": validation.cluster_key("category", cluster["category"]),
        "memory_ids": ids,
        "memory_count": len(ids),
        "summary": summary,
        "created_at": now,
        "updated_at": now,
        "last_built_at": now,
    }


@translate_errors
def get_clusters(
    store: MemoryStore, *, user_id=None, topic=None, category=None, limit: int | None = 100
) -> list[dict]:
    """Clusters matching every filter, largest first (then by id)."""
    limit = validation.count("limit", limit, allow_none=True)
    checked = {
        "user_id": None if user_id is None else validation.user_id(user_id),
        "topic": validation.optional_text("topic", topic, max_length=validation.MAX_CLUSTER_KEY_LENGTH),
        "category": validation.optional_text(
            "category", category, max_length=validation.MAX_CLUSTER_KEY_LENGTH
        ),
    }
    key = ("get_clusters", *(value is not None for value in checked.values()), limit is None)
    sql, params = store.statements.get(key, lambda: _largest_first(store, checked, limit).sql())
    return read(store, store.MemoryCluster, sql, bind(params, {**checked, "limit": limit}))


def _largest_first(store: MemoryStore, checked: dict, limit: int | None):
    """The clusters matching `checked` (slots for its values), largest first, then by id."""
    c = store.MemoryCluster
    conditions = [getattr(c, name) == slot(name) for name, value in checked.items() if value is not None]
    query = c.select().order_by(c.memory_count.desc(), c.cluster_id)
    if conditions:
        query = query.where(all_of(conditions))
    if limit is not None:
        query = query.limit(slot("limit"))
    return query


@translate_errors
def delete_cluster(store: MemoryStore, *, cluster_id) -> int:
    """Delete the cluster with that id; rows deleted."""
    cluster_id = validation.memory_id(cluster_id, "cluster_id")
    c = store.MemoryCluster
    with store.database.autocommitted():
        return c.delete().where(c.cluster_id == cluster_id).execute()


@translate_errors
def cluster_rows(store: MemoryStore, *, exclude_metadata: dict, user_id=None) -> list[tuple]:
    """(id, user_id, thread_id, topic, category) of every memory lacking `exclude_metadata`.

    topic and category are the metadata values when they are JSON strings, else None; only
    these columns are read, so a rebuild over many rows stays cheap.
    """
    m = store.Memory
    topic, category = m.metadata.string_at("topic"), m.metadata.string_at("category")
    conditions = [*filter_conditions(store, user_id=user_id), lacks_metadata(store, exclude_metadata)]
    query = select_memories(store, conditions).select(m.id, m.user_id, m.thread_id, topic, category)
    return store.database.execute(query).fetchall()


@translate_errors
def memory_users(store: MemoryStore, *, user_id=None) -> list[str]:
    """The users that have memories (`user_id` alone, if it has any)."""
    m = store.Memory
    query = select_memories(store, filter_conditions(store, user_id=user_id)).select(m.user_id).distinct()
    return [user for (user,) in query.tuples()]


@translate_errors
def cluster_keys(store: MemoryStore, *, user_id=None) -> list[tuple]:
    """(cluster_id, user_id, topic, category) of every cluster (of one user), by id."""
    c = store.MemoryCluster
    query = c.select(c.cluster_id, c.user_id, c.topic, c.category).order_by(c.cluster_id)
    if user_id is not None:
        query = query.where(c.user_id == validation.user_id(user_id))
    return list(query.tuples())
