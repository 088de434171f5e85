"""A policy run's thread summaries against what the summarizer does, on both dialects: a thread
it fails on waits while the others are written, a memory forgotten while it works is in no
summary, the list it is given is its own, and a run started from inside it is refused."""

from __future__ import annotations

import pytest

from memoric.db.store import utc_now
from memoric.errors import MemoricError, SummarizerFailed
from memoric.policies import SUMMARY_METADATA, extractive_summary
from tests.helpers.policies import long_term_thread, run
from tests.helpers.reference import NOW, Clock

pytestmark = pytest.mark.citus  # also on a Citus cluster

THREAD = 10  # memories of a thread: the default summarization.min_records


@pytest.fixture
def clock(db):
    db.clock = Clock(NOW)
    yield
    db.clock = utc_now


def summaries(store) -> dict[str, str]:
    return {m["user_id"]: m["content"] for m in store.get_memories(where_metadata=SUMMARY_METADATA)}


def summarized_threads(store) -> set[tuple[str, str]]:
    return {(m["user_id"], m["thread_id"]) for m in store.get_memories(where_metadata=SUMMARY_METADATA)}


def test_a_thread_the_summarizer_fails_on_waits_and_the_others_are_written(db, clock):
    for user in ("ada", "bob", "cyd"):
        long_term_thread(db, user, "t1", THREAD)

    def refuses_bob(memories, max_chars):
        if memories[0]["user_id"] == "bob":
            raise ValueError("the model refuses this thread\nsecond line")
        return extractive_summary(memories, max_chars)

    with pytest.raises(SummarizerFailed) as failed:
        run(db, summarizer=refuses_bob)
    first = "the first: user 'bob', thread 't1': ValueError: the model refuses this thread"
    assert str(failed.value).endswith(first)
    assert [failure[:3] for failure in failed.value.failures] == [("bob", None, "t1")]
    counts = failed.value.counts
    assert (counts["summaries_created"], counts["summarized"]) == (2, 2 * THREAD)
    assert set(summaries(db)) == {"ada", "cyd"}
    assert db.count_memories(user_id="bob", summarized=True) == 0

    assert run(db)["summaries_created"] == 1, "a later run that succeeds summarizes bob's thread"
    assert set(summaries(db)) == {"ada", "bob", "cyd"}


def test_a_memory_forgotten_while_the_summarizer_works_is_in_no_summary(db, clock):
    ids = long_term_thread(db, "ada", "t1", THREAD + 1)
    long_term_thread(db, "ada", "t2", THREAD)
    long_term_thread(db, "bob", "t1", THREAD)

    def forgets_one_of_adas(memories, max_chars):
        if (memories[0]["user_id"], memories[0]["thread_id"]) == ("ada", "t1"):
            db.delete_memories(memory_ids=[ids[-1]])  # committed before the summaries are written
        return extractive_summary(memories, max_chars)

    counts = run(db, summarizer=forgets_one_of_adas)
    assert (counts["summaries_created"], counts["summarized"]) == (2, 2 * THREAD)
    assert summarized_threads(db) == {("ada", "t2"), ("bob", "t1")}, "ada's other thread is summarized"
    assert db.count_memories(user_id="ada", thread_id="t1", summarized=True) == 0, "t1 waits for the next run"
    assert run(db)["summaries_created"] == 1
    assert summarized_threads(db) == {("ada", "t1"), ("ada", "t2"), ("bob", "t1")}
    (summary,) = db.get_memories(user_id="ada", thread_id="t1", where_metadata=SUMMARY_METADATA)
    assert "Fact 0 about" not in summary["content"] and "Fact 1 about" in summary["content"]


@pytest.mark.parametrize("change", ["clear", "keep the last", "renumber"])
def test_what_the_summarizer_does_to_its_list_changes_nothing_marked(db, clock, change):
    long_term_thread(db, "ada", "t1", THREAD)

    def summarizer(memories, max_chars):
        text = extractive_summary(memories, max_chars)
        if change == "clear":
            memories.clear()
        elif change == "keep the last":
            del memories[:-3]
        else:
            for memory in memories:
                memory["id"] = 1
        return text

    counts = run(db, summarizer=summarizer)
    assert (counts["summaries_created"], counts["summarized"]) == (1, THREAD)
    assert db.count_memories(user_id="ada", summarized=True) == THREAD


@pytest.mark.parametrize("text", ["\u200b", " \ufeff\u00ad ", "\U000e0001"])
def test_a_summary_that_shows_nothing_is_refused(db, clock, text):
    long_term_thread(db, "ada", "t1", THREAD)
    with pytest.raises(SummarizerFailed, match="must return a string that shows something"):
        run(db, summarizer=lambda memories, max_chars: text)
    assert summaries(db) == {} and db.count_memories(summarized=True) == 0


def test_a_policy_run_started_by_the_summarizer_is_refused_alike_on_both_dialects(db, clock):
    """A PostgreSQL session took its own advisory lock again and the nested run went through,
    writing a second summary of the thread; SQLite's file lock made it wait, then time out."""
    long_term_thread(db, "ada", "t1", THREAD)
    nested = []

    def runs_policies(memories, max_chars):
        nested.append(run(db, {"policies": {"lock_timeout": 1}}))
        return extractive_summary(memories, max_chars)

    with pytest.raises(SummarizerFailed) as failed:
        run(db, summarizer=runs_policies)
    assert nested == []
    ((_, _, _, error),) = failed.value.failures
    assert isinstance(error, MemoricError) and "held already by this thread" in str(error)
    assert summaries(db) == {}


def test_a_lock_this_thread_holds_is_refused_at_once(db):
    refused = pytest.raises(MemoricError, match="'custom' lock is held already by this thread")
    with db.lock("custom"), refused, db.lock("custom", timeout=0):
        pass
    with db.lock("custom", timeout=0):
        pass
