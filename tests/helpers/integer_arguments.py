"""The integer arguments of memoric's API, each with the values it takes and the name its errors use.

Shared by the tests of every integer argument, config key and CLI option
(`test_integer_arguments`, `test_integer_config`, `test_integer_options`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

from memoric import Memoric
from memoric.db.policy_queries import (
    count_in_slices,
    move_expired,
    summary_groups,
    trim_content,
    write_summaries,
)
from memoric.db.recall_queries import ranked_memories
from memoric.db.transfer_queries import (
    clusters_after,
    delete_ids,
    has_ids,
    iter_clusters,
    iter_memories,
    memories_after,
    reserve_ids,
    stored_rows,
)
from memoric.scoring import ScoreFormula
from memoric.validation import MAX_INT, MAX_STORED_ID, MIN_INT
from tests.helpers.dialects import selected_dialects
from tests.helpers.reference import NOW, Clock, ago

VALUES = [-1, 0, 2**31, 2**63 - 1, 2**63, 10**30, True, 1.5, "3"]
FORMULA = ScoreFormula.from_config({"importance": 0.5, "recency": 0.3, "thread": 0.2, "decay_days": 60})
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def int_in(low: int, high: int) -> Callable[[object], bool]:
    """Whether a value is an int (never a bool) from `low` to `high`."""
    return lambda value: type(value) is int and low <= value <= high


COUNT_RANGE = int_in(0, MAX_INT)
ID_RANGE = int_in(MIN_INT, MAX_INT)


def not_a_memory_of_ints(value) -> bool:
    """No value is a memory of user "ints" (who has none): a cluster of them is refused, for its
    range or, in range, for naming no memory of its user."""
    return False


def is_days(value) -> bool:
    """A non-negative finite number; an int also within the 64-bit range."""
    if type(value) is int:
        return 0 <= value <= MAX_INT
    return type(value) is float and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class Argument:
    """One integer argument: how to pass it a value, which values it takes, the name errors use."""

    owner: str
    method: str
    parameter: str
    call: Callable
    valid: Callable[[object], bool]
    named: str
    returns_new_id: bool = False

    def __str__(self) -> str:
        return f"{self.owner}.{self.method}({self.parameter})"


def memory_row(**change) -> dict:
    return {"user_id": "ints", "content": "new memory", **change}


def summary_item(value) -> tuple[dict, list]:
    return {"user_id": "ints", "content": "summary", "thread_id": "t1", "tier": "long_term"}, [value]


S, M = "MemoryStore", "Memoric"
ARGUMENTS = [
    Argument(
        S,
        "insert_memory",
        "score",
        lambda m, v: m.db.insert_memory(**memory_row(score=v)),
        int_in(0, 100),
        "score",
        True,
    ),
    Argument(
        S,
        "insert_memory",
        "id",
        lambda m, v: m.db.insert_memory(**memory_row(id=v)),
        int_in(1, MAX_STORED_ID),
        "id",
        True,
    ),
    Argument(
        S,
        "insert_memories",
        "rows[].score",
        lambda m, v: m.db.insert_memories([memory_row(score=v)]),
        int_in(0, 100),
        "score",
    ),
    Argument(
        S,
        "insert_memories",
        "rows[].id",
        lambda m, v: m.db.insert_memories([memory_row(id=v)]),
        int_in(1, MAX_STORED_ID),
        "id",
    ),
    Argument(
        S,
        "insert_memories",
        "batch_size",
        lambda m, v: m.db.insert_memories([memory_row()], batch_size=v),
        COUNT_RANGE,
        "batch_size",
    ),
    Argument(S, "get_memory", "memory_id", lambda m, v: m.db.get_memory(v), ID_RANGE, "memory_id"),
    Argument(S, "get_memories", "limit", lambda m, v: m.db.get_memories(limit=v), COUNT_RANGE, "limit"),
    Argument(S, "get_memories", "offset", lambda m, v: m.db.get_memories(offset=v), COUNT_RANGE, "offset"),
    Argument(
        S,
        "get_memories",
        "limit (metadata filter)",
        lambda m, v: m.db.get_memories(
            user_id="ada",
            where_metadata={"topic": "x"},
            limit=v,
            offset=v if type(v) is int and v >= 0 else 0,
        ),
        COUNT_RANGE,
        "limit",
    ),
    Argument(
        S,
        "update_tier",
        "memory_ids",
        lambda m, v: m.db.update_tier(memory_ids=[v], new_tier="mid_term"),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(
        S,
        "mark_summarized",
        "memory_ids",
        lambda m, v: m.db.mark_summarized(memory_ids=[v]),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(
        S,
        "delete_memories",
        "memory_ids",
        lambda m, v: m.db.delete_memories(memory_ids=[v]),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(
        S,
        "update_content",
        "memory_id",
        lambda m, v: m.db.update_content(memory_id=v, new_content="x"),
        ID_RANGE,
        "memory_id",
    ),
    Argument(
        S,
        "update_metadata",
        "memory_id",
        lambda m, v: m.db.update_metadata(memory_id=v, new_metadata={}),
        ID_RANGE,
        "memory_id",
    ),
    Argument(
        S,
        "set_related_threads",
        "memory_id",
        lambda m, v: m.db.set_related_threads(memory_id=v, related_threads=[]),
        ID_RANGE,
        "memory_id",
    ),
    Argument(
        S, "distinct_threads", "limit", lambda m, v: m.db.distinct_threads(limit=v), COUNT_RANGE, "limit"
    ),
    Argument(S, "find_older_than", "days", lambda m, v: m.db.find_older_than(days=v), is_days, "days"),
    Argument(
        S,
        "find_older_than",
        "limit",
        lambda m, v: m.db.find_older_than(days=1, limit=v),
        COUNT_RANGE,
        "limit",
    ),
    Argument(
        S,
        "upsert_cluster",
        "memory_ids",
        lambda m, v: m.db.upsert_cluster(user_id="ints", topic=f"t{v!r}", category="c", memory_ids=[v]),
        not_a_memory_of_ints,
        "memory_ids",
        True,
    ),
    Argument(
        S,
        "upsert_clusters",
        "clusters",
        lambda m, v: m.db.upsert_clusters(
            user_id="ints", clusters=[{"topic": f"u{v!r}", "category": "c", "memory_ids": [v]}]
        ),
        not_a_memory_of_ints,
        "memory_ids",
    ),
    Argument(S, "get_clusters", "limit", lambda m, v: m.db.get_clusters(limit=v), COUNT_RANGE, "limit"),
    Argument(
        S,
        "delete_cluster",
        "cluster_id",
        lambda m, v: m.db.delete_cluster(cluster_id=v),
        ID_RANGE,
        "cluster_id",
    ),
    Argument(S, "memories_after", "after_id", lambda m, v: memories_after(m.db, v), ID_RANGE, "after_id"),
    Argument(S, "clusters_after", "after_id", lambda m, v: clusters_after(m.db, v), ID_RANGE, "after_id"),
    Argument(
        S, "clusters_after", "limit", lambda m, v: clusters_after(m.db, 0, limit=v), COUNT_RANGE, "limit"
    ),
    Argument(
        S,
        "iter_clusters",
        "batch_size",
        lambda m, v: list(iter_clusters(m.db, batch_size=v)),
        int_in(1, MAX_INT),
        "batch_size",
    ),
    Argument(S, "has_ids", "low", lambda m, v: has_ids(m.db, "memory", v, -1), ID_RANGE, "low"),
    Argument(S, "has_ids", "high", lambda m, v: has_ids(m.db, "memory", 2**62, v), ID_RANGE, "high"),
    Argument(S, "delete_ids", "ids", lambda m, v: delete_ids(m.db, "memory", [v]), ID_RANGE, "ids[0]"),
    Argument(S, "stored_rows", "ids", lambda m, v: stored_rows(m.db, "memory", [v]), ID_RANGE, "ids[0]"),
    Argument(
        S,
        "reserve_ids",
        "claims",
        lambda m, v: reserve_ids(m.db, {"memory": (v, 0)}, check=lambda: None, holding_rows=lambda tops: {}),
        int_in(0, MAX_STORED_ID),
        "claims",
    ),
    Argument(
        S, "memories_after", "limit", lambda m, v: memories_after(m.db, 0, limit=v), COUNT_RANGE, "limit"
    ),
    Argument(
        S,
        "iter_memories",
        "batch_size",
        lambda m, v: list(iter_memories(m.db, batch_size=v)),
        int_in(1, MAX_INT),
        "batch_size",
    ),
    Argument(
        S,
        "move_expired",
        "batch_size",
        lambda m, v: move_expired(
            m.db, from_tier="short_term", to_tier="mid_term", updated_before=LONG_AGO, batch_size=v
        ),
        COUNT_RANGE,
        "batch_size",
    ),
    Argument(
        S,
        "trim_content",
        "max_chars",
        lambda m, v: trim_content(m.db, tier="short_term", max_chars=v),
        int_in(2, MAX_INT),
        "max_chars",
    ),
    Argument(
        S,
        "trim_content",
        "batch_size",
        lambda m, v: trim_content(m.db, tier="short_term", max_chars=1000, batch_size=v),
        COUNT_RANGE,
        "batch_size",
    ),
    Argument(
        S,
        "summary_groups",
        "min_records",
        lambda m, v: summary_groups(
            m.db, slices=[("short_term", None, None)], min_records=v, exclude_metadata={"kind": "s"}
        ),
        COUNT_RANGE,
        "min_records",
    ),
    Argument(
        S,
        "count_in_slices",
        "longer_than",
        lambda m, v: count_in_slices(m.db, slices=[("short_term", None, None)], longer_than=v),
        COUNT_RANGE,
        "longer_than",
    ),
    Argument(
        S,
        "ranked_memories",
        "limit",
        lambda m, v: ranked_memories(m.db, user_id="ada", formula=FORMULA, limit=v, now=NOW),
        COUNT_RANGE,
        "limit",
    ),
    Argument(
        S,
        "write_summaries",
        "items",
        lambda m, v: write_summaries(m.db, [summary_item(v)]),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(
        M, "save", "score", lambda m, v: m.save("ints", "saved", score=v), int_in(0, 100), "score", True
    ),
    Argument(
        M, "retrieve", "top_k", lambda m, v: m.retrieve("ada", scope="user", top_k=v), COUNT_RANGE, "top_k"
    ),
    Argument(M, "get_clusters", "limit", lambda m, v: m.get_clusters(limit=v), COUNT_RANGE, "limit"),
    Argument(M, "forget", "memory_ids", lambda m, v: m.forget("nobody", [v]), ID_RANGE, "memory_ids[0]"),
]


def open_memorics(tmp_path_factory, request):
    """A Memoric per selected dialect, built through the chain, clock stopped at NOW (a fixture's body)."""
    opened = {}
    for dialect in selected_dialects():
        if dialect == "sqlite":
            dsn = f"sqlite:///{tmp_path_factory.mktemp('ints') / 'memoric.db'}"
        else:
            dsn = request.getfixturevalue("new_postgres_url")()
        opened[dialect] = Memoric(dsn, clock=Clock(NOW))
        opened[dialect].ensure_schema()
        opened[dialect].db.clock = Clock(NOW)
    yield opened
    for memoric in opened.values():
        memoric.close()


def seed(memoric: Memoric) -> None:
    """The same few memories and clusters on every dialect (ids restart at 1)."""
    memoric.db.truncate()
    for i in range(6):
        memoric.db.insert_memory(
            user_id="ada",
            thread_id=f"t{i % 2}",
            content=f"memory {i} " * (i + 1),
            tier=("short_term", "mid_term", "long_term")[i % 3],
            score=i * 10,
            metadata={"topic": "x" if i % 2 else "y", "n": i},
            **ago(days=i * 400),
        )
    memoric.rebuild_clusters()
