"""A thread's summaries stand and fall with their sources, on both dialects: deleting a summary
or a summarized memory, or editing a summarized memory, deletes the thread's summaries and brings
its summarized memories back into recall, and the next policy run summarizes them again."""

from __future__ import annotations

import threading

import pytest

from memoric import Memoric
from memoric.db import policy_queries, summaries
from memoric.db.rows import ID_CHUNK_SIZE
from memoric.policies import SUMMARY_METADATA
from tests.helpers.concurrency import run_in_threads, wait_for_a_lock_waiter, while_held
from tests.helpers.policies import long_term_thread, run
from tests.helpers.reference import NOW, Clock

pytestmark = pytest.mark.citus  # also on a Citus cluster

THREAD = 10  # memories of a thread: the default summarization.min_records


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def memoric(new_dsn, clock):
    with Memoric(new_dsn(), clock=clock) as opened:
        yield opened


@pytest.fixture
def db(memoric):
    """The store under `memoric` (its schema built)."""
    memoric.stats()
    return memoric.db


def summary_ids(store, **where) -> list[int]:
    return [m["id"] for m in store.get_memories(where_metadata=SUMMARY_METADATA, limit=None, **where)]


def hidden(store, **where) -> int:
    return store.count_memories(summarized=True, **where)


def summarized_thread(store, user="ada", thread="t1", count=THREAD) -> list[int]:
    """A thread of `count` long-term memories, summarized by a policy run; their ids."""
    ids = long_term_thread(store, user, thread, count)
    assert run(store, user_id=user)["summaries_created"] == 1
    return ids


def test_forgetting_a_summary_brings_its_sources_back_and_the_next_run_summarizes_them_again(db, memoric):
    """Forgetting a summary (the way to forget a fact everywhere) left its sources marked and
    hidden for good: no recall returned them and no later run summarized them."""
    ids = summarized_thread(db)
    [summary] = summary_ids(db)
    assert memoric.forget("ada", [summary]) == 1
    assert hidden(db) == 0
    recalled = memoric.retrieve("ada", thread_id="t1", top_k=THREAD)
    assert sorted(m["id"] for m in recalled) == sorted(ids)
    assert run(db)["summarized"] == THREAD, "summarized again"
    assert len(summary_ids(db)) == 1


def test_forgetting_a_summarized_memory_forgets_the_summaries_holding_its_text(db, memoric):
    ids = summarized_thread(db, count=THREAD + 1)
    summary = db.get_memory(summary_ids(db)[0])["content"]
    forgotten, text = next((i, c) for i in ids if (c := db.get_memory(i)["content"].split(".")[0]) in summary)
    assert memoric.forget("ada", [forgotten]) == 2, "the memory and its thread's summary"
    assert summary_ids(db) == [] and hidden(db) == 0
    found = memoric.retrieve("ada", scope="user", query=text, top_k=50)
    assert all(text not in m["content"] for m in found), "keyword recall no longer finds it"
    assert run(db)["summarized"] == THREAD, "the others are summarized again, without it"
    assert text not in db.get_memory(summary_ids(db)[0])["content"]


def test_every_summary_of_the_thread_goes_since_which_one_holds_a_source_is_not_recorded(db, memoric):
    first = summarized_thread(db)
    long_term_thread(db, "ada", "t1", THREAD, days=60)
    assert run(db)["summaries_created"] == 1
    assert len(summary_ids(db)) == 2 and hidden(db) == 2 * THREAD
    assert db.delete_memories(memory_ids=[first[3]]) == 3
    assert summary_ids(db) == [] and hidden(db) == 0
    assert db.count_memories(user_id="ada") == 2 * THREAD - 1


def test_editing_a_summarized_memory_puts_the_edit_in_recall_instead_of_the_older_summary(db, memoric):
    """An edit of a summarized memory stayed hidden while recall returned the summary of what it
    said before, and no later run summarized the new text."""
    ids = summarized_thread(db)
    assert db.update_content(memory_id=ids[-1], new_content="Hotel budget is now 300 EUR") == 1
    assert summary_ids(db) == [] and hidden(db) == 0
    found = memoric.retrieve("ada", scope="user", query="hotel budget", top_k=5)
    assert [m["content"] for m in found] == ["Hotel budget is now 300 EUR"]
    assert run(db)["summarized"] == THREAD
    assert "300 EUR" in db.get_memory(summary_ids(db)[0])["content"]


@pytest.mark.parametrize("metadata", [{"topic": "travel"}, SUMMARY_METADATA])
def test_editing_a_summarized_memorys_metadata_releases_the_thread_but_keeps_the_memory(db, metadata):
    """The edited memory is kept, even when its new metadata is a summary's."""
    ids = summarized_thread(db)
    assert db.update_metadata(memory_id=ids[0], new_metadata=metadata) == 1
    assert db.get_memory(ids[0])["metadata"] == metadata
    assert hidden(db) == 0
    assert db.count_memories(user_id="ada", thread_id="t1") == THREAD, "the summary alone is gone"


def test_other_threads_users_and_changes_leave_summaries_alone(db, memoric):
    ids = summarized_thread(db, "ada", "t1")
    summarized_thread(db, "ada", "t2")
    summarized_thread(db, "bob", "t1")
    unsummarized = db.insert_memory(user_id="ada", thread_id="t1", content="new", tier="long_term")
    written = summary_ids(db)
    db.update_content(memory_id=unsummarized, new_content="an edit of an unsummarized memory")
    db.update_content(memory_id=written[0], new_content="an edit of a summary itself")
    db.update_tier(memory_ids=[ids[0]], new_tier="long_term")
    db.set_related_threads(memory_id=ids[1], related_threads=["t2"])
    db.delete_memories(memory_ids=[unsummarized])
    assert summary_ids(db) == written and hidden(db) == 3 * THREAD
    memoric.forget("ada", [ids[0]])
    assert hidden(db, user_id="ada", thread_id="t2") == hidden(db, user_id="bob") == THREAD
    assert hidden(db, user_id="ada", thread_id="t1") == 0
    assert len(summary_ids(db)) == 2


def test_namespaces_are_threads_of_their_own(db, memoric):
    long_term_thread(db, "ada", "t1", THREAD, namespace="work")
    ids = long_term_thread(db, "ada", "t1", THREAD)
    assert run(db)["summaries_created"] == 2
    db.delete_memories(memory_ids=[ids[0]], user_id="ada")
    assert hidden(db, namespace="work") == THREAD and len(summary_ids(db, namespace="work")) == 1
    assert hidden(db) == THREAD and len(summary_ids(db)) == 1


def test_forgetting_all_of_a_users_memories_still_counts_what_was_there(db, memoric):
    summarized_thread(db)
    assert memoric.forget("ada") == THREAD + 1
    assert db.count_memories() == 0


CHANGES = {
    "delete": lambda db, memory_id: db.delete_memories(memory_ids=[memory_id]),
    "edit": lambda db, memory_id: db.update_content(memory_id=memory_id, new_content="changed"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_source_changed_while_a_policy_run_marks_it_still_takes_the_summary_with_it(db, change):
    """A delete or edit waiting for a policy run's transaction (its sources marked, its summary
    written, not yet committed) sees the sources marked once it commits, and deletes that summary:
    chosen before the statement, on PostgreSQL they were seen unmarked and the summary stayed."""
    ids = long_term_thread(db, "ada", "t1", THREAD)
    summary = {**db.get_memory(ids[0]), "content": "the summary", "metadata": SUMMARY_METADATA}
    fields = ("user_id", "namespace", "thread_id", "content", "tier", "score", "metadata")
    row = {key: summary[key] for key in fields}

    def policy_run(pause):
        with db.atomic():
            assert policy_queries.write_summaries(db, [(row, ids)]) == (1, THREAD)
            pause()

    assert while_held(db, policy_run, lambda: CHANGES[change](db, ids[0])) == []
    assert summary_ids(db) == [] and hidden(db) == 0
    assert db.count_memories() == THREAD - (change == "delete")


@pytest.mark.parametrize("second", CHANGES)
@pytest.mark.parametrize("first", CHANGES)
def test_two_changes_in_one_summarized_thread_take_turns(db, monkeypatch, first, second):
    """Each change locked its own row, then waited for the other's to release the thread: on
    PostgreSQL one of them failed with a deadlock, and a memory asked to be forgotten stayed.
    The first change stops just before its release, holding its row, while the second starts."""
    ids = summarized_thread(db)
    release, pausing = summaries.release, threading.local()

    def release_after_a_pause(*args, **kwargs):
        if getattr(pausing, "pause", None):
            pausing.pause()
        return release(*args, **kwargs)

    monkeypatch.setattr(summaries, "release", release_after_a_pause)

    def first_change(pause):
        pausing.pause = pause
        CHANGES[first](db, ids[0])

    assert while_held(db, first_change, lambda: CHANGES[second](db, ids[1])) == []
    assert summary_ids(db) == [] and hidden(db) == 0
    assert db.count_memories() == THREAD - [first, second].count("delete")


def test_a_summary_marked_summarized_by_hand_is_still_released(db, memoric):
    """`mark_summarized` on a summary kept it out of the release, then unmarked it: a summary
    holding the forgotten text was back in recall."""
    ids = summarized_thread(db)
    summary = db.get_memory(summary_ids(db)[0])
    db.mark_summarized(memory_ids=[summary["id"]])
    forgotten = db.get_memory(ids[-1])["content"].split(".")[0]
    assert forgotten in summary["content"]
    memoric.forget("ada", [ids[-1]])
    assert db.get_memory(summary["id"]) is None
    found = memoric.retrieve("ada", scope="user", query=forgotten, top_k=50)
    assert all(forgotten not in m["content"] for m in found)


def test_unmarking_leaves_updated_at_as_it_is(db, memoric, clock):
    """A release is no news about the memories it brings back: their recency is what it was."""
    ids = summarized_thread(db)
    before = {memory_id: db.get_memory(memory_id)["updated_at"] for memory_id in ids[1:]}
    clock.advance(days=3)
    memoric.forget("ada", [ids[0]])
    assert {memory_id: db.get_memory(memory_id)["updated_at"] for memory_id in ids[1:]} == before


def test_forgets_of_two_threads_given_in_opposite_orders_across_chunks_take_turns(db):
    """Each chunk of ids locked its own threads: one forget locked thread a then b, the other b
    then a, and one of them ended in a deadlock on PostgreSQL."""
    a, b = summarized_thread(db, thread="a"), summarized_thread(db, thread="b")
    padding = list(range(10**9, 10**9 + ID_CHUNK_SIZE))  # ids of no memory: a chunk apart
    orders, start = [[a[0], *padding, b[0]], [b[1], *padding, a[1]]], threading.Barrier(2)

    def forget(worker):
        start.wait()
        try:
            db.delete_memories(memory_ids=orders[worker])
        finally:
            db.close()

    assert run_in_threads(2, forget) == []
    assert summary_ids(db) == [] and hidden(db) == 0 and db.count_memories() == 2 * THREAD - 4


def test_two_forgets_waiting_for_a_policy_runs_commit_both_go_through(db):
    """Neither saw the thread's marks before its DELETE (the policy run had not committed); both
    then released the thread holding its own row: one was ended by a deadlock on PostgreSQL,
    and a memory asked to be forgotten stayed. The one ended runs again."""
    ids = long_term_thread(db, "ada", "t1", THREAD)
    summary = {**db.get_memory(ids[0]), "content": "the summary", "metadata": SUMMARY_METADATA}
    fields = ("user_id", "namespace", "thread_id", "content", "tier", "score", "metadata")
    row = {key: summary[key] for key in fields}
    marked, go, failures = threading.Event(), threading.Event(), []

    def run(work):
        try:
            work()
        except Exception as exc:  # asserted below
            failures.append(exc)
        finally:
            marked.set()
            db.close()

    def policy_run():
        with db.atomic():
            policy_queries.write_summaries(db, [(row, ids)])
            marked.set()
            go.wait()

    holder = threading.Thread(target=run, args=(policy_run,))
    holder.start()
    marked.wait()
    forgets = [
        threading.Thread(target=run, args=(lambda chosen=chosen: db.delete_memories(memory_ids=[chosen]),))
        for chosen in (ids[0], ids[2])
    ]
    for forget in forgets:
        forget.start()
    wait_for_a_lock_waiter(db, waiters=2)
    go.set()
    for thread in [holder, *forgets]:
        thread.join()
    assert failures == []
    assert summary_ids(db) == [] and hidden(db) == 0 and db.count_memories() == THREAD - 2
