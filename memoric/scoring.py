"""The recall score (importance, recency, same thread), defined once in exact integer arithmetic.

    score = 100 × (importance·s/100 + recency·max(0, 1 − age/decay) + thread·[same thread])

rounded half up to an int 0–100, where `s` is the memory's own score (0–100), `age` the whole
seconds since its `updated_at` (rounded down; a future `updated_at` counts as age 0), `decay`
is `decay_days` in whole seconds and the weights are taken to 6 decimals. With those integers
the formula is a ratio of integers, so the database (in the ORDER BY of the ranked query) and
Python (the reference below) compute the very same score, ties included: no float rounding.

`ScoreFormula` holds the formula as data: `score = (2·N + D) // (2·D)` with
`N = a·s + b·remaining + c·same_thread`, `remaining = clamp(decay − age, 0, decay)`, and
`D = 10**6 · decay`. MemoryStore renders exactly these coefficients as SQL.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

WEIGHT_SCALE = 1_000_000
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class ScoreFormula:
    """The integer coefficients of the score for one set of weights."""

    importance: int  # weights in millionths
    recency: int
    thread: int
    decay_seconds: int

    @classmethod
    def from_config(cls, scoring: dict) -> ScoreFormula:
        """The formula for a validated `scoring` config section."""
        return cls(
            importance=round(scoring["importance"] * WEIGHT_SCALE),
            recency=round(scoring["recency"] * WEIGHT_SCALE),
            thread=round(scoring["thread"] * WEIGHT_SCALE),
            decay_seconds=max(1, round(scoring["decay_days"] * SECONDS_PER_DAY)),
        )

    @property
    def importance_factor(self) -> int:
        """`a`: multiplies the memory's own score."""
        return self.importance * self.decay_seconds

    @property
    def recency_factor(self) -> int:
        """`b`: multiplies the remaining seconds before full decay."""
        return 100 * self.recency

    @property
    def thread_factor(self) -> int:
        """`c`: added when the memory is in the thread asked about."""
        return 100 * self.thread * self.decay_seconds

    @property
    def denominator(self) -> int:
        """`D`: the score is N / D before rounding."""
        return WEIGHT_SCALE * self.decay_seconds

    def remaining(self, age_seconds: int) -> int:
        """Seconds left before full decay: `clamp(decay − age, 0, decay)`."""
        return min(self.decay_seconds, max(0, self.decay_seconds - age_seconds))

    def score(self, importance: int, age_seconds: int, same_thread: bool) -> int:
        """The score of one memory (the Python reference of the SQL ordering)."""
        numerator = (
            self.importance_factor * importance
            + self.recency_factor * self.remaining(age_seconds)
            + self.thread_factor * int(same_thread)
        )
        return (2 * numerator + self.denominator) // (2 * self.denominator)


def age_seconds(updated_at: dt.datetime, now: dt.datetime) -> int:
    """Whole seconds from `updated_at` to `now`, rounded down (as the database computes it)."""
    delta = now - updated_at
    return delta.days * SECONDS_PER_DAY + delta.seconds


def score_memory(formula: ScoreFormula, memory: dict, now: dt.datetime, thread_id: str | None) -> int:
    """The score of a memory dict when recalled at `now` for `thread_id`."""
    same = thread_id is not None and memory["thread_id"] == thread_id
    return formula.score(memory["score"], age_seconds(memory["updated_at"], now), same)


# --- keyword recall: BM25 relevance and its blend with the score -------------------------------


@dataclass(frozen=True)
class Relevance:
    """BM25 with Lucene's idf, and the blend that ranks keyword recall.

    For a memory d of one user and namespace (N memories, average length avgdl terms) and the
    distinct query terms t with document frequency df(t) and frequency tf(t, d) in d (length dl):

        idf(t)       = ln(1 + (N − df + 0.5) / (df + 0.5))           (always > 0)
        relevance(d) = Σ_t  tf · idf·(k1 + 1) / (tf + k1·(1 − b) + k1·b·dl/avgdl)
        rank(d)      = weight · relevance / max relevance + (1 − weight) · score / 100

    the sum taken in the order the terms first occur in the query, the maximum over the memories
    the recall considers. Python computes idf and the other per-query constants; the database
    applies them per posting with multiplications, additions and divisions only, which both
    dialects do in IEEE double precision in the order written: equal inputs, equal bits.
    """

    weight: float  # of the relevance in the rank; the score has the rest
    k1: float
    b: float

    @classmethod
    def from_config(cls, scoring: dict) -> Relevance:
        """The relevance settings of a validated `scoring` config section."""
        return cls(weight=scoring["relevance"], k1=scoring["bm25_k1"], b=scoring["bm25_b"])

    def constants(self, documents: int, total_length: int, frequencies: list[int]) -> QueryConstants:
        """The per-query constants for N = `documents` of `total_length` terms in all, and the
        document frequency of each query term (in query order)."""
        average = total_length / documents
        return QueryConstants(
            term_weights=[idf(documents, df) * (self.k1 + 1) for df in frequencies],
            length_base=self.k1 * (1 - self.b),
            length_factor=self.k1 * self.b / average,
            relevance_share=self.weight,
            score_share=(1 - self.weight) / 100,
        )


@dataclass(frozen=True)
class QueryConstants:
    """What one keyword recall binds into its SQL, and the Python mirror of that SQL."""

    term_weights: list[float]  # idf·(k1 + 1) per query term
    length_base: float  # k1·(1 − b)
    length_factor: float  # k1·b / avgdl
    relevance_share: float
    score_share: float  # (1 − weight) / 100

    def contribution(self, term: int, tf: int, dl: int) -> float:
        """One query term's part of a memory's relevance, computed as the SQL computes it."""
        return (tf * self.term_weights[term]) / ((tf + self.length_base) + self.length_factor * dl)

    def rank(self, relevance: float, best: float, score: int) -> float:
        """The rank of a memory, computed as the SQL computes it."""
        return self.relevance_share * (relevance / best) + self.score_share * score


def idf(documents: int, frequency: int) -> float:
    """Lucene's BM25 idf: ln(1 + (N − df + 0.5) / (df + 0.5)), positive even where df = N."""
    return math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5))
