"""Topic clusters: each user's memories grouped by (metadata.topic, metadata.category).

A topic or category counts only when it is a non-blank JSON string; anything else (missing,
null, a number, a boolean, a list, an object, a blank string) falls into "general". A string
longer than the cluster column (255 characters) is cut to it. Thread summaries (metadata
`{"kind": "thread_summary"}`) are derived text and belong to no cluster.

A rebuild reads only the columns it needs, then per user, in one transaction, upserts every
group of at least `min_size` memories (`upsert_clusters`, the bulk form of `upsert_cluster`:
one statement per user instead of one per cluster) and deletes, through `delete_cluster`, that
user's clusters that no longer exist.
It is idempotent, and concurrent rebuilds converge to the same clusters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from memoric import arguments
from memoric.db import cluster_members, cluster_queries
from memoric.db.deadlocks import retried
from memoric.db.store import MemoryStore
from memoric.policies import SUMMARY_METADATA
from memoric.text import shows_something

GENERAL = "general"
MAX_KEY_LENGTH = 255


def cluster_key(value) -> str:
    """The topic or category a metadata value stands for ("general" unless a string that shows
    something: not only whitespace and invisible characters)."""
    if not isinstance(value, str) or not shows_something(value[:MAX_KEY_LENGTH]):
        return GENERAL
    return value[:MAX_KEY_LENGTH]


def rebuild_clusters(
    store: MemoryStore,
    *,
    min_size: int = 1,
    user_id: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Rebuild the clusters of `user_id` (None: every user); the number of clusters they now have.

    `on_progress(n)` is called after each user with the number of memories processed.
    """
    on_progress = arguments.progress("on_progress", on_progress)
    users = set(cluster_queries.memory_users(store, user_id=user_id))
    users |= {key[1] for key in cluster_queries.cluster_keys(store, user_id=user_id)}
    total = 0
    for user in sorted(users):
        clusters, processed = _rebuild_user(store, user, min_size)
        total += clusters
        if on_progress is not None:
            on_progress(processed)
    return total


def _group(rows) -> dict[str, dict[tuple[str, str], list[tuple]]]:
    """{user: {(topic, category): [(id, thread_id), ...]}} from cluster_rows tuples."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    for memory_id, user, thread_id, topic, category in rows:
        groups[user][(cluster_key(topic), cluster_key(category))].append((memory_id, thread_id))
    return groups


@retried
def _rebuild_user(store: MemoryStore, user: str, min_size: int) -> tuple[int, int]:
    """Rebuild one user's clusters from their memories, read in the transaction that writes the
    clusters, not before the rebuild of every user began: a memory forgotten meanwhile does not
    come back in one (on SQLite no write can come between; on PostgreSQL one that commits
    between this read and this commit can); (clusters, memories read)."""
    with store.atomic():
        rows = cluster_queries.cluster_rows(store, exclude_metadata=SUMMARY_METADATA, user_id=user)
        # Held from here on (a delete waits); one deleted since the read is left out, as if unread.
        found = cluster_members.held(store, user, (row[0] for row in rows))
        rows = [row for row in rows if row[0] in found]
        members = _group(rows).get(user, {})
        return _write_user(store, user, members, min_size), len(rows)


def _write_user(store: MemoryStore, user: str, members: dict, min_size: int) -> int:
    """Upsert the user's wanted clusters and delete the others (inside the caller's transaction);
    how many are wanted."""
    wanted = {key: rows for key, rows in members.items() if len(rows) >= min_size}
    clusters = [
        {
            "topic": topic,
            "category": category,
            "memory_ids": [memory_id for memory_id, _ in rows],
            "summary": describe(topic, category, rows),
        }
        for (topic, category), rows in wanted.items()
    ]
    store.upsert_clusters(user_id=user, clusters=clusters)
    for cluster_id, _, topic, category in cluster_queries.cluster_keys(store, user_id=user):
        if (topic, category) not in wanted:
            store.delete_cluster(cluster_id=cluster_id)
    return len(wanted)


def describe(topic: str, category: str, rows: list[tuple]) -> str:
    """A deterministic one-line summary of a cluster."""
    count = len(rows)
    threads = len({thread for _, thread in rows if thread is not None})
    memories = f"{count} memor{'y' if count == 1 else 'ies'}"
    where = f"across {threads} thread{'' if threads == 1 else 's'}" if threads else "outside any thread"
    return f"{memories} about {topic} ({category}) {where}"
