"""memoric on a Citus cluster in use: a worker down, calls across users, ids never shared,
imports at once, and rolling 007 back beside an agent.

The cluster is a coordinator and two workers the suite starts (see conftest.py); each test has a
database of its own on every node. Without Citus these tests are deselected (one line says so).
"""

from __future__ import annotations

import io
import json
import threading

import pytest

from memoric import Memoric
from memoric.errors import MemoricError
from memoric.transfer import export_memoric, import_jsonl
from tests.helpers.chain import HEAD, POSTINGS
from tests.helpers.citus import (
    FROM_007,
    assert_distributed,
    rows,
    seeded,
)
from tests.helpers.reference import NOW

pytestmark = pytest.mark.citus


# --- a worker restarted mid-run ----------------------------------------------------------------


def worker_of(memoric: Memoric, user_id: str) -> str:
    """The socket directory of the worker holding `user_id`'s shard of the memories."""
    sql = (
        "SELECT nodename FROM citus_shards WHERE table_name = 'memories'::regclass "
        "AND shardid = get_shard_id_for_distribution_column('memories', %s)"
    )
    return rows(memoric, sql, (user_id,))[0][0]


def test_a_worker_down_fails_its_users_clearly_and_loses_nothing(citus, new_citus_url):
    memoric = Memoric(new_citus_url())
    memoric.migrate()
    users = [f"user{n}" for n in range(16)]
    down_node = citus.worker_urls[0].rsplit("host=", 1)[1]
    on_down = {user for user in users if worker_of(memoric, user) == down_node}
    assert on_down and on_down != set(users), "both workers hold some of the users"
    saved = {user: [memoric.save(user, "before")] for user in users}
    citus.stop_worker(0)
    try:
        failed = set()
        for user in users:
            try:
                saved[user].append(memoric.save(user, "while a worker is down"))
            except MemoricError as exc:
                assert f"connection to the remote node postgres@{down_node}:" in str(exc)
                failed.add(user)
        assert failed == on_down, "exactly the users of the stopped worker fail"
        live = sorted(set(users) - on_down)[0]
        assert [m["id"] for m in memoric.retrieve(live, scope="user")] == sorted(saved[live], reverse=True)
        with pytest.raises(MemoricError):
            memoric.stats()  # every shard: the stopped worker's too
    finally:
        citus.start_worker(0)
    for user in users:
        saved[user].append(memoric.save(user, "after"))
    for user in users:
        assert sorted(m["id"] for m in memoric.retrieve(user, scope="user", top_k=10)) == sorted(saved[user])
    assert memoric.stats()["total"] == sum(map(len, saved.values()))
    memoric.close()


def everything(memoric: Memoric) -> dict:
    """What the calls across users answer: stats, policies, clusters, every memory, the export."""
    out = io.StringIO()
    answers = {"policies": memoric.run_policies(), "clusters built": memoric.rebuild_clusters()}
    export_memoric(memoric, out)
    return {
        **answers,
        "stats": memoric.stats(),
        "clusters": memoric.get_clusters(limit=1000),
        "memories": memoric.db.get_memories(limit=None),
        "by tier": memoric.db.count_by_tier(),
        "threads": memoric.db.distinct_threads(),
        "old": memoric.db.find_older_than(days=10),
        "export": [json.loads(line) for line in out.getvalue().splitlines()[1:]],  # after the header
    }


def test_calls_across_users_answer_as_on_plain_postgresql(new_citus_url, new_postgres_url):
    plain, distributed = seeded(new_postgres_url()), seeded(new_citus_url())
    assert everything(distributed) == everything(plain)
    plain.close()
    distributed.close()


def test_two_users_memories_never_share_an_id(new_citus_url):
    """A key of (id, user_id) would let another user's row take an id given explicitly; every
    write that gives ids refuses it, as the key on one server does, and leaves one row."""
    memoric = Memoric(new_citus_url())
    memoric.migrate()
    store = memoric.db
    store.insert_memories([{"id": 7, "user_id": "ada", "content": "ada's"}])
    duplicate = 'duplicate key value violates unique constraint "memories_pkey"'
    with pytest.raises(MemoricError, match=duplicate):
        store.insert_memories([{"id": 7, "user_id": "bob", "content": "bob's"}])
    with pytest.raises(MemoricError, match=duplicate):
        store.insert_memory(id=7, user_id="bob", content="bob's")
    with pytest.raises(MemoricError, match="id 9 is given twice in one call"):  # refused before any write
        store.insert_memories([{"id": 9, "user_id": user, "content": f"{user}'s"} for user in ("ada", "bob")])
    assert [(m["id"], m["user_id"]) for m in store.get_memories(limit=None)] == [(7, "ada")]


def test_a_store_opened_before_the_tables_were_distributed_still_refuses_a_taken_id(new_citus_url):
    """What a store remembers of the layout from before another process distributed the tables
    (the move in place) never lets a given id through twice."""
    url = new_citus_url()
    agent = Memoric(url)
    agent.migrate(POSTINGS)
    agent.migrations.stamp(HEAD)  # plain tables with Citus installed
    taken = agent.save("ada", "ada's")  # the agent's store now knows the tables as plain
    deploy = Memoric(url)
    assert deploy.migrations.downgrade(POSTINGS) == list(reversed(FROM_007))
    assert deploy.migrations.upgrade() == FROM_007
    assert_distributed(deploy)
    duplicate = 'duplicate key value violates unique constraint "memories_pkey"'
    with pytest.raises(MemoricError, match=duplicate):
        agent.db.insert_memories([{"id": taken, "user_id": "bob", "content": "bob's"}])
    with pytest.raises(MemoricError, match=duplicate):
        agent.db.insert_memory(id=taken, user_id="cyd", content="cyd's")
    assert [(m["id"], m["user_id"]) for m in deploy.db.get_memories(limit=None)] == [(taken, "ada")]
    agent.close()
    deploy.close()


def export_of_users(user: str, ids: range) -> str:
    """An export holding one memory of `user` under each of `ids`."""
    header = {"type": "header", "format": "memoric-export", "format_version": 1}
    memory = {"type": "memory", "user_id": user, "created_at": NOW.isoformat()}
    lines = [header] + [{**memory, "id": n, "content": f"{user} {n}"} for n in ids]
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_two_imports_at_once_of_the_same_ids_for_other_users_leave_each_id_once(new_citus_url):
    """Both imports check the target before either writes; the lock taken by writes that give ids
    makes the second see the first's rows, so it stops instead of adding a second row per id."""
    url = new_citus_url()
    Memoric(url).migrate()
    ids = range(500_001, 503_001)
    outcomes = {}
    barrier = threading.Barrier(2)

    def run(user: str) -> None:
        memoric = Memoric(url)
        barrier.wait()
        try:
            outcomes[user] = import_jsonl(memoric.db, io.StringIO(export_of_users(user, ids)))
        except MemoricError as exc:
            outcomes[user] = exc
        finally:
            memoric.close()

    threads = [threading.Thread(target=run, args=(user,)) for user in ("imp-a", "imp-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    memoric = Memoric(url)
    shared = rows(memoric, 'SELECT "id" FROM "memories" GROUP BY "id" HAVING count(*) > 1')
    assert shared == []
    assert sum(isinstance(outcome, MemoricError) for outcome in outcomes.values()) >= 1, outcomes


@pytest.mark.parametrize("distributed", [False, True], ids=["plain tables", "distributed tables"])
def test_rolling_007_back_while_an_agent_saves_makes_the_saves_wait(new_citus_url, distributed):
    """The rollback locks the tables in the order a save writes them: a save waits for it
    instead of dying in a deadlock, and every save is kept."""
    url = new_citus_url()
    memoric = Memoric(url)
    memoric.migrate(POSTINGS)
    if distributed:
        memoric.migrate()
    else:
        memoric.migrations.stamp(HEAD)  # plain tables with Citus installed: the move in place
    for n in range(200):
        memoric.save(f"user{n % 4}", f"before {n}")
    failures, saved = [], []
    started, stop, saved_after = threading.Event(), threading.Event(), threading.Event()
    rolled_back_at = []  # how many saves had been made when the rollback ended

    def agent() -> None:
        writer = Memoric(url)
        n = 0
        while not stop.is_set():
            try:
                saved.append(writer.save(f"user{n % 4}", f"during {n}"))
            except MemoricError as exc:
                failures.append(exc)
            started.set()
            if rolled_back_at and len(saved) > rolled_back_at[0] + 3:
                saved_after.set()
            n += 1
        writer.close()

    thread = threading.Thread(target=agent)
    thread.start()
    try:
        assert started.wait(60)
        assert memoric.migrations.downgrade(POSTINGS) == list(reversed(FROM_007))
        rolled_back_at.append(len(saved))
        assert saved_after.wait(60)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    stored = {m["id"] for m in memoric.db.get_memories(limit=None)}
    assert set(saved) <= stored
    memoric.close()
