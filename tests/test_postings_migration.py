"""Migration 006 builds the text postings of the memories already stored, in batches, with writers
held off while it reads them, and its rollback drops them; 009 posts again the memories whose
terms its folding changes, and its rollback posts them by the rule before it."""

from __future__ import annotations

import threading
import unicodedata
from collections import Counter

import pytest

from memoric.db import postings
from memoric.db.store import MemoryStore
from memoric.errors import MemoricError
from memoric.migrate import Migrations
from memoric.text import terms_of_folded
from tests.helpers.chain import FIFTH, FOURTH, MISREAD_METADATA, POSTINGS, UNICODE_TERMS, USER_METADATA
from tests.helpers.concurrency import wait_for_a_lock_waiter, while_held
from tests.helpers.postings import assert_postings_match, stored_postings

pytestmark = pytest.mark.citus  # also on a Citus cluster: the same answers, bit for bit


def test_006_builds_postings_for_existing_memories_and_its_rollback_drops_them(store):
    migrations = Migrations(store)
    migrations.upgrade(FOURTH)
    rows = [
        {
            "user_id": f"u{n % 3}",
            "namespace": "ns" if n % 4 == 0 else None,
            "content": f"memory {n} of {n % 7} 👍",
        }
        for n in range(2500)  # more than one page of the build
    ]
    store.insert_memories(rows)
    assert migrations.upgrade(POSTINGS) == [FIFTH, POSTINGS]
    assert_postings_match(store)
    assert len(stored_postings(store)[1]) == 2500

    assert migrations.downgrade() == [POSTINGS], "derived data: no confirmation needed"
    assert not store.database.table_exists("memory_terms")
    assert not store.database.table_exists("memory_documents")
    store.insert_memory(user_id="u0", content="written while the postings are gone")
    assert migrations.upgrade(POSTINGS) == [POSTINGS]
    assert_postings_match(store)


def upgrade_in_a_thread(store, failures: list, target: str = POSTINGS) -> threading.Thread:
    """A thread upgrading the store's database to `target` (a failure goes to `failures`)."""

    def upgrade():
        try:
            Migrations(store).upgrade(target)
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            store.close()

    return threading.Thread(target=upgrade)


def test_a_memory_written_as_006_begins_is_posted_by_it(store):
    """006 waits for a write of memories begun before it, then reads and posts that memory,
    which the writer saved without postings: it found no tables."""
    Migrations(store).upgrade(FIFTH)
    writer = MemoryStore(store.dsn)

    def save_and_hold(pause):
        with writer.database.atomic():
            writer.insert_memory(user_id="ada", content="saved as the upgrade began")
            pause()
        writer.close()

    assert while_held(store, save_and_hold, lambda: Migrations(store).upgrade(POSTINGS)) == []
    assert [m["content"] for m in store.get_memories()] == ["saved as the upgrade began"]
    assert_postings_match(store)


# Each write of memories, made while 006 builds the postings, on three memories saved before it.
WRITES_DURING_006 = {
    "save": lambda store: store.insert_memory(user_id="ada", content="saved during the upgrade"),
    "bulk insert": lambda store: store.insert_memories(
        [{"user_id": "ada", "content": f"bulk {n} during the upgrade"} for n in range(3)]
    ),
    "update_content": lambda store: store.update_content(
        memory_id=1, new_content="changed during the upgrade"
    ),
    "delete": lambda store: store.delete_memories(memory_ids=[1]),
    "truncate": lambda store: store.truncate(),
}


def below_006_with_three_memories(store) -> None:
    Migrations(store).upgrade(FIFTH)
    store.insert_memories([{"user_id": "ada", "content": f"saved before the upgrade {n}"} for n in range(3)])


def write_in_a_thread(dsn: str, write, failures: list, trace=None) -> threading.Thread:
    """A thread running `write` on a store of its own, opened below 006 (a failure goes to
    `failures`; `trace` sees each statement its connection sends, SQLite only)."""

    def run():
        writer = MemoryStore(dsn)
        if trace is not None:
            writer.database.connection().set_trace_callback(trace)
        try:
            write(writer)
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            writer.close()

    return threading.Thread(target=run)


def history_held(dsn: str) -> threading.Event:
    """The migration history locked by another session until the event returned is set: an
    upgrade runs its migration, then waits to write its history row (PostgreSQL)."""
    holder = MemoryStore(dsn)
    held, release = threading.Event(), threading.Event()

    def hold_the_history():
        with holder.database.atomic():
            holder.database.execute_sql('LOCK TABLE "migratehistory" IN EXCLUSIVE MODE')
            held.set()
            release.wait()
        holder.close()

    threading.Thread(target=hold_the_history).start()
    held.wait()
    return release


def write_while_upgrading(store, target: str, write) -> list:
    """Upgrade to `target` in one thread, held before its history row (its migration done), and
    run `write` in another once the upgrade waits; both ended, the failures (PostgreSQL)."""
    release, failures = history_held(store.dsn), []
    upgrade = upgrade_in_a_thread(store, failures, target)
    upgrade.start()
    wait_for_a_lock_waiter(store)  # the upgrade, its migration run, waits to write its history
    writer = write_in_a_thread(store.dsn, write, failures)
    writer.start()
    wait_for_a_lock_waiter(store, waiters=2, unless=writer)
    release.set()
    for thread in (upgrade, writer):
        thread.join()
    return failures


@pytest.mark.parametrize("write", WRITES_DURING_006)
def test_a_write_while_006_runs_waits_for_it_and_keeps_the_postings(store, write):
    """A write that comes while 006 builds the postings waits for its commit, then finds the
    tables and keeps them (PostgreSQL: the upgrade is held before its history row)."""
    if store.dialect.name == "sqlite":
        pytest.skip("SQLite: see the next test")
    below_006_with_three_memories(store)
    assert write_while_upgrading(store, POSTINGS, WRITES_DURING_006[write]) == []
    assert_postings_match(store)
    store.insert_memory(user_id="ada", content="saved after the upgrade")
    assert_postings_match(store)


@pytest.mark.parametrize("write", WRITES_DURING_006)
def test_a_sqlite_write_waiting_for_006_finds_the_tables_it_built(store, write):
    """SQLite: a write that comes while 006 holds the write lock decides whether to post only
    once it has the lock. The upgrade is held just before its history row until the write has
    sent its first statement that writes (each connection's statements seen through its trace)."""
    if store.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    below_006_with_three_memories(store)
    sent, failures = threading.Event(), []

    def trace(sql: str) -> None:
        if sql.startswith(("BEGIN", "INSERT", "UPDATE", "DELETE")):
            sent.set()

    writer = write_in_a_thread(store.dsn, WRITES_DURING_006[write], failures, trace)

    def before_the_history_row(sql: str) -> None:
        if sql.startswith('INSERT INTO "migratehistory"') and not writer.is_alive() and not sent.is_set():
            writer.start()
            assert sent.wait(timeout=60), "the write sent no statement"

    store.database.connection().set_trace_callback(before_the_history_row)
    Migrations(store).upgrade(POSTINGS)
    store.database.connection().set_trace_callback(None)
    writer.join()
    assert failures == []
    assert_postings_match(store)
    store.insert_memory(user_id="ada", content="saved after the upgrade")
    assert_postings_match(store)


def test_a_store_open_through_a_downgrade_below_006_fails_one_write_then_goes_on(store):
    """The downgrade drops the tables under a store that knew them: its next write fails (a
    MemoricError) and the one after writes the memory alone; the next upgrade posts them all."""
    migrations = Migrations(store)
    migrations.upgrade(POSTINGS)
    writer = MemoryStore(store.dsn)
    writer.insert_memory(user_id="ada", content="saved with postings")
    assert migrations.downgrade(FIFTH) == [POSTINGS]
    with pytest.raises(MemoricError):
        writer.insert_memory(user_id="ada", content="meets the dropped tables")
    writer.insert_memory(user_id="ada", content="saved without postings")
    assert migrations.upgrade(POSTINGS) == [POSTINGS]
    writer.insert_memory(user_id="ada", content="saved with postings again")
    writer.close()
    assert len(store.get_memories(limit=None)) == 3
    assert_postings_match(store)


def test_two_truncates_at_once_on_stores_that_must_look_for_the_postings_both_succeed(db):
    """A truncate on a store that has not yet seen the postings tables (new, or after a failed
    call) waits for another transaction's lock without holding a lock of its own: the other
    transaction's truncate then goes through, where each holding a weaker lock deadlocked."""
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite: one writer at a time, from BEGIN IMMEDIATE")
    db.insert_memory(user_id="ada", content="to be truncated")

    def write_then_truncate(pause):
        with db.database.atomic():
            db.insert_memory(user_id="ada", content="written in the transaction")
            pause()
            db.truncate()

    def truncate_on_a_new_store():
        other = MemoryStore(db.dsn)
        try:
            other.truncate()
        finally:
            other.close()

    assert while_held(db, write_then_truncate, truncate_on_a_new_store) == []
    assert db.get_memories(limit=None) == [] and stored_postings(db) == ([], [])


def test_two_imports_of_the_same_memories_at_once_both_succeed(db):
    """The second import's rebuild of the postings waits for the first's and replaces what it
    wrote: no duplicate key, postings equal to a rebuild."""
    for n in range(30):
        db.insert_memory(user_id=["ada", "bob"][n % 2], content=f"memory {n} refund tea")
    rows = db.get_memories(limit=None)
    held, release, failures = threading.Event(), threading.Event(), []

    def first():
        with db.database.atomic():
            postings.insert_memories(db, rows, skip_existing=True)
            held.set()
            release.wait()

    def second():
        held.wait()
        with db.database.atomic():
            postings.insert_memories(db, rows, skip_existing=True)

    def guarded(work):
        try:
            work()
        except BaseException as exc:  # reported below
            failures.append((work.__name__, exc))
            held.set()
        finally:
            db.close()

    threads = [threading.Thread(target=guarded, args=(work,)) for work in (first, second)]
    for thread in threads:
        thread.start()
    held.wait()
    wait_for_a_lock_waiter(db)
    release.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(db.get_memories(limit=None)) == 30
    assert_postings_match(db)


def test_concurrent_writers_leave_postings_equal_to_a_rebuild(db):
    """Inserts, content updates and deletes of one user's memories at once, from four threads."""
    seeded = [db.insert_memory(user_id="ada", content=f"seed {n} refund") for n in range(40)]
    start = threading.Barrier(4)
    failures = []

    def insert():
        start.wait()
        for n in range(10):
            db.insert_memories([{"user_id": "ada", "content": f"bulk {n} {k} tea"} for k in range(5)])

    def update():
        start.wait()
        for memory_id in seeded:
            db.update_content(memory_id=memory_id, new_content=f"updated {memory_id} policy policy")

    def delete():
        start.wait()
        for memory_id in seeded[::3]:
            db.delete_memories(memory_ids=[memory_id])

    def save():
        start.wait()
        for n in range(30):
            db.insert_memory(user_id="ada", content=f"single {n} café")

    def guarded(work):
        try:
            work()
        except BaseException as exc:  # reported below, with the thread's work named
            failures.append((work.__name__, exc))
        finally:
            db.close()

    threads = [threading.Thread(target=guarded, args=(work,)) for work in (insert, update, delete, save)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert_postings_match(db)
    assert len(db.get_memories(limit=None)) == 40 - len(seeded[::3]) + 50 + 30


def counted_before_009(content: str) -> tuple[Counter, int]:
    """The terms of the tokenizer before 009: NFKC and case folding, nothing removed or dropped."""
    found = terms_of_folded(unicodedata.normalize("NFKC", content).casefold())
    return Counter(found), len(found)


def unicode_memories(store) -> tuple[list, list]:
    """Memories whose terms 009 changes, and others, at head: their postings by 009's rule and
    by the rule before it."""
    Migrations(store).upgrade()
    contents = ["İSTANBUL trip", "soft\u00adware", "plain ascii words", "café ☕", "x\u200dy"] * 450
    store.insert_memories(  # more than two pages of the migration
        {"user_id": f"u{n % 3}", "namespace": "ns" if n % 2 else None, "content": text}
        for n, text in enumerate(contents)
    )
    by_the_old_rule = postings.posting_rows(store.get_memories(limit=None), counted_before_009)
    return stored_postings(store), [sorted(rows) for rows in by_the_old_rule]


def test_009_posts_again_what_its_folding_changes_and_its_rollback_restores_the_old_terms(store):
    now, before = unicode_memories(store)
    migrations = Migrations(store)
    assert migrations.downgrade(USER_METADATA) == [MISREAD_METADATA, UNICODE_TERMS], "no confirmation needed"
    assert list(stored_postings(store)) == before != list(now)
    assert migrations.upgrade() == [UNICODE_TERMS, MISREAD_METADATA]
    assert stored_postings(store) == now
    assert_postings_match(store)


def test_006_posts_by_the_rule_of_its_time_so_a_database_at_008_is_one_memoric_of_008_reads(store):
    """Before, 006 posted by today's rule: a database taken down below 006 and up to 008 held
    terms a memoric of 008 never looks for (`istanbul` where it asks for `i̇stanbul`)."""
    now, before = unicode_memories(store)
    migrations = Migrations(store)
    migrations.downgrade(FIFTH, confirm_data_loss=True)
    migrations.upgrade(USER_METADATA)
    assert list(stored_postings(store)) == before
    assert migrations.upgrade() == [UNICODE_TERMS, MISREAD_METADATA]
    assert stored_postings(store) == now


def test_an_update_while_009_runs_waits_for_it_and_keeps_its_postings(store):
    """Committed between 009's read of a memory and its commit, an update of that memory's content
    would keep postings 009 wrote for the content it read (PostgreSQL; SQLite's migration holds
    the write lock)."""
    if store.dialect.name == "sqlite":
        pytest.skip("SQLite's write lock")
    Migrations(store).upgrade(USER_METADATA)
    store.insert_memories([{"user_id": "ada", "content": f"İzmir note {n}"} for n in range(3)])
    change = lambda writer: writer.update_content(memory_id=1, new_content="changed during 009")  # noqa: E731
    assert write_while_upgrading(store, UNICODE_TERMS, change) == []
    assert store.get_memory(1)["content"] == "changed during 009"
    assert_postings_match(store)
