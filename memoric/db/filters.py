"""The memory filters as SQL: conditions, and the shapes of the statements built on them.

`checked_filters` validates the filters every memory query takes (FILTERS); `filter_nodes` and
`filter_conditions` turn them into SQL conditions; `slotted` and `filter_shape` let a query shape
be rendered once and cached (`rows.Statements`), its equality values bound per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import peewee

from memoric import json_input, validation
from memoric.db.jsoncodec import dump_json
from memoric.db.jsonfilter import all_of, any_of
from memoric.db.rows import known_keywords, slot

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

EQUALITY_FILTERS = ("user_id", "namespace", "thread_id", "tier")
FILTERS = (*EQUALITY_FILTERS, "where_metadata", "related_threads_any_of", "summarized")


def filter_conditions(store: MemoryStore, **filters) -> list:
    """The SQL conditions of the memory filters (validated; see `get_memories`)."""
    return filter_nodes(store, keyed(store, checked_filters(store, filters)))


def keyed(store: MemoryStore, checked: dict, enough: int | None = None) -> dict:
    """Validated filters with `metadata_key`: the key of `where_metadata` to find memories by in
    the dialect's own metadata index, or None (see `Dialect.metadata_key`)."""
    key, pattern = None, checked["where_metadata"]
    if pattern:
        key = store.dialect.metadata_key(store.database, pattern, checked["user_id"], enough)
    return {**checked, "metadata_key": key}


def checked_filters(
    store: MemoryStore, filters: dict, *, method: str = "", others: tuple[str, ...] = ()
) -> dict:
    """The filters (FILTERS) validated, in that order; None where not given (and for
    `where_metadata={}`). A keyword that is neither a filter nor one of `others` (the
    method's own keywords, named with `method` in the message) is a ValidationError.
    """
    known_keywords("keyword argument", filters, (*others, *FILTERS), method)
    user_id, namespace, thread_id, tier, where_metadata, related_threads_any_of, summarized = map(
        filters.get, FILTERS
    )
    return {
        "user_id": None if user_id is None else validation.user_id(user_id),
        "namespace": validation.optional_text("namespace", namespace),
        "thread_id": validation.optional_text("thread_id", thread_id),
        "tier": None if tier is None else validation.tier(tier, store.tiers),
        "where_metadata": json_input.metadata_filter(where_metadata),
        "related_threads_any_of": None
        if related_threads_any_of is None
        else validation.thread_list("related_threads_any_of", related_threads_any_of),
        "summarized": validation.flag("summarized", summarized),
    }


def filter_nodes(store: MemoryStore, checked: dict) -> list:
    """SQL conditions for validated filters (equality values may be `slot`s)."""
    m, user_id, pattern = store.Memory, checked["user_id"], checked["where_metadata"]
    users_filter = bool(pattern) and user_id is not None  # the dialect words the user and the pattern
    equal = [name for name in EQUALITY_FILTERS if checked[name] is not None]
    if users_filter:
        equal.remove("user_id")
    conditions = [getattr(m, name) == checked[name] for name in equal]
    if checked.get("metadata_key") is not None:
        conditions.append(checked["metadata_key"].holders(m.id))
    if users_filter:
        conditions += store.dialect.user_holds(store.database, m, user_id, pattern)
    elif pattern:
        conditions.append(m.metadata.contains(pattern))
    if checked["related_threads_any_of"] is not None:
        conditions.append(related_to(store, checked["related_threads_any_of"]))
    if checked["summarized"] is not None:
        conditions.append(m.summarized == checked["summarized"])
    return conditions


def related_to(store: MemoryStore, threads: list[str]):
    """Memories of one of `threads`, or related to one (`related_threads` shares an element)."""
    if not threads:
        return peewee.SQL("1 = 0")
    m = store.Memory
    return any_of([store.dialect.in_values(m.thread_id, threads), m.related_threads.contains_any(threads)])


def select_memories(store: MemoryStore, conditions: list, key=None):
    """SELECT of whole memories meeting every one of `conditions`; read by the metadata `key`'s
    postings when one is given."""
    query = store.Memory.select()
    if key is not None:
        query = key.leading(query)
    if conditions:
        query = query.where(all_of(conditions))
    return query


def namespace_is(store: MemoryStore, namespace):
    """`namespace = ?`, or `namespace IS NULL` for None (memories saved without one)."""
    m = store.Memory
    if namespace is None:
        return m.namespace.is_null()
    return m.namespace == validation.optional_text("namespace", namespace)


def in_slices(store: MemoryStore, slices) -> peewee.Node:
    """Memories in any of `slices`: (tier, updated_before, updated_since), None for "any"."""
    m = store.Memory
    alternatives = []
    for tier, updated_before, updated_since in slices:
        condition = [m.tier == validation.tier(tier, store.tiers)]
        if updated_before is not None:
            condition.append(m.updated_at < updated_before)
        if updated_since is not None:
            condition.append(m.updated_at >= updated_since)
        alternatives.append(all_of(condition))
    return any_of(alternatives)


def lacks_metadata(store: MemoryStore, pattern: dict) -> peewee.Node:
    """True where metadata does not contain `pattern` (never NULL, unlike NOT of the test)."""
    contained = store.Memory.metadata.contains(json_input.metadata(pattern))
    return peewee.Case(None, [(contained, 1)], 0) == 0


def thread_ids(store: MemoryStore, conditions: list, limit: int | None = None) -> list[str]:
    """Sorted distinct thread ids of the memories meeting `conditions` (the first `limit`)."""
    m = store.Memory
    query = m.select(m.thread_id).where(all_of([*conditions, m.thread_id.is_null(False)]))
    query = query.group_by(m.thread_id).order_by(store.dialect.by_code_point(m.thread_id))
    if limit is not None:
        query = query.limit(limit)
    return [row.thread_id for row in query]


def newest_first(store: MemoryStore, checked: dict, limit: int | None, offset: int):
    """The `get_memories` query of `checked` (slots for its values), newest first."""
    m = store.Memory
    query = select_memories(store, filter_nodes(store, checked), checked.get("metadata_key"))
    query = query.order_by(m.created_at.desc(), m.id.desc())
    if limit is not None:
        query = query.limit(slot("limit"))
    if offset:
        query = query.offset(slot("offset"))
    return query


def oldest_first(store: MemoryStore, checked: dict, limit: int | None):
    """The `find_older_than` query of `checked` (slots for its values), oldest first."""
    m = store.Memory
    conditions = [*filter_nodes(store, checked), m.updated_at < slot("cutoff")]
    query = select_memories(store, conditions).order_by(m.updated_at, m.id)
    if limit is not None:
        query = query.limit(slot("limit"))
    return query


def slotted(checked: dict) -> dict:
    """Validated filters with each equality filter's value, and the metadata key's, replaced by its slot."""
    slots = {
        name: slot(name) if name in EQUALITY_FILTERS and value is not None else value
        for name, value in checked.items()
    }
    key = checked.get("metadata_key")
    if key is not None:
        owner = None if key.user_id is None else slot("user_id")
        slots["metadata_key"] = key._replace(name=slot("key_name"), value=slot("key_value"), user_id=owner)
    return slots


def slot_values(checked: dict) -> dict:
    """The values `slotted(checked)`'s slots stand for."""
    key = checked.get("metadata_key")
    extra = {} if key is None else {"key_name": key.name, "key_value": key.value}
    return {**checked, **extra}


def filter_shape(checked: dict) -> tuple:
    """All the SQL of validated filters depends on: which equality filters are set, the other values."""
    shape = []
    for name, value in checked.items():
        if name in EQUALITY_FILTERS:
            shape.append(value is not None)
        elif name == "where_metadata":
            shape.append(None if value is None else dump_json(value))
        elif name == "related_threads_any_of":
            shape.append(None if value is None else tuple(value))
        elif name == "metadata_key":
            shape.append(value is not None)
        else:
            shape.append(value)
    return tuple(shape)
