"""The read queries of the `Memoric` facade: ranked recall, keyword recall and the stats.

`ranked_memories` renders `memoric.scoring.ScoreFormula` as integer SQL and ranks one user's
memories by it in the database; given a query it ranks the memories sharing a term with it by
`memoric.scoring.Relevance` (BM25 over the text postings, blended with the score), also in the
database; `memory_stats` counts what `Memoric.stats` reports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING

import peewee

from memoric import json_input, text, validation
from memoric.db import postings
from memoric.db.driver_errors import translate_errors
from memoric.db.filters import filter_conditions, namespace_is, related_to, select_memories, thread_ids
from memoric.db.jsonfilter import all_of
from memoric.db.rows import memory_dict
from memoric.scoring import QueryConstants, Relevance

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

MAX_QUERY_TERMS = 64  # distinct terms of one query: one SQL sum term each


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
    query: str | None = None,
    relevance: Relevance | None = None,
) -> list[dict]:
    """One user's memories in one namespace (None: without one), best score first, ties newest first.

    `thread_id` keeps one thread; `topic` keeps the threads of the user holding a memory with
    that `metadata.topic` (and memories with that topic anywhere); `bonus_thread_id` is the
    thread that earns the thread weight. Each dict carries its `_score`.
    With a `query` (and the `relevance` settings), only memories sharing a term with it, best
    rank first (see `memoric.scoring.Relevance`); each dict also carries `_relevance` and `_rank`.
    """
    user_id = validation.user_id(user_id)
    limit = validation.count("limit", limit)
    validation.flag("include_summarized", include_summarized)
    if query is not None:
        query = validation.clean_text("query", query, max_length=validation.MAX_QUERY_LENGTH)
    now = store.clock() if now is None else now
    m = store.Memory
    conditions = [namespace_is(store, namespace)]
    filters = {"user_id": user_id, "thread_id": thread_id, "where_metadata": where_metadata}
    conditions += filter_conditions(store, **filters)
    if topic is not None:
        has_topic = m.metadata.contains(json_input.metadata({"topic": topic}))
        threads = thread_ids(store, [m.user_id == user_id, namespace_is(store, namespace), has_topic])
        conditions.append(related_to(store, threads) | has_topic)
    if not include_summarized:
        conditions.append(m.summarized == False)  # noqa: E712 (SQL comparison)
    if bonus_thread_id is not None:
        bonus_thread_id = validation.optional_text("thread_id", bonus_thread_id)
    score = _score_expression(store, formula, now, bonus_thread_id)
    if query is not None:
        return _by_relevance(store, user_id, namespace, conditions, score, query, relevance, limit)
    ranked = (
        m.select(m, score.alias("_score"))
        .where(all_of(conditions))
        .order_by(peewee.SQL('"_score"').desc(), m.created_at.desc(), m.id.desc())
        .limit(limit)
    )
    return [{**memory_dict(row), "_score": int(row["_score"])} for row in ranked.dicts()]


def _by_relevance(store: MemoryStore, user_id, namespace, conditions, score, query, relevance, limit):
    """The memories matching `conditions` that share a term with `query`, best rank first.

    Two reads, in one snapshot where the caller has no transaction open: the statistics of
    the user's namespace (memories, total length, each term's document frequency), from which
    Python computes the query's constants; then the ranking, all in SQL (exact top-k).
    """
    terms = text.query_terms(query)
    if len(terms) > MAX_QUERY_TERMS:
        raise validation.ValidationError(
            f"query has {len(terms)} distinct terms; at most {MAX_QUERY_TERMS} are allowed"
        )
    if not terms or limit == 0 or not postings.enabled(store):
        return []
    reads = (
        contextlib.nullcontext()
        if store.database.in_transaction()
        else store.dialect.snapshot(store.database)
    )
    with reads:
        documents, total, frequencies = _statistics(store, user_id, namespace, terms)
        if not total or not any(frequencies):
            return []
        constants = relevance.constants(documents, total, frequencies)
        ranked = _ranking(store, user_id, namespace, conditions, score, terms, constants, limit)
        rows = list(ranked.dicts())
    return [
        {
            **memory_dict(row),
            "_score": int(row["_score"]),
            "_relevance": row["_relevance"],
            "_rank": row["_rank"],
        }
        for row in rows
    ]


# The postings statements are written out here rather than built from peewee nodes: rendering
# the per-term arithmetic through peewee cost several milliseconds per recall, the database a
# fraction of one. `{mark}` is the driver's parameter marker, `{scope}` the namespace test.
DOUBLE = "CAST({mark} AS DOUBLE PRECISION)"
STATISTICS_SQL = 'SELECT COUNT(*), SUM("length") FROM "memory_documents" WHERE "user_id" = {mark} AND {scope}'
FREQUENCIES_SQL = (
    'SELECT "term", COUNT(*) FROM "memory_terms" WHERE "user_id" = {mark} AND {scope} '
    'AND "term" IN ({terms}) GROUP BY "term"'
)
CONTRIBUTION_SQL = (
    'COALESCE(MAX(CASE WHEN "term" = {mark} THEN ("tf" * {double}) / (("tf" + {double}) + {double} * "dl") '
    "END), CAST(0 AS DOUBLE PRECISION))"
)
HITS_SQL = (
    '(SELECT "memory_id", {relevance} AS "relevance" FROM "memory_terms" '
    'WHERE "user_id" = {mark} AND {scope} AND "term" IN ({terms}) GROUP BY "memory_id") AS "hits"'
)


def _scoped(store: MemoryStore, template: str, user_id: str, namespace, **parts: str) -> tuple[str, list]:
    """`template` for one user's postings of one namespace (None: without one): SQL and parameters."""
    mark = store.database.param
    scope = '"namespace" IS NULL' if namespace is None else f'"namespace" = {mark}'
    params = [user_id] if namespace is None else [user_id, namespace]
    return template.format(mark=mark, scope=scope, **parts), params


def _statistics(store: MemoryStore, user_id: str, namespace, terms: list[str]) -> tuple[int, int, list[int]]:
    """Memories of the user's namespace, their total length in terms, and each term's document frequency."""
    sql, params = _scoped(store, STATISTICS_SQL, user_id, namespace)
    documents, total = store.database.execute_sql(sql, params).fetchone()
    marks = ", ".join([store.database.param] * len(terms))
    sql, params = _scoped(store, FREQUENCIES_SQL, user_id, namespace, terms=marks)
    frequency = dict(store.database.execute_sql(sql, [*params, *terms]).fetchall())
    return documents, int(total or 0), [frequency.get(term, 0) for term in terms]


def _double(value: float) -> peewee.Node:
    """A bound float the database reads as an IEEE double (PostgreSQL would read NUMERIC)."""
    return peewee.Cast(peewee.Value(value, converter=False), "DOUBLE PRECISION")


class _Subquery(peewee.Source):
    """A subquery written out as SQL, joinable like a peewee source."""

    def __init__(self, sql: peewee.SQL) -> None:
        super().__init__()
        self.sql = sql

    def __sql__(self, ctx):
        return ctx.sql(self.sql)


def _hits(
    store: MemoryStore, user_id: str, namespace, terms: list[str], constants: QueryConstants
) -> _Subquery:
    """The subquery `hits`: (memory_id, relevance) of the user's memories holding a query term.

    The relevance is the sum, in query order, of each term's contribution (0 where the memory
    lacks it): `(tf · weight) / ((tf + length_base) + length_factor · dl)` in doubles.
    """
    mark = store.database.param
    contribution = CONTRIBUTION_SQL.format(mark=mark, double=DOUBLE.format(mark=mark))
    relevance = " + ".join([contribution] * len(terms))
    marks = ", ".join([mark] * len(terms))
    sql, scope_params = _scoped(store, HITS_SQL, user_id, namespace, relevance=relevance, terms=marks)
    sums = []
    for term, weight in zip(terms, constants.term_weights, strict=True):
        sums += [term, weight, constants.length_base, constants.length_factor]
    return _Subquery(peewee.SQL(sql, [*sums, *scope_params, *terms]))


def _ranking(store, user_id, namespace, conditions, score, terms, constants: QueryConstants, limit):
    """The SELECT ranking the memories with a query term by `memoric.scoring.Relevance`."""
    m = store.Memory
    relevance = peewee.SQL('"hits"."relevance"')
    best = peewee.SQL('MAX("hits"."relevance") OVER ()')
    rank = _double(constants.relevance_share) * (relevance / best) + _double(constants.score_share) * score
    return (
        m.select(m, score.alias("_score"), relevance.alias("_relevance"), rank.alias("_rank"))
        .join(
            _hits(store, user_id, namespace, terms, constants), on=(peewee.SQL('"hits"."memory_id"') == m.id)
        )
        .where(all_of(conditions))
        .order_by(peewee.SQL('"_rank"').desc(), m.created_at.desc(), m.id.desc())
        .limit(limit)
    )


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
