"""The recall score: its exact integer definition, and the SQL ordering agreeing with it."""

from __future__ import annotations

import datetime as dt
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoric.config import load_config
from memoric.db import recall_queries
from memoric.scoring import ScoreFormula, age_seconds
from tests.helpers.reference import NOW, reference_ranking

DEFAULT = ScoreFormula.from_config(load_config()["scoring"])
DAY = 86400


def exact_score(weights: dict, importance: int, age: int, same_thread: bool) -> int:
    """The documented recall score in rational arithmetic, rounded half up: what ScoreFormula must equal."""
    w = {
        key: Fraction(round(weights[key] * 1_000_000), 1_000_000)
        for key in ("importance", "recency", "thread")
    }
    decay = max(1, round(weights["decay_days"] * DAY))
    recency = max(Fraction(0), 1 - Fraction(max(age, 0), decay))
    value = 100 * (
        w["importance"] * importance / 100 + w["recency"] * recency + w["thread"] * int(same_thread)
    )
    return int(value + Fraction(1, 2)) if value >= 0 else 0


def test_known_values():
    assert DEFAULT.score(50, 0, True) == 75
    assert DEFAULT.score(50, 0, False) == 55
    assert DEFAULT.score(51, 0, False) == 56  # 55.5 rounds half up
    assert DEFAULT.score(100, 60 * DAY, False) == 50
    assert DEFAULT.score(100, 600 * DAY, True) == 70
    assert DEFAULT.score(0, 30 * DAY, False) == 15
    assert DEFAULT.score(0, -5, False) == 30  # a future updated_at counts as age 0
    assert DEFAULT.score(100, 0, True) == 100


def test_age_is_whole_seconds_rounded_down():
    assert age_seconds(NOW - dt.timedelta(seconds=9, microseconds=999_999), NOW) == 9
    assert age_seconds(NOW - dt.timedelta(days=2, seconds=1), NOW) == 2 * DAY + 1
    assert age_seconds(NOW + dt.timedelta(microseconds=1), NOW) == -1


weights = st.fixed_dictionaries(
    {
        "importance": st.floats(0, 0.4),
        "recency": st.floats(0, 0.3),
        "thread": st.floats(0, 0.3),
        "decay_days": st.floats(0.001, 36500),
    }
)


@given(weights, st.integers(0, 100), st.integers(-DAY, 40000 * DAY), st.booleans())
def test_formula_equals_the_exact_rational_score(weights, importance, age, same_thread):
    formula = ScoreFormula.from_config(weights)
    score = formula.score(importance, age, same_thread)
    assert score == exact_score(weights, importance, age, same_thread)
    assert 0 <= score <= 100


# --- the database ordering ----------------------------------------------------------------

AGES = [0, 1, 59, DAY, 30 * DAY, 60 * DAY - 1, 60 * DAY, 90 * DAY, -3]
MICROS = [0, 1, 499_999, 999_999]


def tied_rows(count: int, seed: int = 7) -> list[dict]:
    """Memories with few distinct scores, ages and creation times: many exact ties."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        updated = NOW - dt.timedelta(seconds=rng.choice(AGES), microseconds=rng.choice(MICROS))
        rows.append(
            {
                "user_id": rng.choice(["ada", "bob"]),
                "namespace": rng.choice([None, None, "work"]),
                "thread_id": rng.choice(["t1", "t2", "t3", None]),
                "content": f"memory {i}",
                "score": rng.choice([0, 49, 50, 51, 100]),
                "metadata": {"topic": rng.choice(["travel", "food"]), "n": i % 3},
                "created_at": NOW - dt.timedelta(days=rng.choice([0, 1, 2])),
                "updated_at": updated,
            }
        )
    return rows


@pytest.fixture(scope="module")
def tied_store(module_store):
    """The module's store holding 3000 tied memories (read-only in these tests)."""
    module_store.truncate()
    module_store.insert_memories(tied_rows(3000))
    return module_store


@pytest.fixture
def tied(tied_store):
    return tied_store.get_memories(limit=None)


@pytest.mark.parametrize("bonus", [None, "t1"])
@pytest.mark.parametrize("top_k", [1, 10, 250])
def test_sql_ranking_equals_the_python_reference_on_ties(tied_store, tied, bonus, top_k):
    keep = lambda m: m["user_id"] == "ada" and m["namespace"] is None  # noqa: E731
    ranked = recall_queries.ranked_memories(
        tied_store, user_id="ada", formula=DEFAULT, bonus_thread_id=bonus, limit=top_k, now=NOW
    )
    expected = reference_ranking(tied, DEFAULT, NOW, bonus_thread_id=bonus, keep=keep, top_k=top_k)
    assert [(m["id"], m["_score"]) for m in ranked] == expected
    full = reference_ranking(tied, DEFAULT, NOW, bonus_thread_id=bonus, keep=keep, top_k=None)
    assert full[top_k - 1][1] == full[top_k][1]  # a tie across the cut: only the tie-break decides


@pytest.mark.parametrize(
    "weights",
    [
        {"importance": 0.1, "recency": 0.7, "thread": 0.2, "decay_days": 0.5},
        {"importance": 0.333333, "recency": 0.333333, "thread": 0.333333, "decay_days": 36500},
        {"importance": 0.0, "recency": 1.0, "thread": 0.0, "decay_days": 1 / 7},
    ],
)
def test_sql_ranking_agrees_for_other_weights_and_times(tied_store, tied, weights):
    formula = ScoreFormula.from_config(weights)
    for now in (NOW, NOW + dt.timedelta(days=3, microseconds=123), NOW - dt.timedelta(seconds=1)):
        ranked = recall_queries.ranked_memories(
            tied_store,
            user_id="bob",
            namespace="work",
            formula=formula,
            bonus_thread_id="t2",
            limit=400,
            now=now,
        )
        keep = lambda m: m["user_id"] == "bob" and m["namespace"] == "work"  # noqa: E731
        expected = reference_ranking(tied, formula, now, bonus_thread_id="t2", keep=keep, top_k=400)
        assert [(m["id"], m["_score"]) for m in ranked] == expected
