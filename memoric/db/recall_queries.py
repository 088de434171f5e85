"""The two read queries of the `Memoric` facade: ranked recall and the stats.

`ranked_memories` renders `memoric.scoring.ScoreFormula` as integer SQL and ranks one user's
memories by it in the database; `memory_stats` counts what `Memoric.stats` reports.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import peewee

from memoric import validation
from memoric.db.connection import translate_errors
from memoric.db.filters import filter_conditions, namespace_is, related_to, select_memories, thread_ids
from memoric.db.jsonfilter import all_of
from memoric.db.rows import memory_dict

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore


def _score_expression(store: MemoryStore, formula, now: dt.datetime, bonus_thread_id):
    """The score of `memoric.scoring.ScoreFormula` as SQL: integer arithmetic only."""
    m = store.Memory
    decay = formula.decay_seconds
    age = store.dialect.age_seconds(m.updated_at, now)
    # Plain comparisons settle the rows outside the decay window without date arithmetic.
    window = dt.timedelta(seconds=decay)
    decayed_since = now - window if now - validation.EARLIEST > window else validation.EARLIEST
    fully_decayed = m.updated_at <= decayed_since
    decaying = decay - store.dialect.clamp(age, 0, decay)
    remaining = peewee.Case(None, [(fully_decayed, 0), (m.updated_at >= now, decay)], decaying)
    same_thread = peewee.Value(0)
    if bonus_thread_id is not None:
        same_thread = peewee.Case(None, [(m.thread_id == bonus_thread_id, 1)], 0)
    numerator = (
        m.score.cast("BIGINT") * formula.importance_factor
        + remaining * formula.recency_factor
        + same_thread * formula.thread_factor
    )
    return (numerator * 2 + formula.denominator) / (2 * formula.denominator)


@translate_errors
def ranked_memories(
    store: MemoryStore,
    *,
    user_id,
    formula,
    namespace=None,
    thread_id=None,
    topic=None,
    where_metadata=None,
    bonus_thread_id=None,
    include_summarized: bool = False,
    limit: int = 10,
    now: dt.datetime | None = None,
) -> list[dict]:
    """One user's memories in one namespace (None: without one), best score first, ties newest first.

    `thread_id` keeps one thread; `topic` keeps the threads of the user holding a memory with
    that `metadata.topic` (and memories with that topic anywhere); `bonus_thread_id` is the
    thread that earns the thread weight. Each dict carries its `_score`.
    """
    user_id = validation.user_id(user_id)
    limit = validation.count("limit", limit)
    validation.flag("include_summarized", include_summarized)
    now = store.clock() if now is None else now
    m = store.Memory
    conditions = [namespace_is(store, namespace)]
    filters = {"user_id": user_id, "thread_id": thread_id, "where_metadata": where_metadata}
    conditions += filter_conditions(store, **filters)
    if topic is not None:
        has_topic = m.metadata.contains(validation.metadata({"topic": topic}))
        threads = thread_ids(store, [m.user_id == user_id, namespace_is(store, namespace), has_topic])
        conditions.append(related_to(store, threads) | has_topic)
    if not include_summarized:
        conditions.append(m.summarized == False)  # noqa: E712 (SQL comparison)
    if bonus_thread_id is not None:
        bonus_thread_id = validation.optional_text("thread_id", bonus_thread_id)
    score = _score_expression(store, formula, now, bonus_thread_id).alias("_score")
    query = (
        m.select(m, score)
        .where(all_of(conditions))
        .order_by(peewee.SQL('"_score"').desc(), m.created_at.desc(), m.id.desc())
        .limit(limit)
    )
    return [{**memory_dict(row), "_score": int(row["_score"])} for row in query.dicts()]


@translate_errors
def memory_stats(store: MemoryStore, *, user_id=None) -> dict:
    """total, by_tier, summarized, users, threads (distinct user/thread pairs) and clusters."""
    m, c = store.Memory, store.MemoryCluster
    conditions = filter_conditions(store, user_id=user_id)
    # Separate queries, each served by an index of its own (one GROUP BY reading every row
    # for `summarized` as well was several times slower on SQLite).
    by_tier = store.count_by_tier(user_id=user_id)
    summarized_total = select_memories(store, [*conditions, m.summarized == True]).count()  # noqa: E712
    users = select_memories(store, conditions).select(m.user_id).distinct().count()
    thread_conditions = [*conditions, m.thread_id.is_null(False)]
    threads = select_memories(store, thread_conditions).select(m.user_id, m.thread_id).distinct().count()
    clusters = c.select()
    if user_id is not None:
        clusters = clusters.where(c.user_id == validation.user_id(user_id))
    return {
        "total": sum(by_tier.values()),
        "by_tier": by_tier,
        "summarized": summarized_total,
        "users": users,
        "threads": threads,
        "clusters": clusters.count(),
    }
