"""The timed queries: what each one asks the public API, and what it must return.

Every query takes an iteration number `i` and picks its parameters from it (a different user,
topic or thread each time, the same sequence on every run). `reference` computes the expected
answer from the workload's rows in plain Python, for the smoke test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import workload as w

LIMIT = 50
OLDER_THAN_DAYS = 30
OLDER_THAN_LIMIT = 1000
RECALL_TOP_K = 10


@dataclass(frozen=True)
class Query:
    """One benchmark query: `run(target, i)` against the library, `reference(rows, i)` in Python."""

    name: str
    label: str
    run: Callable
    reference: Callable | None = None
    needs: str = "store"


def user_for(i: int) -> str:
    return w.user_name((i * 37) % w.USERS)


def thread_for(i: int) -> str:
    return w.thread_name((i * 37) % w.USERS, i % w.THREADS_PER_USER)


def _newest_first(rows: list[dict], keep: Callable[[dict], bool], limit: int | None = LIMIT) -> list[int]:
    chosen = sorted((r for r in rows if keep(r)), key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return [r["id"] for r in chosen[:limit]]


def _ids(memories: list[dict]) -> list[int]:
    return [memory["id"] for memory in memories]


# --- metadata filters ---------------------------------------------------------------------


def filter_one_user(store, i):
    return store.get_memories(user_id=user_for(i), where_metadata={"topic": w.TOPICS[i % 20]}, limit=LIMIT)


def filter_one_user_expected(rows, i):
    topic = w.TOPICS[i % 20]
    return _newest_first(rows, lambda r: r["user_id"] == user_for(i) and r["metadata"]["topic"] == topic)


def _two_keys(i: int) -> dict:
    return {"category": w.CATEGORIES[i % len(w.CATEGORIES)], "priority": "high"}


def filter_two_keys(store, i):
    return store.get_memories(where_metadata=_two_keys(i), limit=LIMIT)


def filter_two_keys_expected(rows, i):
    wanted = _two_keys(i)
    return _newest_first(rows, lambda r: all(r["metadata"][k] == v for k, v in wanted.items()))


def _customer_tier(i: int) -> str:
    return w.CUSTOMER_TIERS[i % 2]


def filter_nested(store, i):
    pattern = {"customer": {"tier": _customer_tier(i)}}
    return store.get_memories(user_id=user_for(i), where_metadata=pattern, limit=LIMIT)


def filter_nested_expected(rows, i):
    tier = _customer_tier(i)
    return _newest_first(
        rows, lambda r: r["user_id"] == user_for(i) and r["metadata"]["customer"]["tier"] == tier
    )


def filter_list(store, i):
    pattern = {"tags": [w.TAGS[i % len(w.TAGS)]]}
    return store.get_memories(user_id=user_for(i), where_metadata=pattern, limit=LIMIT)


def filter_list_expected(rows, i):
    tag = w.TAGS[i % len(w.TAGS)]
    return _newest_first(rows, lambda r: r["user_id"] == user_for(i) and tag in r["metadata"]["tags"])


def filter_no_match(store, i):
    return store.get_memories(where_metadata={"topic": f"no-such-topic-{i % 5}"}, limit=LIMIT)


def filter_no_match_expected(rows, i):
    return []


def filter_no_match_user(store, i):
    pattern = {"topic": f"no-such-topic-{i % 5}"}
    return store.get_memories(user_id=user_for(i), where_metadata=pattern, limit=LIMIT)


# --- plain column filters -----------------------------------------------------------------


def user_thread(store, i):
    return store.get_memories(user_id=user_for(i), thread_id=thread_for(i), limit=LIMIT)


def user_thread_expected(rows, i):
    return _newest_first(rows, lambda r: r["user_id"] == user_for(i) and r["thread_id"] == thread_for(i))


def _older_tier(i: int) -> str:
    return ("short_term", "mid_term")[i % 2]


def tier_updated(store, i):
    return store.find_older_than(days=OLDER_THAN_DAYS, from_tier=_older_tier(i), limit=OLDER_THAN_LIMIT)


def tier_updated_expected(rows, i):
    cutoff = w.NOW - dt.timedelta(days=OLDER_THAN_DAYS)
    tier = _older_tier(i)
    chosen = sorted(
        (r for r in rows if r["tier"] == tier and r["updated_at"] < cutoff),
        key=lambda r: (r["updated_at"], r["id"]),
    )
    return [r["id"] for r in chosen[:OLDER_THAN_LIMIT]]


def cluster_lookup(store, i):
    return store.get_clusters(user_id=user_for(i))


def cluster_lookup_expected(rows, i):
    """(topic, category, memory_ids) of the user's clusters, largest first, then by creation order."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        groups.setdefault(w.cluster_key(row), []).append(row["id"])
    ordered = list(groups.items())
    mine = [(key, ids) for key, ids in ordered if key[0] == user_for(i)]
    mine.sort(key=lambda item: -len(item[1]))
    return [(key[1], key[2], ids) for key, ids in mine[:100]]


def recall(memoric, i):
    return memoric.retrieve(user_for(i), thread_id=thread_for(i), top_k=RECALL_TOP_K)


QUERIES = (
    Query("filter_user", "metadata filter, one user", filter_one_user, filter_one_user_expected),
    Query(
        "filter_all_2keys", "metadata filter, all users, 2 keys", filter_two_keys, filter_two_keys_expected
    ),
    Query("filter_nested", "nested filter, one user", filter_nested, filter_nested_expected),
    Query("filter_list", "list filter, one user", filter_list, filter_list_expected),
    Query("filter_no_match", "filter that matches nothing", filter_no_match, filter_no_match_expected),
    Query(
        "filter_no_match_user",
        "filter that matches nothing, one user",
        filter_no_match_user,
        filter_no_match_expected,
    ),
    Query("user_thread", "user + thread", user_thread, user_thread_expected),
    Query("tier_updated", "tier + updated (1000 rows)", tier_updated, tier_updated_expected),
    Query("cluster_lookup", "cluster lookup, one user", cluster_lookup, cluster_lookup_expected),
    Query("recall", "recall top-10", recall, needs="memoric"),
)


def result_ids(query: Query, result: list) -> list:
    """The part of a query's result that `reference` predicts."""
    if query.name == "cluster_lookup":
        return [(c["topic"], c["category"], c["memory_ids"]) for c in result]
    return _ids(result)
