"""The timed queries: what each one asks the public API, and what it must return.

Every query takes an iteration number `i` and picks its parameters from it (a different user,
topic or thread each time, the same sequence on every run). `keeps(i)` says which workload rows
answer it, and `reference` computes the expected answer from them in plain Python, for the smoke
test; the peers' versions of a query (benchmarks/peers.py) are checked against the same `keeps`.
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
    keeps: Callable[[int], Callable[[dict], bool]] | None = None
    expected: Callable | None = None
    limit: int = LIMIT
    needs: str = "store"

    @property
    def reference(self) -> Callable | None:
        """Its answer in Python: `expected`, else the newest `limit` rows that `keeps(i)`; None: unchecked."""
        if self.expected is not None or self.keeps is None:
            return self.expected
        keeps, limit = self.keeps, self.limit
        return lambda rows, i: _newest_first(rows, keeps(i), limit)


def user_for(i: int) -> str:
    return w.user_name((i * 37) % w.USERS)


def thread_for(i: int) -> str:
    return w.thread_name((i * 37) % w.USERS, i % w.THREADS_PER_USER)


def _newest_first(rows: list[dict], keep: Callable[[dict], bool], limit: int | None) -> list[int]:
    chosen = sorted((r for r in rows if keep(r)), key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return [r["id"] for r in chosen[:limit]]


def _ids(memories: list[dict]) -> list[int]:
    return [memory["id"] for memory in memories]


# --- metadata filters ---------------------------------------------------------------------


def topic_for(i: int) -> str:
    return w.TOPICS[i % len(w.TOPICS)]


def filter_one_user(store, i):
    return store.get_memories(user_id=user_for(i), where_metadata={"topic": topic_for(i)}, limit=LIMIT)


def filter_one_user_keeps(i):
    return lambda r: r["user_id"] == user_for(i) and r["metadata"]["topic"] == topic_for(i)


def two_keys(i: int) -> dict:
    return {"category": w.CATEGORIES[i % len(w.CATEGORIES)], "priority": "high"}


def filter_two_keys(store, i):
    return store.get_memories(where_metadata=two_keys(i), limit=LIMIT)


def filter_two_keys_keeps(i):
    return lambda r: all(r["metadata"][k] == v for k, v in two_keys(i).items())


def customer_tier(i: int) -> str:
    return w.CUSTOMER_TIERS[i % 2]


def filter_nested(store, i):
    pattern = {"customer": {"tier": customer_tier(i)}}
    return store.get_memories(user_id=user_for(i), where_metadata=pattern, limit=LIMIT)


def filter_nested_keeps(i):
    return lambda r: r["user_id"] == user_for(i) and r["metadata"]["customer"]["tier"] == customer_tier(i)


def filter_list(store, i):
    pattern = {"tags": [w.TAGS[i % len(w.TAGS)]]}
    return store.get_memories(user_id=user_for(i), where_metadata=pattern, limit=LIMIT)


def filter_list_keeps(i):
    tag = w.TAGS[i % len(w.TAGS)]
    return lambda r: r["user_id"] == user_for(i) and tag in r["metadata"]["tags"]


def no_such_topic(i: int) -> str:
    return f"no-such-topic-{i % 5}"


def filter_no_match(store, i):
    return store.get_memories(where_metadata={"topic": no_such_topic(i)}, limit=LIMIT)


def filter_no_match_user(store, i):
    pattern = {"topic": no_such_topic(i)}
    return store.get_memories(user_id=user_for(i), where_metadata=pattern, limit=LIMIT)


def matches_nothing(i):
    return lambda r: False


# --- plain column filters -----------------------------------------------------------------


def user_thread(store, i):
    return store.get_memories(user_id=user_for(i), thread_id=thread_for(i), limit=LIMIT)


def user_thread_keeps(i):
    return lambda r: r["user_id"] == user_for(i) and r["thread_id"] == thread_for(i)


def older_tier(i: int) -> str:
    return ("short_term", "mid_term")[i % 2]


def older_than_cutoff() -> dt.datetime:
    """The `updated_at` the tier query looks before: OLDER_THAN_DAYS before the benchmark's now."""
    return w.NOW - dt.timedelta(days=OLDER_THAN_DAYS)


def tier_updated(store, i):
    return store.find_older_than(days=OLDER_THAN_DAYS, from_tier=older_tier(i), limit=OLDER_THAN_LIMIT)


def tier_updated_keeps(i):
    return lambda r: r["tier"] == older_tier(i) and r["updated_at"] < older_than_cutoff()


def tier_updated_expected(rows, i):
    chosen = sorted(filter(tier_updated_keeps(i), rows), key=lambda r: (r["updated_at"], r["id"]))
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


def query_text(i: int) -> str:
    """Three words of the workload's vocabulary, a different three each time."""
    words = w.pool_words()
    return " ".join(words[(i * step) % len(words)] for step in (7919, 104729, 1299709))


def recall_query(memoric, i):
    return memoric.retrieve(user_for(i), scope="user", query=query_text(i), top_k=RECALL_TOP_K)


QUERIES = (
    Query("filter_user", "metadata filter, one user", filter_one_user, filter_one_user_keeps),
    Query("filter_all_2keys", "metadata filter, all users, 2 keys", filter_two_keys, filter_two_keys_keeps),
    Query("filter_nested", "nested filter, one user", filter_nested, filter_nested_keeps),
    Query("filter_list", "list filter, one user", filter_list, filter_list_keeps),
    Query("filter_no_match", "filter that matches nothing", filter_no_match, matches_nothing),
    Query(
        "filter_no_match_user", "filter that matches nothing, one user", filter_no_match_user, matches_nothing
    ),
    Query("user_thread", "user + thread", user_thread, user_thread_keeps),
    Query(
        "tier_updated",
        "tier + updated (1000 rows)",
        tier_updated,
        tier_updated_keeps,
        tier_updated_expected,
        limit=OLDER_THAN_LIMIT,
    ),
    Query("cluster_lookup", "cluster lookup, one user", cluster_lookup, expected=cluster_lookup_expected),
    Query("recall", "recall top-10", recall, needs="memoric"),
    Query("recall_query", "keyword recall, 3 terms, top-10", recall_query, needs="memoric"),
)


def result_ids(query: Query, result: list) -> list:
    """The part of a query's result that `reference` predicts."""
    if query.name == "cluster_lookup":
        return [(c["topic"], c["category"], c["memory_ids"]) for c in result]
    return _ids(result)
