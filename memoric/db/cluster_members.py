"""A cluster lists only memories of its own user that exist, whatever writes come together.

An upsert reads the memories it lists locked to the end of its transaction (`locked_rows`); a
delete of memories, once all of them are deleted, takes them out of their users' clusters, read
locked too. A delete that comes while an upsert holds its memories waits, then takes them out; an
upsert that comes while a delete holds them waits, then finds them gone. A cluster listing a
memory that is nowhere would make every export refuse, as an import would refuse that cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from memoric import validation
from memoric.db.chunks import chunks
from memoric.db.rows import ID_CHUNK_SIZE

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore


def check(store: MemoryStore, user_id: str, rows: list[dict]) -> None:
    """Every id the cluster `rows` list must be a memory of `user_id`; each is held to the end
    of the transaction. ValidationError naming those that are not."""
    listed = sorted({memory_id for row in rows for memory_id in row["memory_ids"]})
    found = held(store, user_id, listed)
    missing = [memory_id for memory_id in listed if memory_id not in found]
    if missing:
        raise validation.ValidationError(
            f"memory_ids {validation.shown(missing)}: not memories of user_id {validation.shown(user_id)}; "
            "a cluster lists only its user's memories"
        )


def held(store: MemoryStore, user_id: str, ids: Iterable[int]) -> set[int]:
    """Those of `ids` that are memories of `user_id`, held to the end of the transaction (a
    delete of one waits)."""
    m = store.Memory
    found: set[int] = set()
    for chunk in chunks(sorted(set(ids)), ID_CHUNK_SIZE):
        query = m.select(m.id).where(m.id.in_(chunk), m.user_id == user_id).order_by(m.id)
        found |= {row["id"] for row in store.dialect.locked_rows(store.database, query, deletes_only=True)}
    return found


def forget(store: MemoryStore, deleted: Iterable[tuple]) -> None:
    """Take the deleted memories, (id, user_id, ...) rows, out of their users' clusters (inside
    the deleting transaction, after every delete of it); `updated_at` moves, as for an edit, and
    a cluster left with no memory is deleted. The summary stays as of `last_built_at`."""
    gone: dict[str, set[int]] = defaultdict(set)
    for memory_id, user_id, *_ in deleted:
        gone[user_id].add(memory_id)
    c = store.MemoryCluster
    # the order upserts lock clusters in (Python's: by code point)
    in_key_order = [store.dialect.by_code_point(key) for key in (c.user_id, c.topic, c.category)]
    for users in chunks(sorted(gone), ID_CHUNK_SIZE):
        query = c.select(c.cluster_id, c.user_id, c.memory_ids).where(c.user_id.in_(users))
        for cluster in store.dialect.locked_rows(store.database, query.order_by(*in_key_order)):
            removed = gone[cluster["user_id"]]
            kept = [memory_id for memory_id in cluster["memory_ids"] if memory_id not in removed]
            # the user too: Citus routes the statement to that user's shard alone
            this = (c.cluster_id == cluster["cluster_id"]) & (c.user_id == cluster["user_id"])
            if not kept:
                c.delete().where(this).execute()
            elif len(kept) < len(cluster["memory_ids"]):
                changed = {c.memory_ids: kept, c.memory_count: len(kept), c.updated_at: store.clock()}
                c.update(changed).where(this).execute()
