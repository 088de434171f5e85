"""A cluster lists only memories of its own user that exist, on both dialects.

`upsert_cluster` wrote whatever ids it was given, and a delete left the clusters listing what
it deleted: either way every export after it was refused (an import would refuse the cluster),
until someone rebuilt that user's clusters. Upserts now check their ids, every delete takes its
memories out of their clusters, and a delete and an upsert that meet wait for each other.
"""

from __future__ import annotations

import io
import json

import pytest

from memoric import Memoric
from memoric.db import policy_queries, transfer_queries
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.policies import SUMMARY_METADATA
from memoric.transfer import export_memoric, import_jsonl
from tests.helpers.concurrency import run_in_threads, while_held
from tests.helpers.dialects import requires_postgres

NOT_ADAS = "not memories of user_id 'ada'"


def memories_of(memoric: Memoric, user_id: str, count: int = 3) -> list[int]:
    return [memoric.save(user_id, f"{user_id} {n}", thread_id="t1") for n in range(count)]


def exported(memoric: Memoric) -> str:
    out = io.StringIO()
    export_memoric(memoric, out)
    return out.getvalue()


def test_an_upsert_naming_another_users_memory_or_none_is_refused_and_writes_nothing(dsn):
    memoric = Memoric(dsn)
    ada, bob = memories_of(memoric, "ada"), memories_of(memoric, "bob")
    kept = {"topic": "kept", "category": "c", "memory_ids": ada}
    for wrong in ([*ada, bob[0]], [ada[0], 10**12]):
        with pytest.raises(ValidationError, match=NOT_ADAS):
            memoric.db.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=wrong)
        with pytest.raises(ValidationError, match=NOT_ADAS):
            memoric.db.upsert_clusters(
                user_id="ada", clusters=[kept, {**kept, "topic": "t", "memory_ids": wrong}]
            )
    assert memoric.get_clusters() == []
    memoric.db.upsert_clusters(user_id="ada", clusters=[kept])
    assert [c["memory_ids"] for c in memoric.get_clusters()] == [ada]


def summarized_thread(memoric: Memoric, ids: list[int]) -> int:
    """A summary of the memories `ids` (one thread of ada's), as a policy run writes it; its id."""
    row = {"user_id": "ada", "thread_id": "t1", "content": "the summary", "metadata": SUMMARY_METADATA}
    policy_queries.write_summaries(memoric.db, [(row, ids)])
    return memoric.db.get_memories(user_id="ada", where_metadata=SUMMARY_METADATA)[0]["id"]


# Each way memories are deleted: (what it does, given ada's memories and the summary of them).
DELETES = {
    "delete_memories by id": lambda m, ids, summary: m.db.delete_memories(memory_ids=[ids[0]]),
    "delete_memories of a user": lambda m, ids, summary: m.db.delete_memories(user_id="ada"),
    "forget": lambda m, ids, summary: m.forget("ada", [ids[1]]),
    "an edit releasing a summary": lambda m, ids, summary: m.db.update_content(
        memory_id=ids[2], new_content="x"
    ),
    "a deleted summary": lambda m, ids, summary: m.db.delete_memories(memory_ids=[summary]),
    "an import taking back its rows": lambda m, ids, summary: transfer_queries.delete_ids(
        m.db, "memory", ids[:2]
    ),
}


@pytest.mark.parametrize("delete", DELETES)
def test_every_delete_takes_its_memories_out_of_their_clusters(dsn, new_dsn, delete):
    memoric = Memoric(dsn)
    ada, bob = memories_of(memoric, "ada"), memories_of(memoric, "bob")
    summary = summarized_thread(memoric, ada)
    memoric.db.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=[*ada, summary])
    memoric.db.upsert_cluster(user_id="bob", topic="t", category="c", memory_ids=bob)

    DELETES[delete](memoric, ada, summary)
    left = {row["id"] for row in memoric.db.get_memories(user_id="ada", limit=None)}
    assert left < {*ada, summary}, "the call deleted something"
    listed = [(c["memory_ids"], c["memory_count"]) for c in memoric.get_clusters("ada")]
    assert listed == ([(sorted(left), len(left))] if left else []), "a cluster left with none is deleted"
    assert memoric.get_clusters("bob")[0]["memory_ids"] == bob
    restored = Memoric(new_dsn())
    assert import_jsonl(restored.db, io.StringIO(exported(memoric)))["clusters"] == 1 + len(listed)


def test_a_delete_waits_for_an_upsert_holding_its_memories_then_takes_them_out(dsn):
    memoric = Memoric(dsn)
    ada = memories_of(memoric, "ada")

    def upsert(pause):
        with memoric.db.atomic():
            memoric.db.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ada)
            pause()

    assert while_held(memoric.db, upsert, lambda: memoric.db.delete_memories(memory_ids=[ada[0]])) == []
    assert memoric.get_clusters("ada")[0]["memory_ids"] == ada[1:]


def test_an_upsert_waits_for_a_delete_of_its_memories_then_refuses_them(dsn):
    memoric = Memoric(dsn)
    ada = memories_of(memoric, "ada")

    def delete(pause):
        with memoric.db.atomic():
            memoric.db.delete_memories(memory_ids=[ada[0]])
            pause()

    def upsert():
        memoric.db.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=ada)

    (failure,) = while_held(memoric.db, delete, upsert)
    assert isinstance(failure, ValidationError) and f"memory_ids [{ada[0]}]" in str(failure)
    assert memoric.get_clusters("ada") == []


def test_a_rebuild_meeting_a_delete_groups_what_is_left_as_if_the_deleted_were_never_read(dsn):
    """Before, the rebuild left the deleted memories out of the cluster it had grouped with
    them: a topic whose memories were all deleted kept a cluster of none, whose summary still
    counted them (PostgreSQL)."""
    memoric = Memoric(dsn)
    gone = [memoric.save("ada", f"gone {n}", metadata={"topic": "gone"}) for n in range(3)]
    kept = [memoric.save("ada", f"kept {n}", metadata={"topic": "kept"}) for n in range(2)]
    rebuilt = []

    def delete(pause):
        with memoric.db.atomic():
            memoric.db.delete_memories(memory_ids=[*gone, kept[0]])
            pause()

    assert while_held(memoric.db, delete, lambda: rebuilt.append(memoric.rebuild_clusters("ada"))) == []
    assert rebuilt == [1]
    (cluster,) = memoric.get_clusters("ada")
    assert (cluster["topic"], cluster["memory_ids"]) == ("kept", kept[1:])
    assert cluster["summary"].startswith("1 memory about kept")
    assert exported(memoric)


def test_an_import_meeting_a_delete_of_a_memory_its_cluster_lists_refuses_that_cluster(dsn):
    """The import checked the target's memories its clusters list, then wrote the clusters
    without holding them: a delete committed in between left a cluster listing a memory gone."""
    memoric = Memoric(dsn)
    target_memory = memoric.save("ada", "in the target")
    lines = [
        {"type": "header", "format": "memoric-export", "format_version": 1},
        {"type": "memory", "id": 10**6, "user_id": "ada", "content": "from the file"},
        {"type": "cluster", "cluster_id": 50, "user_id": "ada", "topic": "t", "category": "c",
         "memory_ids": [target_memory, 10**6], "memory_count": 2, "summary": ""},
    ]  # fmt: skip
    another_writer = MemoryStore(dsn)

    def delete_after_the_memories(written: int) -> None:
        """Called after each batch: after the file's memory, before its cluster."""
        another_writer.delete_memories(memory_ids=[target_memory])

    with pytest.raises(ValidationError) as refused:
        text = io.StringIO("".join(json.dumps(line) + "\n" for line in lines))
        import_jsonl(memoric.db, text, batch_size=1, progress=delete_after_the_memories)
    message = f"line 3: cluster 50 lists memory {target_memory}, which another writer deleted meanwhile"
    assert message in str(refused.value)
    assert memoric.get_clusters() == []
    assert exported(memoric)
    another_writer.close()


@requires_postgres
def test_two_forgets_of_one_users_memories_never_deadlock(new_postgres_url):
    """Each forget rebuilt the clusters in its delete's transaction: it held the clusters and
    then waited for the other's deleted memories, which waited for the clusters. PostgreSQL
    broke each such deadlock after a second and the forget ran again (60 memories: 70 s)."""
    memoric = Memoric(new_postgres_url())
    ids = [memoric.save("ada", f"note {n}", metadata={"topic": "t"}) for n in range(12)]
    memoric.rebuild_clusters("ada")

    def forget_every_other(start: int) -> None:
        try:
            for memory_id in ids[start::2]:
                memoric.forget("ada", [memory_id])
        finally:  # this session's statistics (its deadlocks) written before the count below
            memoric.db.database.execute_sql("SELECT pg_stat_force_next_flush()")
            memoric.close()

    assert run_in_threads(2, forget_every_other) == []
    memoric.db.database.execute_sql("SELECT pg_stat_clear_snapshot()")
    deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    assert memoric.db.database.execute_sql(deadlocks).fetchone()[0] == 0
    assert memoric.stats("ada")["total"] == 0 and memoric.get_clusters("ada") == []


def test_a_cluster_key_given_twice_in_one_bulk_upsert_is_refused_on_both_dialects(dsn):
    """SQLite wrote the last of the two, PostgreSQL failed ("cannot affect row a second time")."""
    memoric = Memoric(dsn)
    ada = memories_of(memoric, "ada")
    twice = [
        {"topic": "t", "category": "c", "memory_ids": ada[:1]},
        {"topic": "u", "category": "c", "memory_ids": ada[1:2]},
        {"topic": "t", "category": "c", "memory_ids": ada[2:]},
    ]
    with pytest.raises(
        ValidationError, match=r"clusters\[0\] and clusters\[2\] are both topic 't', category 'c'"
    ):
        memoric.db.upsert_clusters(user_id="ada", clusters=twice)
    assert memoric.get_clusters() == []
    assert memoric.db.upsert_clusters(user_id="ada", clusters=(cluster for cluster in twice[:2])) == 2
