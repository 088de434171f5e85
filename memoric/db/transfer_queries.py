"""Whole rows, ids kept: what export, import and copy (`memoric.transfer`) read and write.

Reads page through a table by id (keyset paging), inside one `snapshot` when they must agree;
imports validate whole rows, reserve their ids before writing (`reserve_ids`), insert them
skipping what is there, and read back what was skipped to compare it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import peewee

from memoric import validation
from memoric.db import cluster_members, postings
from memoric.db.chunks import chunks
from memoric.db.cluster_queries import CLUSTER_CHUNK_SIZE
from memoric.db.dialects.base import reserved_end
from memoric.db.driver_errors import store_call_failed, translate_errors
from memoric.db.filters import filter_conditions, select_memories
from memoric.db.rows import ID_CHUNK_SIZE, group_by_keys, insert_rows, memory_dict, memory_row
from memoric.errors import MemoricError

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

INSERT_BATCH_SIZE = 1000  # rows per page of iter_memories and iter_clusters


def _table(store: MemoryStore, kind: str) -> tuple[type[peewee.Model], str]:
    """The model and id column of a kind of exported row ("memory" or "cluster")."""
    return (store.Memory, "id") if kind == "memory" else (store.MemoryCluster, "cluster_id")


def whole_row(store: MemoryStore, kind: str, record: dict) -> dict:
    """The row `record` (a memory or a cluster, id included) is written as: validated, defaults
    filled in (timestamps left out are now). ValidationError as `insert_memories` would raise."""
    if kind == "memory":
        return memory_row(store, record)
    return _exported_cluster_row(store, record, where="")


def _exported_cluster_row(store: MemoryStore, row: dict, where: str) -> dict:
    """An exported cluster as it is written: validated, timestamps left out now (`where` prefixes errors)."""
    expected = {"cluster_id", "user_id", "topic", "category", "memory_ids", "memory_count", "summary"}
    stamps = {"created_at", "updated_at", "last_built_at"}
    unknown = set(row) - expected - stamps
    if unknown or not expected <= set(row):
        problem = (
            f"unexpected fields {validation.shown(sorted(unknown, key=repr))}"
            if unknown
            else f"missing {sorted(expected - set(row))}"
        )
        raise validation.ValidationError(f"{where}{problem}")
    now = store.clock()
    try:
        ids = _ascending_ids(validation.memory_ids(row["memory_ids"]))
        checked = {
            "cluster_id": validation.stored_id(row["cluster_id"], "cluster_id"),
            "user_id": validation.user_id(row["user_id"]),
            "topic": validation.cluster_key("topic", row["topic"]),
            "category": validation.cluster_key("category", row["category"]),
            "memory_ids": ids,
            "memory_count": validation.count(
                "memory_count", row["memory_count"], maximum=validation.MAX_COUNT
            ),
            "summary": row["summary"]
            if row["summary"] == ""
            else validation.clean_text("summary", row["summary"]),
        }
        checked.update({key: validation.timestamp(key, row.get(key)) or now for key in sorted(stamps)})
        if checked["memory_count"] != len(ids):
            raise validation.ValidationError(
                f"memory_count {checked['memory_count']} is not the number of memory_ids ({len(ids)})"
            )
    except validation.ValidationError as exc:
        raise validation.ValidationError(f"{where}{exc}") from None
    return checked


def _ascending_ids(ids: list[int]) -> list[int]:
    """`ids` if each is above the one before (a stored cluster's memory_ids are); else ValidationError."""
    for place in range(1, len(ids)):
        if ids[place] <= ids[place - 1]:
            raise validation.ValidationError(
                f"memory_ids must be unique and ascending, but memory_ids[{place}] {ids[place]} "
                f"follows {ids[place - 1]}"
            )
    return ids


@contextlib.contextmanager
def snapshot(store: MemoryStore):
    """Every read inside the block sees the database at one point in time.

    PostgreSQL: one REPEATABLE READ, read-only transaction. SQLite: one read transaction
    (WAL keeps what it saw at its first read). Writers elsewhere are not held up.
    """
    try:
        with store.dialect.snapshot(store.database):
            yield
    except (peewee.PeeweeException, peewee.DatabaseError) as exc:
        raise MemoricError(store_call_failed(store, "snapshot", exc)) from exc


@translate_errors
def reserve_ids(
    store: MemoryStore,
    claims: dict[str, tuple[int, int]],
    *,
    check: Callable[[], None],
    holding_rows: Callable[[dict[str, int]], dict[str, dict]],
) -> tuple[dict[str, int], dict[str, int]]:
    """Reserve ids for rows about to be written, then run `check` while they stay reserved.

    `claims` maps a kind to (above, count): no new row of anyone else may get an id up to
    max(above, top + count), top being the highest id used so far. A claim that would pass the
    largest id is a ValidationError before any counter moves. Where the table keeps an id
    counter it is raised under a short lock (never lowered) and `check` runs after. Where it
    has none (SQLite without AUTOINCREMENT picks max(rowid) + 1), the row with the highest id,
    `holding_rows(tops)[kind]`, is written instead: inside one write transaction with
    `check`, so a refused import writes nothing. Returns the top and the rows written per kind.
    """
    for kind, (above, count) in claims.items():
        validation.integer(f"claims[{kind!r}] above", above, minimum=0, maximum=validation.MAX_STORED_ID)
        validation.count(f"claims[{kind!r}] count", count, maximum=validation.MAX_STORED_ID)
        model, column = _table(store, kind)
        table = model._meta.table_name
        reserved_end(table, store.dialect.id_top(store.database, table, column), above, count)
    uncounted = [
        kind
        for kind in claims
        if not store.dialect.has_id_counter(store.database, _table(store, kind)[0]._meta.table_name)
    ]
    if not uncounted:
        tops = _raise_id_counters(store, claims)
        check()
        return tops, {}
    with store.database.atomic():  # on SQLite a write lock: no other writer until COMMIT
        tops = _raise_id_counters(store, claims)
        check()
        rows = holding_rows(tops)
        written = {kind: _insert(store, kind, [rows[kind]]) for kind in uncounted}
    return tops, written


def _raise_id_counters(store: MemoryStore, claims: dict[str, tuple[int, int]]) -> dict[str, int]:
    """`reserve_ids` of the dialect for every claim (one short transaction each); the tops."""
    tops = {}
    for kind, (above, count) in claims.items():
        model, column = _table(store, kind)
        tops[kind] = store.dialect.reserve_ids(
            store.database, model._meta.table_name, column, above=above, count=count
        )
    return tops


@translate_errors
def insert_whole_rows(store: MemoryStore, kind: str, rows: list[dict]) -> int:
    """Insert rows returned by `whole_row`, skipping those whose id (or, for a cluster, whose
    user/topic/category) is taken; the number inserted. The caller compares the skipped ones."""
    with store.database.atomic():
        return _insert(store, kind, rows)


def _insert(store: MemoryStore, kind: str, rows: list[dict]) -> int:
    """Insert whole rows skipping taken ids (memories with their postings); the number inserted."""
    if kind == "memory":
        return postings.insert_memories(store, rows, skip_existing=True)
    model = _table(store, kind)[0]
    return sum(insert_rows(store, model, same_keys, True) for same_keys in group_by_keys(rows))


@translate_errors
def has_ids(store: MemoryStore, kind: str, low: int, high: int) -> bool:
    """Whether any memory (or cluster) has an id from `low` to `high`."""
    low, high = validation.memory_id(low, "low"), validation.memory_id(high, "high")
    model, column = _table(store, kind)
    return model.select().where(getattr(model, column).between(low, high)).exists()


@translate_errors
def delete_ids(store: MemoryStore, kind: str, ids: Iterable[int]) -> int:
    """Delete the memories (with their postings) or clusters with these ids, in one transaction;
    how many there were."""
    ids = [validation.memory_id(value, f"ids[{index}]") for index, value in enumerate(ids)]
    model, column = _table(store, kind)
    deleted, memories = 0, []
    with store.database.atomic():
        for chunk in chunks(sorted(set(ids)), ID_CHUNK_SIZE):
            chosen = getattr(model, column).in_(chunk)
            if kind == "memory":
                memories += postings.delete_memories(store, [chosen])
            else:
                deleted += model.delete().where(chosen).execute()
        cluster_members.forget(store, memories)
    return deleted + len(memories)


@translate_errors
def stored_rows(store: MemoryStore, kind: str, ids: Iterable[int]) -> dict[int, dict]:
    """The stored memories or clusters with these ids, by id (absent ids left out)."""
    ids = [validation.memory_id(value, f"ids[{index}]") for index, value in enumerate(ids)]
    model, column = _table(store, kind)
    found = {}
    for chunk in chunks(sorted(set(ids)), ID_CHUNK_SIZE):
        for row in model.select().where(getattr(model, column).in_(chunk)).dicts():
            found[row[column]] = memory_dict(row) if kind == "memory" else row
    return found


@translate_errors
def cluster_ids_by_key(
    store: MemoryStore, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], int]:
    """The stored cluster id of each (user_id, topic, category) that has one."""
    c = store.MemoryCluster
    found = {}
    for chunk in chunks(sorted(set(keys)), CLUSTER_CHUNK_SIZE):
        key = peewee.Tuple(c.user_id, c.topic, c.category)
        query = c.select(c.cluster_id, c.user_id, c.topic, c.category).where(key.in_(chunk))
        for cluster_id, *stored_key in query.tuples():
            found[tuple(stored_key)] = cluster_id
    return found


def iter_memories(store: MemoryStore, *, user_id=None, batch_size: int = INSERT_BATCH_SIZE) -> Iterator[dict]:
    """Every memory (of one user, or all) in id order, read page by page: constant memory.

    Pages are separate queries: inside `snapshot` they all see one point in time.
    """
    validation.integer("batch_size", batch_size, minimum=1)
    after_id = None  # from the lowest id, whatever it is: a shell may have written 0 or below
    while page := memories_after(store, after_id, user_id=user_id, limit=batch_size):
        yield from page
        after_id = page[-1]["id"]


def iter_clusters(store: MemoryStore, *, user_id=None, batch_size: int = INSERT_BATCH_SIZE) -> Iterator[dict]:
    """Every cluster (of one user, or all) in id order, read page by page like `iter_memories`."""
    validation.integer("batch_size", batch_size, minimum=1)
    after_id = None
    while page := clusters_after(store, after_id, user_id=user_id, limit=batch_size):
        yield from page
        after_id = page[-1]["cluster_id"]


@translate_errors
def memories_after(
    store: MemoryStore, after_id: int | None, *, user_id=None, limit: int = INSERT_BATCH_SIZE
) -> list[dict]:
    """Up to `limit` memories with an id above `after_id` (None: from the first), in id order
    (keyset paging)."""
    m = store.Memory
    conditions = filter_conditions(store, user_id=user_id)
    if after_id is not None:
        conditions.append(m.id > validation.memory_id(after_id, "after_id"))
    query = select_memories(store, conditions).order_by(m.id).limit(validation.count("limit", limit))
    return [memory_dict(row) for row in query.dicts()]


@translate_errors
def clusters_after(
    store: MemoryStore, after_id: int | None, *, user_id=None, limit: int = INSERT_BATCH_SIZE
) -> list[dict]:
    """Up to `limit` clusters with an id above `after_id` (None: from the first), in id order
    (keyset paging)."""
    c = store.MemoryCluster
    query = c.select()
    if after_id is not None:
        query = query.where(c.cluster_id > validation.memory_id(after_id, "after_id"))
    if user_id is not None:
        query = query.where(c.user_id == validation.user_id(user_id))
    return list(query.order_by(c.cluster_id).limit(validation.count("limit", limit)).dicts())


def all_clusters(store: MemoryStore, *, user_id=None) -> list[dict]:
    """Every cluster (of one user, or all) in id order."""
    return list(iter_clusters(store, user_id=user_id))
