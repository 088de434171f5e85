"""A policy run's thread summaries against what the summarizer does, on both dialects: a thread
it fails on waits while the others are written, a memory forgotten while it works is in no
summary, the list it is given is its own, and a run started from inside it is refused."""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import pickle
import sys
import weakref

import pytest

from memoric.db.rows import ID_CHUNK_SIZE
from memoric.db.store import MemoryStore, utc_now
from memoric.errors import LockTimeout, MemoricError, SummarizerFailed
from memoric.policies import GIVE_UP_AFTER, SUMMARY_METADATA, extractive_summary
from tests.helpers.concurrency import while_held
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


def test_deleting_a_users_memories_while_a_run_marks_them_ends_without_a_deadlock(db, clock):
    """The run marked a user's sources thread by thread, in statements of 5,000 ids, here the
    newer thread's ids first, while a delete takes them in id order: on PostgreSQL one of the two
    died with "deadlock detected". Paused between the two statements, the delete comes between."""
    long_term_thread(db, "ada", "t2", ID_CHUNK_SIZE)  # the lower ids, in the thread sorted last
    long_term_thread(db, "ada", "t1", ID_CHUNK_SIZE)
    tell_time = db.clock

    marked = []

    def run_pausing_between_statements(pause):
        def clock():  # asked once by each statement that marks sources
            if "_mark_summarized" in callers(3):
                marked.append(True)
                if len(marked) == 2:
                    pause()
            return tell_time()

        db.clock = clock
        run(db)

    assert while_held(db, run_pausing_between_statements, lambda: db.delete_memories(user_id="ada")) == []
    assert len(marked) == 2
    left = db.get_memories(user_id="ada", limit=None)  # PostgreSQL: the summaries written meanwhile
    assert all(memory["metadata"] == SUMMARY_METADATA for memory in left)


def callers(depth: int) -> set[str]:
    """The names of the functions that called the caller, up to `depth` frames up."""
    frame, names = sys._getframe(2), set()
    while frame is not None and len(names) < depth:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    return names


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


@pytest.mark.parametrize("change", ["clear", "keep the last", "renumber", "tag the metadata"])
def test_what_the_summarizer_does_to_its_list_changes_nothing_marked(db, clock, change):
    """Tagging the metadata it was given (a dict the sources as read shared) made every run
    find the sources changed and write no summary, without a word."""
    long_term_thread(db, "ada", "t1", THREAD)

    def summarizer(memories, max_chars):
        text = extractive_summary(memories, max_chars)
        if change == "clear":
            memories.clear()
        elif change == "keep the last":
            del memories[:-3]
        elif change == "tag the metadata":
            for memory in memories:
                memory["metadata"]["seen_by_model"] = True
                memory["related_threads"].append("t9")
        else:
            for memory in memories:
                memory["id"] = 1
        return text

    counts = run(db, summarizer=summarizer)
    assert (counts["summaries_created"], counts["summarized"]) == (1, THREAD)
    assert db.count_memories(user_id="ada", summarized=True) == THREAD


@pytest.mark.parametrize(
    "text",
    ["\u200b", " \ufeff\u00ad ", "\U000e0001", " " * 5000 + "the summary", "\u200b" * 5000 + "the summary"],
    ids=["zero-width space", "invisible", "tag", "blank start", "invisible start"],
)
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
    again = pickle.loads(pickle.dumps(copied))  # a worker, then a supervisor, then the parent
    assert (str(again), str(again.failures[0][3])) == (str(failed.value), reason)


def test_the_memories_of_a_failed_thread_are_not_kept_by_an_exception_group(db, clock):
    """Its members' tracebacks held the summarizer's frames, and through them the memories."""
    long_term_thread(db, "ada", "t1", THREAD)
    held = []

    class InTheFrame:
        """Something only the summarizer's frame holds, as it holds the memories."""

    def fails_in_a_group(memories, max_chars):
        in_the_frame = InTheFrame()
        held.append(weakref.ref(in_the_frame))
        failed_calls = []
        try:
            raise ValueError(f"{len(memories)} memories")
        except ValueError as call:
            failed_calls.append(call)
        raise ExceptionGroup("the calls failed", failed_calls)  # as asyncio.TaskGroup raises

    with pytest.raises(SummarizerFailed) as failed:
        run(db, summarizer=fails_in_a_group)
    gc.collect()
    assert held[0]() is None
    (group,) = [exc for *_, exc in failed.value.failures]
    assert group.exceptions[0].__traceback__ is None


def test_a_summarizer_failing_on_every_thread_is_asked_ever_more_rarely_after_ten_in_a_row(db, clock):
    """Before, a summarizer that was down was called once for every thread of the database."""
    for user in range(GIVE_UP_AFTER + 20):
        long_term_thread(db, f"u{user:02}", "t1", THREAD)
    calls = []

    def down(memories, max_chars):
        calls.append(memories[0]["user_id"])
        raise ConnectionError("the model is down")

    untried = r"it kept failing, so 15 more thread\(s\) were not tried"
    with pytest.raises(SummarizerFailed, match=untried) as failed:
        run(db, summarizer=down)
    asked_after_ten = [int(user[1:]) for user in calls[GIVE_UP_AFTER:]]
    assert asked_after_ten == [10, 12, 15, 20, 29], "gaps of 0, 1, 2, 4 and 8 threads"
    assert len(failed.value.failures) == len(calls) and failed.value.gave_up
    assert db.count_memories(summarized=True) == 0


@pytest.mark.parametrize("refused", [GIVE_UP_AFTER, GIVE_UP_AFTER + 1, GIVE_UP_AFTER + 4])
def test_threads_after_those_the_summarizer_refuses_are_summarized_in_the_same_run(db, clock, refused):
    """Before, ten threads it refused, sorted first, ended every run's summaries: the threads
    after them were never summarized, and `gave_up` was said also when none was left."""
    for user in range(refused):
        long_term_thread(db, f"a{user:02}", "t1", THREAD)
    for user in range(5):
        long_term_thread(db, f"z{user:02}", "t1", THREAD)

    def refuses_the_a_users(memories, max_chars):
        if memories[0]["user_id"].startswith("a"):
            raise ValueError("content policy")
        return extractive_summary(memories, max_chars)

    with pytest.raises(SummarizerFailed) as failed:
        run(db, summarizer=refuses_the_a_users)
    assert sorted(summaries(db)) == [f"z{user:02}" for user in range(5)]
    assert (len(failed.value.failures), failed.value.untried, failed.value.gave_up) == (refused, 0, False)


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


@pytest.mark.parametrize("pooled", [False, True], ids=["plain", "pooled"])
def test_a_lock_block_ended_on_another_thread_is_released_or_says_whose_it_stays(db, pooled):
    """A block entered on one thread and left on another (an ExitStack closed by another call of
    an AsyncMemoric): on SQLite its taker was refused the lock, and close(), for ever, though the
    file lock was released. A PostgreSQL lock lives on the taker's connection, which another
    thread must not use (the taker may be waiting for it): it stays the taker's, says so, and
    ends when the taker closes the store."""
    scheme, rest = db.dsn.split("://", 1)
    store = MemoryStore(f"{scheme}+pool://{rest}") if pooled else db
    block = contextlib.ExitStack()
    block.enter_context(store.lock("jobs"))

    def end_it() -> str:
        try:
            block.close()
        except MemoricError as exc:
            return str(exc)
        return "released"

    with concurrent.futures.ThreadPoolExecutor(1) as another_thread:
        ended = another_thread.submit(end_it).result()
    other = MemoryStore(db.dsn)
    if store.is_sqlite:
        assert ended == "released"
    else:
        assert "ended on another thread than the one that took it" in ended
        with pytest.raises(LockTimeout), other.lock("jobs", timeout=0):
            pass
        with pytest.raises(MemoricError, match="held already by this thread"), store.lock("jobs", timeout=0):
            pass
    store.close()  # ends a PostgreSQL session, and the lock with it (a pool does not take it back)
    with other.lock("jobs", timeout=30), pytest.raises(LockTimeout), store.lock("jobs", timeout=0):
        pass  # (the server ends the closed session, and its lock, a moment later)
    with store.lock("jobs", timeout=0):
        pass
    other.close()
    store.close()


def test_closing_the_store_inside_a_lock_block_is_refused_and_keeps_the_lock(db, clock):
    """Before, a summarizer that closed the connection (to free it during a slow call) let go of
    a PostgreSQL lock: another process's run went through beside this one, and with a pool the
    connection went back holding the lock, which then outlived both runs."""
    long_term_thread(db, "ada", "t1", THREAD)
    other = MemoryStore(db.dsn)
    seen = []

    def closes_the_store(memories, max_chars):
        with pytest.raises(MemoricError, match=r"close\(\) inside a lock\(\) block") as refused:
            db.close()
        with pytest.raises(LockTimeout), other.lock("policies", timeout=0):
            pass
        seen.append(str(refused.value))
        return extractive_summary(memories, max_chars)

    assert run(db, summarizer=closes_the_store)["summaries_created"] == 1 and len(seen) == 1
    with other.lock("policies", timeout=0):
        pass
    other.close()
