"""Every integer config key: a ConfigError naming it, or the same answers on both dialects."""

from __future__ import annotations

import pytest

from memoric import Memoric
from memoric.config import load_config
from memoric.errors import ConfigError
from memoric.validation import MAX_INT
from tests.helpers.integer_arguments import VALUES, int_in, is_days, open_memorics, seed
from tests.helpers.reference import NOW, Clock, memory_snapshot


@pytest.fixture(scope="module")
def memorics(tmp_path_factory, request):
    yield from open_memorics(tmp_path_factory, request)


CONFIG_KEYS = {
    "policies.batch_size": (lambda v: {"policies": {"batch_size": v}}, int_in(1, MAX_INT)),
    "policies.lock_timeout": (lambda v: {"policies": {"lock_timeout": v}}, is_days),
    "summarization.min_records": (lambda v: {"summarization": {"min_records": v}}, int_in(1, MAX_INT)),
    "summarization.max_chars": (lambda v: {"summarization": {"max_chars": v}}, int_in(1, MAX_INT)),
    "clustering.min_size": (lambda v: {"clustering": {"min_size": v}}, int_in(1, MAX_INT)),
    "tiers[0].expire_after_days": (
        lambda v: {
            "tiers": [
                {"name": "short_term", "expire_after_days": v},
                {"name": "mid_term"},
                {"name": "long_term"},
            ]
        },
        is_days,
    ),
    "tiers[0].trim_chars": (
        lambda v: {
            "tiers": [{"name": "short_term", "trim_chars": v}, {"name": "mid_term"}, {"name": "long_term"}]
        },
        int_in(2, MAX_INT),
    ),
    "scoring.decay_days": (
        lambda v: {"scoring": {"decay_days": v}},
        lambda v: is_days(v) and 0 < v <= 36500,
    ),
    "scoring.bm25_k1": (lambda v: {"scoring": {"bm25_k1": v}}, lambda v: is_days(v) and v <= 1000),
}


def test_every_integer_config_key_is_covered():
    defaults = load_config()
    keys = {
        f"{section}.{key}"
        for section in ("policies", "summarization", "clustering", "scoring")
        for key, value in defaults[section].items()
        if type(value) in (int, float)
    }
    keys |= {f"tiers[0].{key}" for key in ("expire_after_days", "trim_chars")}
    weights = {
        "scoring.importance",
        "scoring.recency",
        "scoring.thread",
        "scoring.relevance",
        "scoring.bm25_b",
    }  # fractions 0-1, tested in test_config and test_keyword_recall
    assert keys - weights == set(CONFIG_KEYS)


def config_outcome(dsn: str, config: dict):
    """What a Memoric with `config` does over the seeded memories: the counts and answers, or the error."""
    try:
        memoric = Memoric(dsn, config=config, clock=Clock(NOW))
    except ConfigError as exc:
        return "refused", str(exc)
    seed(memoric)
    try:
        return "ok", (
            memoric.run_policies(dry_run=True),
            memoric.run_policies(),
            memoric.rebuild_clusters(),
            [(m["id"], m["_score"]) for m in memoric.retrieve("ada", scope="user", top_k=20)],
            memory_snapshot(memoric.db),
        )
    finally:
        memoric.close()


@pytest.mark.parametrize("key", sorted(CONFIG_KEYS))
def test_every_integer_config_key_answers_or_refuses_alike_on_both_dialects(memorics, key):
    build, valid = CONFIG_KEYS[key]
    outcomes = {}
    for dialect, memoric in memorics.items():
        outcomes[dialect] = []
        for value in VALUES:
            kind, detail = config_outcome(memoric.db.dsn, build(value))
            outcomes[dialect].append((value, kind, detail))
            if valid(value):
                assert kind == "ok", (dialect, value, detail)
            else:
                assert kind == "refused" and key.split(".")[-1] in detail, (dialect, value, detail)
                assert len(detail.splitlines()) == 1 and len(detail) < 300, detail
    first, *others = outcomes.values()
    for other in others:
        assert other == first


def test_a_tier_expiring_after_more_days_than_the_calendar_holds_moves_nothing(memorics):
    """A cut-off before year 1 once made every run fail with OverflowError; now nothing is that old."""
    for days in (10**6, 2**63 - 1, 1e300, 739_000):
        config = {
            "tiers": [
                {"name": "short_term", "expire_after_days": days},
                {"name": "mid_term"},
                {"name": "long_term"},
            ]
        }
        for dialect, memoric in memorics.items():
            kind, detail = config_outcome(memoric.db.dsn, config)
            assert kind == "ok", (dialect, days, detail)
            dry_run, run, *_ = detail
            assert dry_run["migrated"] == run["migrated"] == {"short_term": 0, "mid_term": 0}, (dialect, days)
