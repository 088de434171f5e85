"""A policy run's thread summaries against what the summarizer does, on both dialects: a thread
it fails on waits while the others are written, a memory forgotten while it works is in no
summary, the list it is given is its own, and a run started from inside it is refused."""

from __future__ import annotations

import pickle

import pytest

from memoric.db.store import utc_now
from memoric.errors import MemoricError, SummarizerFailed
from memoric.policies import GIVE_UP_AFTER, SUMMARY_METADATA, extractive_summary
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


EDITS = {
    "update_content": lambda store, memory_id: store.update_content(
        memory_id=memory_id, new_content="REDACTED"
    ),
    "update_tier": lambda store, memory_id: store.update_tier(memory_ids=[memory_id], new_tier="short_term"),
    "update_metadata": lambda store, memory_id: store.update_metadata(
        memory_id=memory_id, new_metadata=SUMMARY_METADATA
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_a_memory_edited_while_the_summarizer_works_is_summarized_as_it_is_now(db, clock, edit):
    """Before, the summary kept the old text of a memory redacted meanwhile, and hid the memory;
    a memory moved out of the last tier, or made a summary, was marked a source all the same."""
    ids = long_term_thread(db, "ada", "t1", THREAD + 1)

    def edits_one(memories, max_chars):
        EDITS[edit](db, ids[-1])  # committed before the summaries are written
        return extractive_summary(memories, max_chars)

    assert run(db, summarizer=edits_one)["summaries_created"] == 0
    assert db.count_memories(summarized=True) == 0, "nothing is marked: the thread waits"
    assert run(db)["summaries_created"] == 1
    (summary,) = [m for m in db.get_memories(where_metadata=SUMMARY_METADATA) if m["id"] != ids[-1]]
    assert "Fact 0 about" not in summary["content"]
    assert db.get_memory(ids[-1])["summarized"] is (edit == "update_content")


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


class Unreadable(Exception):
    def __str__(self):
        raise RuntimeError("no text")


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("holds a lambda")
        self.callback = lambda: None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Unreadable(), "Unreadable: (its text could not be read)"),
        (ValueError("\n\n  the model is down  \nmore"), "ValueError: the model is down"),
        (Unpicklable(), "Unpicklable: holds a lambda"),
    ],
)
def test_any_exception_of_the_summarizer_is_reported_and_crosses_a_process_boundary(db, clock, error, reason):
    long_term_thread(db, "ada", "t1", THREAD)

    def fails(memories, max_chars):
        raise error

    with pytest.raises(SummarizerFailed) as failed:
        run(db, summarizer=fails)
    assert str(failed.value).endswith(f"thread 't1': {reason}")
    assert failed.value.failures[0][3].__traceback__ is None, "its frames would keep the memories alive"
    copied = pickle.loads(pickle.dumps(failed.value))
    assert (copied.counts, str(copied)) == (failed.value.counts, str(failed.value))
    assert str(copied.failures[0][3]) == reason


def test_a_summarizer_failing_on_every_thread_is_given_up_on_after_ten_in_a_row(db, clock):
    for user in range(GIVE_UP_AFTER + 5):
        long_term_thread(db, f"u{user:02}", "t1", THREAD)
    calls = []

    def down(memories, max_chars):
        calls.append(memories[0]["user_id"])
        raise ConnectionError("the model is down")

    with pytest.raises(SummarizerFailed, match="gave up after those failures in a row") as failed:
        run(db, summarizer=down)
    assert len(calls) == len(failed.value.failures) == GIVE_UP_AFTER and failed.value.gave_up
    assert db.count_memories(summarized=True) == 0


class Lying(str):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return Lying("sliced by the subclass")


def test_a_str_subclass_from_the_summarizer_is_stored_as_its_characters(db, clock):
    long_term_thread(db, "ada", "t1", THREAD)
    run(db, {"summarization": {"max_chars": 100}}, summarizer=lambda memories, max_chars: Lying("x" * 500))
    (summary,) = db.get_memories(where_metadata=SUMMARY_METADATA)
    assert summary["content"] == "x" * 99 + "…"
