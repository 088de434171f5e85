"""Tier policies on both dialects: migration, trimming, thread summaries, dry runs, overlap."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading

import pytest

from memoric.db.store import MemoryStore, utc_now
from memoric.errors import SummarizerFailed, ValidationError
from memoric.policies import SUMMARY_METADATA, extractive_summary, shorten
from tests.helpers.policies import long_term_thread, no_changes, put, run
from tests.helpers.reference import NOW, Clock, ago, memory_snapshot

TRIM_CONFIG = {
    "tiers": [
        {"name": "short_term", "expire_after_days": 7},
        {"name": "mid_term", "expire_after_days": 30, "trim_chars": 40},
        {"name": "long_term"},
    ],
    "summarization": {"min_records": 4, "max_chars": 200},
}
LONG_TEXT = "The user explained at length why they prefer trains to planes on short trips. " * 2


@pytest.fixture
def clock(db):
    stopped = Clock(NOW)
    db.clock = stopped
    yield stopped
    db.clock = utc_now


# --- migration ----------------------------------------------------------------------------


def test_migration_moves_expired_memories_and_cascades_across_runs(db, clock):
    old_short = put(db, "short_term", **ago(days=8))
    new_short = put(db, "short_term", **ago(days=6))
    old_mid = put(db, "mid_term", **ago(days=31))
    new_mid = put(db, "mid_term", **ago(days=29))
    long = put(db, "long_term", **ago(days=1000))

    assert run(db) == {**no_changes(), "migrated": {"short_term": 1, "mid_term": 1}}
    tiers = {i: db.get_memory(i)["tier"] for i in (old_short, new_short, old_mid, new_mid, long)}
    assert tiers == {
        old_short: "mid_term",
        new_short: "short_term",
        old_mid: "long_term",
        new_mid: "mid_term",
        long: "long_term",
    }
    assert db.get_memory(old_short)["updated_at"] == NOW
    assert db.get_memory(long)["updated_at"] == NOW - dt.timedelta(days=1000)
    assert run(db) == no_changes()

    clock.advance(days=31)
    assert run(db)["migrated"] == {"short_term": 1, "mid_term": 2}
    assert {db.get_memory(i)["tier"] for i in (old_short, new_mid)} == {"long_term"}
    assert db.get_memory(new_short)["tier"] == "mid_term"
    clock.advance(days=31)
    assert run(db)["migrated"] == {"short_term": 0, "mid_term": 1}
    assert db.count_by_tier() == {"short_term": 0, "mid_term": 0, "long_term": 5}


def test_migration_boundary_is_strictly_older(db, clock):
    at_cutoff = put(db, "short_term", **ago(days=7))
    just_past = put(db, "short_term", **ago(days=7, microseconds=1))
    assert run(db)["migrated"]["short_term"] == 1
    assert db.get_memory(at_cutoff)["tier"] == "short_term"
    assert db.get_memory(just_past)["tier"] == "mid_term"


def test_migration_runs_in_batches(db, clock):
    db.insert_memories(
        [{"user_id": "ada", "content": f"m{i}", "tier": "short_term", **ago(days=9 + i)} for i in range(10)]
    )
    result = run(db, {"policies": {"batch_size": 3}})
    assert result["migrated"]["short_term"] == 10
    assert db.count_by_tier()["mid_term"] == 10


@pytest.mark.parametrize("callback", ["on_progress", "summarizer"])
def test_a_callback_that_is_no_function_is_refused_before_the_first_batch(db, clock, callback):
    """It was called after the first batch had committed: a TypeError, the run half applied."""
    db.insert_memories(
        [{"user_id": "ada", "content": f"m{i}", "tier": "short_term", **ago(days=9 + i)} for i in range(10)]
    )
    with pytest.raises(ValidationError, match=rf"^{callback} must be a function .*, got int$"):
        run(db, {"policies": {"batch_size": 3}}, **{callback: 5})
    assert db.count_by_tier()["short_term"] == 10


def test_tiers_without_expiry_never_move(db, clock):
    config = {
        "tiers": [{"name": "short_term"}, {"name": "mid_term", "expire_after_days": 1}, {"name": "long_term"}]
    }
    put(db, "short_term", **ago(days=500))
    assert run(db, config)["migrated"] == {"short_term": 0, "mid_term": 0}


def test_user_restriction_touches_only_that_user(db, clock):
    put(db, "short_term", user="ada", **ago(days=8))
    bob = put(db, "short_term", user="bob", **ago(days=8))
    assert run(db, user_id="ada")["migrated"]["short_term"] == 1
    assert db.get_memory(bob)["tier"] == "short_term"


# --- trimming -----------------------------------------------------------------------------


def test_trimming_happens_only_where_configured(db, clock):
    mid = put(db, "mid_term", content=LONG_TEXT, **ago(days=1))
    assert run(db)["trimmed"] == 0
    assert db.get_memory(mid)["content"] == LONG_TEXT

    short = put(db, "short_term", content=LONG_TEXT, **ago(days=1))
    arriving = put(db, "short_term", content=LONG_TEXT, **ago(days=8))
    exact = put(db, "mid_term", content="x" * 40, **ago(days=1))
    result = run(db, TRIM_CONFIG)
    assert result["trimmed"] == 2
    for memory_id in (mid, arriving):
        content = db.get_memory(memory_id)["content"]
        assert content == LONG_TEXT[:39] + "…"
        assert len(content) == 40
    assert db.get_memory(short)["content"] == LONG_TEXT
    assert db.get_memory(exact)["content"] == "x" * 40
    assert db.get_memory(mid)["updated_at"] == NOW - dt.timedelta(days=1)
    assert run(db, TRIM_CONFIG) == no_changes(TRIM_CONFIG)


def test_a_memory_leaves_a_trimming_tier_trimmed_even_when_a_run_stopped_before_trimming_it(db, clock):
    """A run stopped after its moves (a lost connection) left mid-term memories untrimmed; the
    rerun moved them on to long term before trimming, so they were never trimmed. A memory
    leaving a trimming tier is now trimmed first, and the dry run counts it."""
    config = {**TRIM_CONFIG, "summarization": {"enabled": False}}
    untrimmed = put(db, "mid_term", content=LONG_TEXT, **ago(days=31))  # where the stop left it
    staying = put(db, "mid_term", content=LONG_TEXT, **ago(days=1))
    predicted = run(db, config, dry_run=True)
    assert predicted["trimmed"] == 2 and predicted["migrated"]["mid_term"] == 1
    assert run(db, config) == predicted
    moved = db.get_memory(untrimmed)
    assert (moved["tier"], moved["content"]) == ("long_term", LONG_TEXT[:39] + "…")
    assert db.get_memory(staying)["content"] == LONG_TEXT[:39] + "…"
    assert run(db, config) == no_changes(config)


# --- thread summaries ---------------------------------------------------------------------


def test_one_summary_per_thread_and_user_sources_kept_and_hidden(db, clock):
    ada_t1 = long_term_thread(db, "ada", "t1", 12)
    long_term_thread(db, "ada", "t2", 9)
    bob_t1 = long_term_thread(db, "bob", "t1", 10)

    result = run(db)
    assert result == {**no_changes(), "summarized": 22, "summaries_created": 2}
    summaries = db.get_memories(where_metadata=SUMMARY_METADATA, limit=None)
    assert sorted((s["user_id"], s["thread_id"]) for s in summaries) == [("ada", "t1"), ("bob", "t1")]
    ada_summary = next(s for s in summaries if s["user_id"] == "ada")
    assert ada_summary["metadata"] == {"kind": "thread_summary"}
    assert ada_summary["tier"] == "long_term"
    assert ada_summary["score"] == 51
    assert ada_summary["content"].startswith("Thread t1 (12 memories): Fact 0 about t1. | Fact 1 about t1.")
    assert len(ada_summary["content"]) <= 1000
    assert db.count_memories(summarized=True) == 22
    assert {db.get_memory(i)["summarized"] for i in ada_t1 + bob_t1} == {True}
    assert db.count_memories(user_id="ada", thread_id="t2", summarized=False) == 9

    assert run(db) == no_changes()
    long_term_thread(db, "ada", "t1", 3, days=1)
    assert run(db) == no_changes()
    assert db.count_memories(where_metadata=SUMMARY_METADATA) == 2


def test_summaries_keep_namespaces_apart(db, clock):
    long_term_thread(db, "ada", "t1", 6)
    long_term_thread(db, "ada", "t1", 6, namespace="work")
    config = {"summarization": {"min_records": 5}}
    assert run(db, config)["summaries_created"] == 2
    summaries = db.get_memories(where_metadata=SUMMARY_METADATA, limit=None)
    assert sorted(s["namespace"] or "" for s in summaries) == ["", "work"]
    assert run(db, config) == no_changes()


def test_summary_is_cut_to_max_chars(db, clock):
    long_term_thread(db, "ada", "t1", 10)
    run(db, {"summarization": {"max_chars": 30}})
    (summary,) = db.get_memories(where_metadata=SUMMARY_METADATA)
    assert summary["content"].endswith("…")
    assert len(summary["content"]) <= 30


def test_summary_fits_the_last_tiers_trim_so_it_is_never_cut_later(new_dsn):
    tiers = [{"name": "short_term"}, {"name": "long_term", "trim_chars": 25}]
    store = MemoryStore(new_dsn(), tiers=["short_term", "long_term"], clock=Clock(NOW))
    store.create_schema()
    long_term_thread(store, "ada", "t1", 10)
    result = run(store, {"tiers": tiers})
    assert (result["summaries_created"], result["trimmed"]) == (1, 10)
    (summary,) = store.get_memories(where_metadata=SUMMARY_METADATA)
    assert len(summary["content"]) <= 25
    assert run(store, {"tiers": tiers}) == no_changes({"tiers": tiers})
    store.close()


def test_custom_summarizer_and_a_bad_one(db, clock):
    long_term_thread(db, "ada", "t1", 10)
    seen = []

    def summarizer(memories, max_chars):
        seen.append((len(memories), max_chars))
        return "custom: " + ", ".join(m["content"][:6] for m in memories)

    run(db, summarizer=summarizer)
    assert seen == [(10, 1000)]
    (summary,) = db.get_memories(where_metadata=SUMMARY_METADATA)
    assert summary["content"].startswith("custom: Fact 0, Fact 1")

    db.truncate()
    long_term_thread(db, "ada", "t1", 10)
    refused = "must return a string that shows something within its first 1000 characters, got None"
    with pytest.raises(SummarizerFailed, match=refused):
        run(db, summarizer=lambda memories, max_chars: None)
    assert db.count_memories(summarized=True) == 0


def test_summarization_can_be_disabled(db, clock):
    long_term_thread(db, "ada", "t1", 20)
    assert run(db, {"summarization": {"enabled": False}}) == no_changes()


def test_extractive_summary_is_deterministic_and_bounded():
    memories = [
        {"thread_id": "t", "content": "Likes tea.  Hates coffee."},
        {"thread_id": "t", "content": "likes tea."},
        {"thread_id": "t", "content": "Lives in\nLisbon"},
    ]
    assert extractive_summary(memories, 1000) == "Thread t (3 memories): Likes tea. | Lives in Lisbon"
    assert extractive_summary(memories, 20) == "Thread t (3 memorie…"
    assert shorten("abcdef", 1) == "…"


# --- dry runs, repeat runs, overlapping runs ----------------------------------------------


def rich_rows(now: dt.datetime = NOW) -> list[dict]:
    """A bit of everything: expiring rows in each tier, long content, threads near min_records."""

    def row(user, tier, thread, days, content="memory", **extra):
        return {
            "user_id": user,
            "tier": tier,
            "thread_id": thread,
            "content": content,
            **ago(now, days=days),
            **extra,
        }

    rows = [row("ada", "long_term", "trip", 100 + i, f"Trip fact {i}.") for i in range(3)]
    rows += [row("ada", "mid_term", "trip", 40 + i, LONG_TEXT) for i in range(2)]
    rows += [row("ada", "long_term", "trip", 200, "Old summarized fact.", summarized=True)]
    rows += [row("ada", "long_term", "work", 50 + i, LONG_TEXT) for i in range(4)]
    rows += [row("ada", "long_term", "trip", 60 + i, "Work trip.", namespace="ns") for i in range(4)]
    rows += [row("ada", "long_term", "old", 300, "Earlier summary.", metadata=SUMMARY_METADATA)]
    rows += [row("ada", "long_term", "old", 300 + i, "Old fact.") for i in range(3)]
    rows += [row("bob", "long_term", "trip", 70 + i, "Bob trip.") for i in range(3)]
    rows += [row("bob", "mid_term", "trip", 10, LONG_TEXT)]
    rows += [row("bob", "short_term", None, 8 + i, LONG_TEXT) for i in range(5)]
    rows += [row("bob", "short_term", "chat", 1, "Fresh.")]
    return rows


def test_dry_run_writes_nothing_and_predicts_the_real_run(db, clock):
    db.insert_memories(rich_rows())
    before = memory_snapshot(db)
    predicted = run(db, TRIM_CONFIG, dry_run=True)
    assert memory_snapshot(db) == before
    assert predicted == {
        "migrated": {"short_term": 5, "mid_term": 2},
        "trimmed": 8,  # the 2 leaving mid-term are trimmed before they leave
        "summarized": 13,
        "summaries_created": 3,
    }
    assert run(db, TRIM_CONFIG) == predicted
    assert run(db, TRIM_CONFIG, dry_run=True) == no_changes(TRIM_CONFIG)


def test_second_run_changes_nothing(db, clock):
    db.insert_memories(rich_rows())
    run(db, TRIM_CONFIG)
    after_first = memory_snapshot(db)
    clock.advance(seconds=1)
    assert run(db, TRIM_CONFIG) == no_changes(TRIM_CONFIG)
    assert memory_snapshot(db) == after_first


def single_run_snapshot(new_dsn) -> tuple[dict, list]:
    """The result and final state of one run over `rich_rows` on a fresh database."""
    store = MemoryStore(new_dsn(), clock=Clock(NOW))
    store.create_schema()
    store.insert_memories(rich_rows())
    result = run(store, TRIM_CONFIG)
    snapshot = memory_snapshot(store)
    store.close()
    return result, snapshot


def total(results: list[dict]) -> dict:
    summed = no_changes(TRIM_CONFIG)
    for result in results:
        for tier, n in result["migrated"].items():
            summed["migrated"][tier] += n
        for key in ("trimmed", "summarized", "summaries_created"):
            summed[key] += result[key]
    return summed


def test_overlapping_runs_in_threads_apply_once(db, clock, new_dsn):
    expected_result, expected_state = single_run_snapshot(new_dsn)
    db.insert_memories(rich_rows())
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            results.append(run(db, TRIM_CONFIG))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert total(results) == expected_result
    assert memory_snapshot(db) == expected_state


def _policy_process(dsn: str, now: str, barrier, queue) -> None:
    store = MemoryStore(dsn, clock=Clock(dt.datetime.fromisoformat(now)))
    barrier.wait()
    queue.put(run(store, TRIM_CONFIG))
    store.close()


def test_overlapping_runs_in_processes_apply_once(db, clock, new_dsn):
    expected_result, expected_state = single_run_snapshot(new_dsn)
    db.insert_memories(rich_rows())
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_policy_process, args=(db.dsn, NOW.isoformat(), barrier, queue))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert total(results) == expected_result
    assert memory_snapshot(db) == expected_state
