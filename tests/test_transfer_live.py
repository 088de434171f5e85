"""Export, import and copy beside live agents, on both dialects: nothing lost, nothing changed.

An agent thread saves memories (and rebuilds its clusters) in a loop while an import or a copy
runs; the import's progress callback waits after each batch until the agent has saved again, so
their writes interleave at every batch boundary (no sleeps). An export, and the read side of a
copy, is paused at a known row while another connection rewrites the database.
"""

from __future__ import annotations

import datetime as dt
import io
import threading

import pytest

from memoric import Memoric
from memoric.clustering import rebuild_clusters
from memoric.db import postings, transfer_queries
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.policies import SUMMARY_METADATA
from memoric.transfer import copy_database, export_jsonl, import_jsonl
from tests.helpers.concurrency import wait_for_a_lock_waiter, while_held
from tests.helpers.sqlite_tables import sqlite_without_autoincrement
from tests.helpers.transfer_data import T0, TRICKY_METADATA, assert_identical, dump_lines, fill, snapshot

FAR = 1_000_000  # the export's first id: an agent saving into an empty database stays far below it
WAIT_LIMIT = 120  # seconds: only so that a broken agent fails the test instead of hanging it


def far_export(memories: int, clusters: int) -> str:
    """An export of `memories` memories and `clusters` clusters of three users, ids from FAR on."""
    stamp = {"created_at": T0.isoformat(), "updated_at": T0.isoformat()}
    records = [
        {"type": "memory", "id": FAR + n, "user_id": f"user{n % 3}", "thread_id": f"t{n % 5}",
         "content": f"imported {n}", "tier": "long_term", "metadata": {**TRICKY_METADATA, "n": n}, **stamp}
        for n in range(memories)
    ] + [
        {"type": "cluster", "cluster_id": FAR + n, "user_id": f"user{n % 3}", "topic": f"topic {n}",
         "category": "general", "memory_ids": [FAR + n], "memory_count": 1, "summary": f"cluster {n}",
         "last_built_at": T0.isoformat(), **stamp}
        for n in range(clusters)
    ]  # fmt: skip
    return dump_lines(records)


class Agent(threading.Thread):
    """An agent on its own connection: saves a memory with a new topic (and rebuilds its clusters,
    one per topic) in a loop until `stop` is set; every id it got, in order, in `saved`."""

    def __init__(self, dsn: str, *, rebuild: bool = True) -> None:
        super().__init__(daemon=True)
        self.dsn, self.rebuild = dsn, rebuild
        self.saved: list[tuple[int, str]] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._changed = threading.Condition()

    def run(self) -> None:
        store = MemoryStore(self.dsn)
        try:
            while not self.stop.is_set():
                topic = f"topic {len(self.saved)}"
                memory_id = store.insert_memory(user_id="agent", content=topic, metadata={"topic": topic})
                if self.rebuild:
                    rebuild_clusters(store, user_id="agent")
                with self._changed:
                    self.saved.append((memory_id, topic))
                    self._changed.notify_all()
        except BaseException as exc:  # the test reports it
            with self._changed:
                self.errors.append(exc)
                self._changed.notify_all()
        finally:
            store.close()

    def saves_again(self, *_: object) -> None:
        """Return once the agent has saved (and rebuilt) once more; a progress callback."""
        with self._changed:
            goal = len(self.saved) + 1
            assert self._changed.wait_for(lambda: len(self.saved) >= goal or self.errors, WAIT_LIMIT)

    def __enter__(self) -> Agent:
        self.start()
        self.saves_again()
        self.saves_again()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.join()


def assert_agent_and_file_both_kept(store: MemoryStore, reference: MemoryStore, agent: Agent) -> None:
    """The target holds exactly the reference's rows and every save of the agent (its clusters too)."""
    assert agent.errors == []
    memories, clusters = snapshot(store)
    expected_memories, expected_clusters = snapshot(reference)
    assert_identical([m for m in memories if m["user_id"] != "agent"], expected_memories)
    assert_identical([c for c in clusters if c["user_id"] != "agent"], expected_clusters)
    assert [(m["id"], m["content"]) for m in memories if m["user_id"] == "agent"] == agent.saved
    if agent.rebuild:
        built = {c["topic"]: c["memory_ids"] for c in clusters if c["user_id"] == "agent"}
        assert built == {topic: [memory_id] for memory_id, topic in agent.saved}


def import_beside_an_agent(target: MemoryStore, reference: MemoryStore) -> None:
    """A 13-batch import into `target` while an agent saves and rebuilds there; `reference` as expected."""
    text = far_export(2500, 600)
    import_jsonl(reference, io.StringIO(text))
    with Agent(target.dsn) as agent:
        counts = import_jsonl(target, io.StringIO(text), batch_size=250, progress=agent.saves_again)
    assert counts == {"memories": 2500, "clusters": 600, "skipped": 0}
    assert len(agent.saved) > 13  # it saved between every two of the 13 batches
    assert_agent_and_file_both_kept(target, reference, agent)
    assert target.insert_memory(user_id="agent", content="after") > max(agent.saved)[0]


def test_an_agent_saving_and_rebuilding_clusters_during_an_import_loses_nothing(db, new_dsn):
    reference = MemoryStore(new_dsn())
    reference.create_schema()
    import_beside_an_agent(db, reference)


def test_an_agent_saving_during_an_import_into_sqlite_tables_without_an_id_counter_loses_nothing(tmp_path):
    import_beside_an_agent(
        sqlite_without_autoincrement(tmp_path / "target.db"),
        sqlite_without_autoincrement(tmp_path / "ref.db"),
    )


def test_an_agent_saving_during_a_copy_into_its_database_loses_nothing(db, new_dsn):
    source = MemoryStore(new_dsn())
    source.create_schema()
    import_jsonl(source, io.StringIO(far_export(1500, 300)))
    with Agent(db.dsn) as agent:
        counts = copy_database(source, db, batch_size=200, progress=agent.saves_again)
    assert counts == {"memories": 1500, "clusters": 300, "skipped": 0}
    assert_agent_and_file_both_kept(db, source, agent)


def test_a_row_taken_by_other_data_during_an_import_stops_it_naming_the_line(db, new_dsn):
    text = far_export(1000, 0)
    other = MemoryStore(db.dsn)

    def take_an_id_of_the_next_batch(rows: int) -> None:
        if not taken:
            taken.append(other.insert_memories([{"id": FAR + 600, "user_id": "zoe", "content": "mine"}]))

    taken: list[int] = []
    with pytest.raises(ValidationError, match="line 602: memory id 1000600 is already in the target"):
        import_jsonl(db, io.StringIO(text), batch_size=500, progress=take_an_id_of_the_next_batch)
    kept = {m["id"]: m for m in db.get_memories(limit=None)}
    assert kept[FAR + 600]["content"] == "mine"
    assert [kept[FAR + n]["content"] for n in range(500)] == [f"imported {n}" for n in range(500)]
    rolled_back = {FAR + n for n in range(500, 999) if n != 600}  # (999 may hold the ids back)
    assert not rolled_back & kept.keys(), "the batch with the clash was rolled back"


def test_a_memory_deleted_after_its_batch_skipped_it_is_named_as_deleted(db, monkeypatch):
    """PostgreSQL: an agent deletes a memory between the batch's INSERT, which skipped it as
    already there, and the rebuild of its postings, which locks it (SQLite's writers exclude one
    another)."""
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite: no other writer runs inside an import's transaction")
    db.insert_memory(user_id="ada", content="kept")
    gone = db.insert_memory(user_id="ada", content="deleted by an agent")
    export = io.StringIO()
    export_jsonl(db, export)
    agent = MemoryStore(db.dsn)
    rebuild = postings.reindex_ids

    def agent_deletes_then_rebuild(store, memory_ids):
        agent.delete_memories(memory_ids=[gone])
        rebuild(store, memory_ids)

    monkeypatch.setattr(postings, "reindex_ids", agent_deletes_then_rebuild)
    with pytest.raises(
        ValidationError, match=f"memory {gone} could not be written: another writer deleted it"
    ):
        import_jsonl(db, io.StringIO(export.getvalue()))
    agent.close()
    assert [memory["content"] for memory in db.get_memories(limit=None)] == ["kept"]


@pytest.mark.parametrize("write", ["import", "insert_memories"])
def test_writing_rows_with_their_ids_never_moves_the_id_counter_back(db, write):
    counter_never_moves_back(db, write)


def counter_never_moves_back(db: MemoryStore, write: str) -> None:
    """Delete the newest memory and cluster, write older ids back: the next ids are still new."""
    newest = [db.insert_memory(user_id="agent", content=f"n{n}") for n in range(5)][-1]
    for topic in "abc":
        db.upsert_cluster(user_id="agent", topic=topic, category="general", memory_ids=[1])
    db.delete_memories(memory_ids=[2, 3, 4, newest])
    db.delete_cluster(cluster_id=2)
    db.delete_cluster(cluster_id=3)
    rows = [{"id": 2, "user_id": "zoe", "content": "two", "created_at": T0}]
    if write == "import":
        cluster = {"type": "cluster", "cluster_id": 2, "user_id": "zoe", "topic": "z", "category": "general",
                   "memory_ids": [2], "memory_count": 1, "summary": ""}  # fmt: skip
        memory = {"type": "memory", **rows[0], "created_at": T0.isoformat()}
        import_jsonl(db, io.StringIO(dump_lines([memory, cluster])))
        assert db.upsert_cluster(user_id="agent", topic="d", category="general", memory_ids=[1]) == 4
    else:
        db.insert_memories(rows)
    assert db.insert_memory(user_id="agent", content="next") == newest + 1


# --- one point in time --------------------------------------------------------------------


class ActsAtLine(io.StringIO):
    """An export's output that calls `act()` once, right after line `line` is written."""

    def __init__(self, line: int, act) -> None:
        super().__init__()
        self.line, self.act, self.lines = line, act, 0

    def write(self, text: str) -> int:
        written = super().write(text)
        self.lines += text.count("\n")
        if self.lines == self.line:
            self.act()
        return written


POLICIES = {"summarization": {"min_records": 5}}


def rewrite_everything(dsn: str) -> None:
    """What agents do to a database: a policy run (tiers, summaries), clusters, saves, deletes."""
    memoric = Memoric(dsn, config=POLICIES, clock=lambda: T0 + dt.timedelta(days=60))
    result = memoric.run_policies()
    assert result["summaries_created"] > 0 and sum(result["migrated"].values()) > 0
    memoric.rebuild_clusters()
    memoric.save("user1", "a new memory", metadata={"topic": "late"})
    memoric.db.delete_memories(memory_ids=[1, 2400])
    memoric.close()


@pytest.fixture
def filled(new_dsn) -> MemoryStore:
    """A database built through the chain with 2,497 memories (three export pages) and two clusters."""
    memoric = Memoric(new_dsn())
    memoric.ensure_schema()
    fill(memoric.db)
    yield memoric.db
    memoric.close()


def test_an_export_shows_one_point_in_time_while_agents_rewrite_the_database(filled, new_dsn):
    before = snapshot(filled)
    out = ActsAtLine(2, lambda: rewrite_everything(filled.dsn))  # the first page has been read
    export_jsonl(filled, out)
    assert snapshot(filled) != before, "the database did change during the export"

    imported = Memoric(new_dsn(), config=POLICIES)
    imported.ensure_schema()
    import_jsonl(imported.db, io.StringIO(out.getvalue()))
    assert_identical(snapshot(imported.db), before)
    imported.run_policies()
    summaries = imported.db.get_memories(where_metadata=SUMMARY_METADATA, limit=None)
    threads = [(m["user_id"], m["namespace"], m["thread_id"]) for m in summaries]
    assert summaries and len(threads) == len(set(threads)), "one summary per thread"


def test_the_read_side_of_a_copy_shows_one_point_in_time(filled, new_dsn):
    before = snapshot(filled)
    target = MemoryStore(new_dsn())
    target.create_schema()
    acted: list[bool] = []

    def rewrite_once(rows: int) -> None:
        if not acted:
            acted.append(True)
            rewrite_everything(filled.dsn)

    copy_database(filled, target, batch_size=500, progress=rewrite_once)
    assert acted and snapshot(filled) != before
    assert_identical(snapshot(target), before)


def test_an_export_reads_page_by_page(filled, monkeypatch):
    pages: list[int] = []
    read_page = transfer_queries.memories_after

    def counted(store, after_id: int, **kwargs) -> list[dict]:
        page = read_page(store, after_id, **kwargs)
        pages.append(len(page))
        return page

    monkeypatch.setattr(transfer_queries, "memories_after", counted)
    out = io.StringIO()
    export_jsonl(filled, out)
    assert pages == [1000, 1000, 497, 0] * 2  # read to check every row, then to write them
    assert len(out.getvalue().splitlines()) == 1 + 2497 + 2 + 1


def test_a_timestamp_in_another_zone_reads_back_as_the_same_instant(db):
    moment = dt.datetime(2025, 6, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    line = {"type": "memory", "id": 5, "user_id": "ada", "content": "x", "created_at": moment.isoformat()}
    import_jsonl(db, io.StringIO(dump_lines([line])))
    assert db.get_memory(5)["created_at"] == moment and db.get_memory(5)["created_at"].tzinfo is dt.UTC


def test_ids_drawn_for_a_bulk_insert_wait_for_a_reservation_in_progress(db):
    """An import with new ids reserves a block by reading the id sequence and raising it
    (`reserve_ids`); a bulk insert draws its ids (`new_ids`) before its INSERT, and waits while
    a reservation's transaction is open, so it never draws between the reading and the raising
    (PostgreSQL; SQLite's writers exclude one another)."""
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite: one writer at a time")
    drawn = []

    def draw():
        with db.database.atomic():
            drawn.extend(db.dialect.new_ids(db.database, "memories", "id", 5))
        db.close()

    drawer = threading.Thread(target=draw)
    with db.database.atomic():
        top = db.dialect.reserve_ids(db.database, "memories", "id", above=0, count=10)
        drawer.start()
        wait_for_a_lock_waiter(db, unless=drawer)
        assert drawer.is_alive() and drawn == [], "ids were drawn while a reservation was open"
    drawer.join()
    assert min(drawn) > top + 10, "the drawn ids lie above the reserved block"


def test_a_transaction_that_saved_then_bulk_inserts_beside_a_reservation_of_ids_both_succeed(db):
    """A transaction that has written (it holds the table's write lock) and then draws ids for a
    bulk insert, while a reservation waits for it: the reservation waits to the commit, no
    deadlock (an advisory lock taken after the table lock by one side and before it by the other
    made one)."""
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite: one writer at a time")
    tops = []

    def save_then_bulk_insert(pause):
        with db.database.atomic():
            db.insert_memory(user_id="ada", content="saved first")
            pause()
            db.insert_memories([{"user_id": "ada", "content": f"bulk {n}"} for n in range(5)])

    def reserve():
        tops.append(db.dialect.reserve_ids(db.database, "memories", "id", above=0, count=10))

    assert while_held(db, save_then_bulk_insert, reserve) == []
    ids = sorted(m["id"] for m in db.get_memories(limit=None))
    assert len(ids) == 6 and max(ids) <= tops[0], "the writer's ids lie below the reserved block"


def test_an_import_with_new_ids_that_stops_takes_back_only_what_it_wrote(db):
    """Another writer puts a memory under an explicit id inside the import's reserved block; the
    import stops at that id and takes back the two memories it wrote, and the other writer's
    memory stays (deleting the whole block deleted it)."""
    other = MemoryStore(db.dsn)
    db.insert_memory(user_id="ada", content="there before the import")

    def after_each_batch(_: int) -> None:
        if other.count_memories() == 2:  # the import's first memory is in: its block starts below it
            first = max(m["id"] for m in other.get_memories(limit=None))
            other.insert_memories([{"id": first + 2, "user_id": "bob", "content": "explicit id"}])

    try:
        with pytest.raises(ValidationError, match=r"already in the target .* took back what it had written$"):
            export = io.StringIO(far_export(3, 0))
            import_jsonl(db, export, batch_size=1, new_ids=True, progress=after_each_batch)
    finally:
        other.close()
    kept = sorted(m["content"] for m in db.get_memories(limit=None))
    assert kept == ["explicit id", "there before the import"]


def test_a_cluster_whose_key_an_agent_takes_during_an_import_with_new_ids_names_the_remedy(db):
    """Run again, such an import is refused for that cluster each time: the stop said to run it
    again; it says to import without the file's clusters and rebuild them."""
    ids = [db.insert_memory(user_id="ada", content=f"memory {n}") for n in range(3)]
    db.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids)
    export = io.StringIO()
    export_jsonl(db, export)
    db.delete_cluster(cluster_id=db.get_clusters(user_id="ada")[0]["cluster_id"])
    agent = MemoryStore(db.dsn)

    def agent_takes_the_key(rows: int) -> None:
        if not agent.get_clusters(user_id="ada"):
            agent.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ids)

    with pytest.raises(ValidationError, match=r"could not be written: .* import without the file's clusters"):
        import_jsonl(
            db, io.StringIO(export.getvalue()), new_ids=True, batch_size=3, progress=agent_takes_the_key
        )
    agent.close()
    assert db.count_memories() == 3, "what the import wrote was taken back"
