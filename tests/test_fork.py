"""A process forked from one that had connected opens its own connection: parent and child never
talk over one socket or one SQLite handle (they would read each other's answers), and the child
neither uses nor ends the parent's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading

import pytest

from memoric import AsyncMemoric
from memoric.db.store import MemoryStore
from memoric.errors import LockTimeout, MemoricError

ROUNDS = 30


def _pooled(dsn: str) -> str:
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}+pool://{rest}"


@pytest.fixture(params=["plain", "pooled"])
def store(request, dsn):
    """A store with ada's and bob's memories, connected before any fork."""
    url = dsn if request.param == "plain" else _pooled(dsn)
    store = MemoryStore(url)
    store.create_schema()
    store.insert_memories(
        {"user_id": "ada" if n % 2 else "bob", "content": f"memory {n}", "metadata": {"n": n}}
        for n in range(40)
    )
    yield store
    store.close()


def ids_of(store: MemoryStore, user_id: str) -> list[int]:
    return [m["id"] for m in store.get_memories(user_id=user_id, where_metadata={}, limit=None)]


def own_connection(store: MemoryStore):
    """What identifies this process's session: the backend's pid, or SQLite's handle."""
    if store.is_sqlite:
        return id(store.database.connection())
    return store.database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def in_a_child(store: MemoryStore, work) -> dict:
    """Run `work(store)` in a forked child while the parent reads ada's memories; the child's result."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        os.close(reading)
        try:
            report = {"result": work(store)}
        except BaseException as error:  # reported to the parent, which fails the test
            report = {"error": f"{type(error).__name__}: {error}"}
        with os.fdopen(writing, "w") as pipe:
            json.dump(report, pipe)
        os._exit(0)
    os.close(writing)
    expected = ids_of(store, "ada")
    answers = [ids_of(store, "ada") for _ in range(ROUNDS)]
    with os.fdopen(reading) as pipe:
        report = json.load(pipe)
    os.waitpid(pid, 0)
    assert answers == [expected] * ROUNDS, "the parent read the child's answers"
    return report


def test_a_forked_child_reads_and_writes_on_its_own_connection(store):
    parent = own_connection(store)
    expected_bob = ids_of(store, "bob")

    def child_work(child_store):
        answers = [ids_of(child_store, "bob") for _ in range(ROUNDS)]
        saved = child_store.insert_memory(user_id="bob", content="saved by the child")
        return {"connection": own_connection(child_store), "answers": answers, "saved": saved}

    report = in_a_child(store, child_work)
    assert "error" not in report, report
    assert report["result"]["connection"] != parent
    assert report["result"]["answers"] == [expected_bob] * ROUNDS
    assert own_connection(store) == parent, "the parent's session went on"
    assert ids_of(store, "bob") == [report["result"]["saved"], *expected_bob]


def test_a_child_that_frees_the_parents_connection_leaves_the_parents_session_alive(store):
    """The child drops everything it inherited (as its exit would); the parent's next call must
    not meet a session the child ended."""
    import gc

    parent = own_connection(store)

    def child_work(child_store):
        child_store.close()
        gc.collect()
        return "closed"

    assert in_a_child(store, child_work) == {"result": "closed"}
    assert own_connection(store) == parent
    assert len(ids_of(store, "ada")) == 20


def test_an_async_memoric_serves_a_forked_child_on_threads_and_connections_of_its_own(dsn):
    """The parent's worker threads do not come along into a child; its first call starts new ones
    (a bounded wait: before, that call waited for ever)."""
    memoric = AsyncMemoric(dsn=dsn, max_workers=2, auto_migrate=True)
    asyncio.run(memoric.save(user_id="cy", content="saved by the parent"))
    store = MemoryStore(dsn)

    async def in_the_child():
        saved = await asyncio.wait_for(memoric.save(user_id="cy", content="saved by the child"), 60)
        found = await asyncio.wait_for(memoric.retrieve("cy", scope="user", top_k=100), 60)
        await memoric.close()
        return saved, sorted(m["content"] for m in found if m["content"].startswith("saved"))

    report = in_a_child(store, lambda _: asyncio.run(in_the_child()))
    assert "error" not in report, report
    child_saved, seen_by_the_child = report["result"]
    assert seen_by_the_child == ["saved by the child", "saved by the parent"]
    found = asyncio.run(memoric.retrieve("cy", scope="user", top_k=100))
    assert child_saved in [m["id"] for m in found]
    asyncio.run(memoric.close())
    store.close()


def test_two_first_calls_at_once_in_a_forked_child_are_both_answered(dsn):
    """The child's two threads race to its first call: neither may queue it where no thread serves."""
    memoric = AsyncMemoric(dsn=dsn, max_workers=2, auto_migrate=True)
    asyncio.run(memoric.save(user_id="cy", content="saved by the parent"))
    store = MemoryStore(dsn)

    def two_threads(_):
        start, saved = threading.Barrier(2), []

        def save(n):
            start.wait(timeout=60)
            saved.append(asyncio.run(asyncio.wait_for(memoric.save(user_id="cy", content=f"child {n}"), 60)))

        threads = [threading.Thread(target=save, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        return len(saved)

    for _ in range(6):
        assert in_a_child(store, two_threads) == {"result": 2}
    asyncio.run(memoric.close())
    store.close()


def forked_inside(block, in_the_child) -> str:
    """Fork inside `block` (an ExitStack holding it); the child runs `in_the_child(block)` and
    reports what it returned or raised; the parent is still inside the block."""
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reading)
        try:
            outcome = in_the_child(block)
        except BaseException as error:  # reported to the parent, which fails the test
            outcome = f"{type(error).__name__}: {error}"
        with os.fdopen(writing, "w") as pipe:
            pipe.write(outcome)
        os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        outcome = pipe.read()
    os.waitpid(pid, 0)
    return outcome


def test_a_child_leaving_a_lock_block_it_was_forked_in_leaves_the_lock_to_its_parent(store):
    """SQLite's lock is a flock on a file description parent and child share: the child leaving
    the block unlocked it for both. PostgreSQL's lock belongs to the parent's session."""
    other = MemoryStore(store.dsn)

    def leave(block):
        block.close()
        return "left without a word"

    with contextlib.ExitStack() as block:
        block.enter_context(store.lock("jobs"))
        outcome = forked_inside(block, leave)
        with pytest.raises(LockTimeout), other.lock("jobs", timeout=0):
            pass
    assert outcome.startswith("MemoricError: the 'jobs' lock was lost") and "forked" in outcome
    with other.lock("jobs", timeout=0):
        pass
    other.close()


def test_a_child_forked_inside_a_lock_block_holds_none_of_its_parents_locks(store):
    """The child waits for the lock like any other process. Before, it inherited the record of
    the parent thread's locks and was refused the lock as its own, even after the parent let go."""

    def take_it(block):
        try:
            with store.lock("jobs", timeout=0):
                return "taken"
        except LockTimeout:
            return "LockTimeout: the parent holds it"

    with contextlib.ExitStack() as block:
        block.enter_context(store.lock("jobs"))
        assert forked_inside(block, take_it) == "LockTimeout: the parent holds it"


HOLDS_A_LOCK_AND_FORKS = """
import os, sys, threading
from memoric.db.store import MemoryStore

store = MemoryStore(sys.argv[1])
store.count_memories()


def fork_a_helper():
    if os.fork() == 0:  # a helper that lives until the test closes its stdin
        sys.stdin.read()
        os._exit(0)


def hold_it(taken=None):
    with store.lock("jobs"):
        if taken is not None:
            taken.set()
            threading.Event().wait()
        if sys.argv[2] == "inside the lock block":
            fork_a_helper()
        print("holding", flush=True)
        sys.stdin.read()


if sys.argv[2] == "before the lock":
    fork_a_helper()
if sys.argv[2] == "while another thread holds it":
    taken = threading.Event()
    threading.Thread(target=hold_it, args=(taken,), daemon=True).start()
    taken.wait()
    fork_a_helper()
    print("holding", flush=True)
    sys.stdin.read()
else:
    hold_it()
"""


FORK_POINTS = ["before the lock", "inside the lock block", "while another thread holds it"]


@pytest.mark.parametrize("fork_at", FORK_POINTS)
def test_a_lock_ends_with_the_process_that_took_it_while_a_child_it_forked_lives_on(store, fork_at):
    """Before, the child's copy of the parent's socket (PostgreSQL) or of the lock file (SQLite)
    kept the lock held after the parent was killed, until the child ended: every run waited."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDS_A_LOCK_AND_FORKS, store.dsn, fork_at],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(LockTimeout), store.lock("jobs", timeout=0):
            pass
        holder.kill()
        holder.wait()
        with store.lock("jobs", timeout=30):  # the helper lives on: its stdin is still open
            pass
    finally:
        holder.stdin.close()
        holder.stdout.close()


@pytest.mark.parametrize("blocks", [1, 2], ids=["atomic", "nested atomic"])
def test_a_child_forked_inside_a_transaction_cannot_use_it_and_reads_once_out_of_it(store, blocks):
    """Before, the child's writes went into the parent's transaction on PostgreSQL (and its
    leaving the block rolled the parent's back), or were lost on SQLite; then leaving the block
    raised a bare IndexError (a nested one's savepoint, a MemoricError). Out of the blocks, the
    child reads on a connection of its own: the parent's transaction is not committed yet, so it
    sees none of it. A grandchild forked there is refused the same way."""

    def refused_inside_then_read_outside(block):
        with pytest.raises(MemoricError, match="forked inside a transaction"):
            store.insert_memory(user_id="cy", content="in the parent's transaction, by the child")
        block.close()
        return f"refused, then read {len(store.get_memories(user_id='cy'))}"

    def grandchild_then_child(block):
        grandchild = forked_inside(block, refused_inside_then_read_outside)
        return f"{grandchild}; {refused_inside_then_read_outside(block)}"

    with contextlib.ExitStack() as block:
        for _ in range(blocks):
            block.enter_context(store.atomic())
        store.insert_memory(user_id="cy", content="by the parent, in its transaction")
        assert forked_inside(block, refused_inside_then_read_outside) == "refused, then read 0"
        expected = "refused, then read 0; refused, then read 0"
        assert forked_inside(block, grandchild_then_child) == expected
    assert [m["content"] for m in store.get_memories(user_id="cy")] == ["by the parent, in its transaction"]


def test_a_child_forked_while_another_thread_checks_the_schema_checks_it_itself(dsn):
    """Another thread of the parent held the facade's schema-check lock at the fork: the child
    waited for it for ever (bounded here)."""
    from memoric import Memoric

    with Memoric(dsn=dsn, auto_migrate=True) as builder:
        builder.ensure_schema()
    memoric = Memoric(dsn=dsn)  # checks the schema at its first call
    store = MemoryStore(dsn)
    held, release = threading.Event(), threading.Event()

    def hold_the_check():
        with memoric._schema_lock:
            held.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold_the_check)
    holder.start()
    held.wait(timeout=60)

    def save_in_a_thread(_):
        saved = []
        save = lambda: saved.append(memoric.save("cy", "by the child"))  # noqa: E731
        worker = threading.Thread(target=save, daemon=True)
        worker.start()
        worker.join(timeout=30)
        return "saved" if saved else "waited for a lock nobody here holds"

    try:
        assert in_a_child(store, save_in_a_thread) == {"result": "saved"}
    finally:
        release.set()
        holder.join()
    assert [m["content"] for m in memoric.retrieve("cy", scope="user")] == ["by the child"]
    memoric.close()
    store.close()
