"""The Memoric facade on both dialects, through the real migration chain."""

from __future__ import annotations

import datetime as dt
import io
import random

import pytest

from memoric import Memoric
from memoric.db import cluster_members
from memoric.errors import MigrationError, ValidationError
from memoric.transfer import export_jsonl
from tests.helpers.reference import NOW, Clock, ago, matches, reference_ranking

pytestmark = pytest.mark.citus  # also on a Citus cluster


@pytest.fixture
def m(module_dsn):
    """A Memoric with empty tables and a clock stopped at NOW."""
    memoric = Memoric(module_dsn, clock=Clock(NOW))
    memoric.stats()
    memoric.db.truncate()
    yield memoric
    memoric.close()


def ids(memories) -> list[int]:
    return [memory["id"] for memory in memories]


# --- schema -------------------------------------------------------------------------------


def test_a_fresh_database_is_built_through_the_chain_on_first_use(new_dsn):
    memoric = Memoric(new_dsn())
    head = memoric.migrations.names()[-1]
    assert memoric.save("ada", "first memory") == 1
    assert memoric.migrations.current() == head
    assert memoric.stats()["schema_version"] == head
    memoric.close()


def test_ensure_schema_builds_it_before_the_store_is_used_directly(new_dsn):
    memoric = Memoric(new_dsn())
    memoric.ensure_schema()
    assert memoric.db.count_memories() == 0
    memoric.close()


def test_a_database_behind_head_is_never_migrated_implicitly(new_dsn):
    dsn = new_dsn()
    setup = Memoric(dsn)
    setup.init_db()
    setup.migrations.stamp("base")
    setup.close()
    memoric = Memoric(dsn)
    with pytest.raises(MigrationError, match="memoric migrate upgrade"):
        memoric.save("ada", "not written")
    with pytest.raises(MigrationError, match="memoric migrate upgrade"):
        memoric.db.get_memories(user_id="ada")
    assert memoric.store.count_memories() == 0
    memoric.close()


def test_the_store_is_usable_as_the_first_call_on_an_empty_database(new_dsn):
    dsn = new_dsn()
    memoric = Memoric(dsn)
    assert memoric.db.get_memories(user_id="user1", where_metadata={"topic": "urgent"}) == []
    assert memoric.migrations.pending() == []
    memoric.close()


def test_forget_deletes_only_that_users_memories_and_rebuilds_their_clusters(new_dsn):
    memoric = Memoric(new_dsn())
    ada = [memoric.save("ada", f"note {i}", metadata={"topic": "t"}) for i in range(3)]
    bob = memoric.save("bob", "bob's note", metadata={"topic": "t"})
    memoric.rebuild_clusters()
    assert memoric.forget("ada", [ada[0], bob]) == 1
    assert memoric.db.get_memory(bob) is not None
    assert [c["memory_ids"] for c in memoric.get_clusters("ada")] == [ada[1:]]
    assert memoric.forget("ada") == 2
    assert memoric.db.count_memories(user_id="ada") == 0
    assert memoric.get_clusters("ada") == []
    assert [c["memory_ids"] for c in memoric.get_clusters("bob")] == [[bob]]
    memoric.close()


def test_a_reader_never_sees_a_cluster_listing_a_memory_forget_deleted(new_dsn, monkeypatch):
    """Another connection exports while `forget` takes the memory out of the clusters: the
    deletion and that are one transaction, so it sees both or neither, and the export succeeds."""
    dsn = new_dsn()
    memoric = Memoric(dsn)
    kept, forgotten = (memoric.save("ada", f"note {i}", metadata={"topic": "t"}) for i in range(2))
    memoric.rebuild_clusters()
    reader = Memoric(dsn)
    exports = []
    take_out = cluster_members.forget

    def exported_first(*args, **kwargs):
        out = io.StringIO()
        exports.append(export_jsonl(reader.db, out))
        return take_out(*args, **kwargs)

    monkeypatch.setattr(cluster_members, "forget", exported_first)
    assert memoric.forget("ada", [forgotten]) == 1
    assert exports and all(export == {"memories": 2, "clusters": 1} for export in exports)  # before, whole
    assert [c["memory_ids"] for c in memoric.get_clusters("ada")] == [[kept]]
    reader.close()
    memoric.close()


def test_a_memory_forgotten_during_a_rebuild_of_every_user_does_not_come_back(new_dsn):
    """Another connection forgets zoe's memory while a rebuild of every user is between ada and
    zoe: zoe's clusters are built from what is there when her turn comes."""
    dsn = new_dsn()
    memoric, other = Memoric(dsn), Memoric(dsn)
    memoric.save("ada", "a", metadata={"topic": "t"})
    kept, forgotten = (memoric.save("zoe", f"z{i}", metadata={"topic": "t"}) for i in range(2))
    done = []

    def forget_after_ada(processed: int) -> None:
        if not done:
            done.append(other.forget("zoe", [forgotten]))

    memoric.rebuild_clusters(on_progress=forget_after_ada)
    assert done == [1]
    assert [c["memory_ids"] for c in memoric.get_clusters("zoe")] == [[kept]]
    export_jsonl(memoric.db, io.StringIO())  # no cluster lists a memory that is gone
    other.close()
    memoric.close()


def test_init_db_and_migrate(new_dsn):
    memoric = Memoric(new_dsn())
    memoric.init_db()
    assert memoric.migrations.pending() == []
    assert memoric.migrate() == []
    assert memoric.stats()["total"] == 0
    memoric.close()

    fresh = Memoric(new_dsn())
    assert fresh.migrate() == fresh.migrations.names()
    fresh.close()


# --- save ---------------------------------------------------------------------------------


def test_save_stores_with_defaults(m):
    memory_id = m.save("ada", "Prefers email", thread_id="t1", metadata={"topic": "contact"})
    memory = m.db.get_memory(memory_id)
    assert (memory["tier"], memory["score"], memory["namespace"]) == ("short_term", 50, None)
    assert memory["metadata"] == {"topic": "contact"}
    assert m.db.count_memories() == 1


def test_an_enricher_adds_keys_but_never_overwrites_the_callers(module_dsn):
    def enricher(content, metadata):
        metadata["topic"] = "mutated"
        return {"topic": "guessed", "length": len(content), "lang": "en"}

    memoric = Memoric(module_dsn, enricher=enricher)
    memoric.db.truncate()
    mine = {"topic": "travel", "nested": {"a": 1}}
    memory_id = memoric.save("ada", "Booked Lisbon", metadata=mine)
    assert memoric.db.get_memory(memory_id)["metadata"] == {
        "topic": "travel",
        "nested": {"a": 1},
        "length": 13,
        "lang": "en",
    }
    assert mine == {"topic": "travel", "nested": {"a": 1}}
    memoric.enricher = lambda content, metadata: ["not", "a", "dict"]
    with pytest.raises(ValidationError, match="enricher"):
        memoric.save("ada", "x")
    memoric.close()


# --- retrieve: scopes and isolation --------------------------------------------------------


@pytest.fixture
def scoped(m):
    """Two users, a namespace, threads sharing a topic, a summarized memory."""
    put = m.save
    return {
        "t1": put("ada", "Flight to Lisbon booked", thread_id="t1", metadata={"topic": "travel"}),
        "t1b": put("ada", "Window seat please", thread_id="t1"),
        "t2": put(
            "ada", "Hotel near the river", thread_id="t2", metadata={"topic": "travel", "kind": "hotel"}
        ),
        "t3": put("ada", "Allergic to nuts", thread_id="t3", metadata={"topic": "food"}),
        "t4": m.db.insert_memory(
            user_id="ada", content="Train option", thread_id="t4", related_threads=["t1"]
        ),
        "none": put("ada", "Lives in Porto"),
        "work": put("ada", "Quarterly report due", thread_id="t1", namespace="work"),
        "bob": put("bob", "Bob travels too", thread_id="t1", metadata={"topic": "travel"}),
        "hidden": m.db.insert_memory(user_id="ada", content="old", thread_id="t1", summarized=True),
    }


def test_thread_scope(m, scoped):
    assert set(ids(m.retrieve("ada", thread_id="t1"))) == {scoped["t1"], scoped["t1b"]}
    no_thread = set(ids(m.retrieve("ada")))
    assert no_thread == {scoped[k] for k in ("t1", "t1b", "t2", "t3", "t4", "none")}


def test_topic_scope_spans_the_users_threads_sharing_the_topic(m, scoped):
    found = set(ids(m.retrieve("ada", scope="topic", metadata_filter={"topic": "travel"})))
    assert found == {scoped[k] for k in ("t1", "t1b", "t2", "t4")}
    narrowed = m.retrieve("ada", scope="topic", metadata_filter={"topic": "travel", "kind": "hotel"})
    assert ids(narrowed) == [scoped["t2"]]


def test_user_scope_and_the_thread_bonus(m, scoped):
    everything = m.retrieve("ada", scope="user", top_k=100)
    assert set(ids(everything)) == {scoped[k] for k in ("t1", "t1b", "t2", "t3", "t4", "none")}
    favoured = m.retrieve("ada", scope="user", thread_id="t3", top_k=1)
    assert ids(favoured) == [scoped["t3"]]
    assert favoured[0]["_score"] == 75


def test_namespaces_and_users_never_mix(m, scoped):
    assert ids(m.retrieve("ada", namespace="work", scope="user")) == [scoped["work"]]
    assert ids(m.retrieve("bob", scope="user")) == [scoped["bob"]]
    assert m.retrieve("carol", scope="user") == []
    for scope in ("thread", "topic", "user"):
        found = m.retrieve("ada", scope=scope, thread_id="t1", metadata_filter={"topic": "travel"}, top_k=100)
        assert {memory["user_id"] for memory in found} == {"ada"}
        assert {memory["namespace"] for memory in found} == {None}


def test_summarized_memories_are_hidden_unless_asked(m, scoped):
    assert scoped["hidden"] not in ids(m.retrieve("ada", thread_id="t1"))
    assert scoped["hidden"] in ids(m.retrieve("ada", thread_id="t1", include_summarized=True))


def test_retrieve_needs_a_user_and_top_k_0_answers_nothing(m):
    with pytest.raises(TypeError):
        m.retrieve(thread_id="t1")
    assert m.retrieve("ada", top_k=0) == []


# --- retrieve: the exact top-k -------------------------------------------------------------


def many_memories(count: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append(
            {
                "user_id": rng.choice(["ada", "ada", "bob"]),
                "namespace": rng.choice([None, None, "work"]),
                "thread_id": rng.choice(["t1", "t2", "t3", "t4", None]),
                "content": f"memory {i}",
                "score": rng.choice([10, 50, 50, 90]),
                "metadata": {
                    "topic": rng.choice(["travel", "food", "work"]),
                    "mood": rng.choice(["ok", "bad"]),
                },
                "summarized": rng.random() < 0.1,
                "related_threads": rng.choice([[], [], ["t2"]]),
                **ago(days=rng.choice([0, 1, 10, 59, 61]), seconds=rng.choice([0, 1])),
            }
        )
        rows[-1]["created_at"] = NOW - dt.timedelta(hours=rng.choice([0, 5, 48]))
    return rows


def test_retrieve_is_the_exact_top_k_of_a_brute_force_reference(m):
    m.db.insert_memories(many_memories(4000))
    everything = m.db.get_memories(limit=None)
    visible = lambda memory: memory["user_id"] == "ada" and memory["namespace"] is None  # noqa: E731
    shown = lambda memory: visible(memory) and not memory["summarized"]  # noqa: E731
    travel_threads = {x["thread_id"] for x in everything if visible(x) and matches(x, {"topic": "travel"})}
    travel_threads.discard(None)

    def in_topic(memory):
        related = memory["thread_id"] in travel_threads or set(memory["related_threads"]) & travel_threads
        return related or matches(memory, {"topic": "travel"})

    cases = [
        ({"thread_id": "t1"}, lambda x: shown(x) and x["thread_id"] == "t1", "t1"),
        ({}, shown, None),
        ({"scope": "user", "thread_id": "t2"}, shown, "t2"),
        (
            {"scope": "user", "metadata_filter": {"mood": "bad"}},
            lambda x: shown(x) and matches(x, {"mood": "bad"}),
            None,
        ),
        (
            {"scope": "topic", "thread_id": "t3", "metadata_filter": {"topic": "travel", "mood": "ok"}},
            lambda x: shown(x) and in_topic(x) and matches(x, {"mood": "ok"}),
            "t3",
        ),
        ({"scope": "user", "include_summarized": True}, visible, None),
    ]
    for options, keep, bonus in cases:
        for top_k in (1, 10, 300):
            got = m.retrieve("ada", top_k=top_k, **options)
            expected = reference_ranking(
                everything, m.formula, NOW, bonus_thread_id=bonus, keep=keep, top_k=top_k
            )
            assert [(x["id"], x["_score"]) for x in got] == expected, (options, top_k)


# --- policies, clusters, stats through the facade ------------------------------------------


def test_stats(m, scoped):
    m.rebuild_clusters()
    stats = m.stats()
    assert stats == {
        "total": 9,
        "by_tier": {"short_term": 9, "mid_term": 0, "long_term": 0},
        "summarized": 1,
        "users": 2,
        "threads": 5,
        "clusters": 4,
        "dialect": m.db.dialect,
        "schema_version": m.migrations.names()[-1],
    }
    ada = m.stats("ada")
    assert (ada["total"], ada["users"], ada["threads"], ada["clusters"]) == (8, 1, 4, 3)


def test_policies_and_clusters_through_the_facade(m):
    m.db.insert_memories(
        [
            {"user_id": "ada", "thread_id": "t", "content": f"fact {i}.", "tier": "mid_term", **ago(days=40)}
            for i in range(10)
        ]
    )
    assert m.run_policies(dry_run=True) == {
        "migrated": {"short_term": 0, "mid_term": 10},
        "trimmed": 0,
        "summarized": 10,
        "summaries_created": 1,
    }
    assert m.run_policies()["summaries_created"] == 1
    assert m.run_policies(user_id="ada")["summaries_created"] == 0
    assert m.rebuild_clusters("ada") == 1
    (cluster,) = m.get_clusters("ada")
    assert cluster["memory_count"] == 10
    assert m.get_clusters(topic="elsewhere") == []
