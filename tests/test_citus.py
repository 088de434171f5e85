"""memoric on Citus: the schema distributed by migration 007, per-user calls routed to one shard.

The cluster is a coordinator and two workers the suite starts (see conftest.py); each test has a
database of its own on every node. Without Citus these tests are deselected (one line says so);
the tests that prove 007 changes nothing on SQLite and plain PostgreSQL run on both dialects.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import threading

import pytest

from memoric import Memoric
from memoric.db.models import GIN_INDEXES
from memoric.errors import MemoricError
from memoric.migrate import HISTORY_TABLE
from memoric.transfer import export_memoric, import_jsonl
from tests.helpers.chain import DISTRIBUTE, HEAD, MEMORIC_TABLES, POSTINGS, SHIPPED, schema, sent_statements
from tests.helpers.dialects import selected_dialects
from tests.helpers.reference import NOW, Clock

pytestmark = pytest.mark.citus

# Each table's primary key on Citus: its key on plain PostgreSQL, then user_id.
# The migrations from 007 on: what a downgrade to 006 rolls back, and the upgrade after it applies.
FROM_007 = SHIPPED[SHIPPED.index(DISTRIBUTE) :]
DISTRIBUTED_KEYS = {
    "memories": ["id", "user_id"],
    "memory_clusters": ["cluster_id", "user_id"],
    "memory_terms": ["memory_id", "term", "user_id"],
    "memory_documents": ["memory_id", "user_id"],
}
ON_SHARDS = "SELECT result FROM run_command_on_shards(%s, %s)"
PRIMARY_KEY_COLUMNS = """
SELECT array_agg(att.attname ORDER BY key.n)
FROM pg_constraint AS con, unnest(con.conkey) WITH ORDINALITY AS key(attnum, n), pg_attribute AS att
WHERE con.conrelid = %s::regclass AND con.contype = 'p'
  AND att.attrelid = con.conrelid AND att.attnum = key.attnum
"""


def rows(memoric: Memoric, sql: str, params=()) -> list[tuple]:
    return memoric.migrations.store.database.execute_sql(sql, params).fetchall()


def distribution(memoric: Memoric) -> dict[str, tuple]:
    """{table: (distribution column, colocation group)} of the distributed tables."""
    found = rows(
        memoric,
        "SELECT logicalrelid::text, column_to_column_name(logicalrelid, partkey), colocationid "
        "FROM pg_dist_partition",
    )
    return {table: (column, group) for table, column, group in found}


def primary_key(memoric: Memoric, table: str) -> list[str]:
    return rows(memoric, PRIMARY_KEY_COLUMNS, (table,))[0][0]


def per_shard(memoric: Memoric, table: str, command: str) -> list[str]:
    """`command` (with `%s` for the shard's table name) run on every shard of `table`: each result."""
    return [result for (result,) in rows(memoric, ON_SHARDS, (table, command))]


def assert_distributed(memoric: Memoric) -> None:
    """Every table distributed by user_id, co-located, keys holding user_id, indexes on every shard."""
    placed = distribution(memoric)
    assert set(placed) == set(MEMORIC_TABLES), placed
    assert {column for column, _ in placed.values()} == {"user_id"}
    assert len({group for _, group in placed.values()}) == 1, "co-located"
    assert {table: primary_key(memoric, table) for table in MEMORIC_TABLES} == DISTRIBUTED_KEYS
    gin = "SELECT count(*) FROM pg_indexes WHERE tablename = '%s' AND indexdef LIKE '%%USING gin%%'"
    shards = per_shard(memoric, "memories", gin)
    assert len(shards) > 1 and set(shards) == {str(len(GIN_INDEXES))}, shards
    lookup = "SELECT count(*) FROM pg_indexes WHERE tablename = '%s' AND indexname LIKE 'idx_memory_terms%%'"
    assert set(per_shard(memoric, "memory_terms", lookup)) == {"1"}


def postings_rows(memoric: Memoric) -> dict[str, list[tuple]]:
    """Every row of the text postings tables, sorted."""
    tables = ("memory_terms", "memory_documents")
    return {table: sorted(rows(memoric, f'SELECT * FROM "{table}"')) for table in tables}


def test_the_chain_distributes_every_table_by_user_id(new_citus_url):
    memoric = Memoric(new_citus_url())
    memoric.migrate()
    assert_distributed(memoric)
    assert HISTORY_TABLE in memoric.db.database.get_tables(), "the history: a local table on the coordinator"
    assert memoric.migrations.current() == HEAD
    memoric.close()


def test_a_schema_built_from_the_models_is_distributed_the_same(new_citus_url):
    through_chain, from_models = Memoric(new_citus_url()), Memoric(new_citus_url())
    through_chain.migrate()
    from_models.init_db()
    assert_distributed(from_models)
    assert schema(from_models.db) == schema(through_chain.db)
    assert from_models.migrations.current() == HEAD


def test_downgrade_and_upgrade_keep_every_row(new_citus_url):
    memoric = Memoric(new_citus_url(), clock=Clock())
    memoric.migrate()
    ids = [
        memoric.save(user, f"{user} fact {n}", thread_id="t", metadata={"n": n})
        for user in "ab"
        for n in range(3)
    ]
    memoric.rebuild_clusters()
    before = (memoric.db.get_memories(limit=None), memoric.get_clusters(), postings_rows(memoric))
    assert memoric.migrations.downgrade(POSTINGS) == list(reversed(FROM_007))
    assert distribution(memoric) == {}
    assert {table: primary_key(memoric, table) for table in MEMORIC_TABLES} == {
        table: columns[:-1] for table, columns in DISTRIBUTED_KEYS.items()
    }
    assert (memoric.db.get_memories(limit=None), memoric.get_clusters(), postings_rows(memoric)) == before
    assert memoric.migrations.upgrade() == FROM_007
    assert_distributed(memoric)
    assert (memoric.db.get_memories(limit=None), memoric.get_clusters(), postings_rows(memoric)) == before
    assert memoric.save("a", "after") > max(ids)
    memoric.close()


def test_the_sql_preview_shows_the_distribution_and_changes_nothing(new_citus_url):
    memoric = Memoric(new_citus_url())
    memoric.migrate(POSTINGS)
    statements = "\n".join(memoric.migrations.sql("upgrade", "head"))
    assert "SELECT create_distributed_table('memories', 'user_id')" in statements
    assert "colocate_with => 'memories'" in statements
    assert distribution(memoric) == {} and memoric.migrations.current() == POSTINGS
    memoric.migrate()
    down = "\n".join(memoric.migrations.sql("downgrade", POSTINGS))
    assert "SELECT undistribute_table('memory_clusters')" in down
    assert_distributed(memoric)
    memoric.close()


def test_stamping_back_and_upgrading_again_adopts_the_distributed_tables(new_citus_url):
    memoric = Memoric(new_citus_url())
    memoric.migrate()
    memoric.migrations.stamp(POSTINGS)
    assert memoric.migrations.current() == POSTINGS
    assert memoric.migrations.upgrade() == FROM_007
    assert_distributed(memoric)
    memoric.close()


def test_a_database_at_head_before_citus_is_distributed_by_running_007_again(new_citus_url):
    """007 ran as a no-op before Citus was installed: downgrading it and upgrading distributes."""
    memoric = Memoric(new_citus_url())
    memoric.migrate(POSTINGS)
    memoric.migrations.stamp(HEAD)  # what an upgrade on PostgreSQL without Citus leaves
    saved = memoric.save("ada", "kept")
    assert distribution(memoric) == {}
    assert memoric.migrations.downgrade(POSTINGS) == list(reversed(FROM_007))
    assert memoric.migrations.upgrade() == FROM_007
    assert_distributed(memoric)
    assert [m["id"] for m in memoric.retrieve("ada", scope="user")] == [saved]
    memoric.close()


def test_a_bulk_insert_draws_its_ids_from_the_distributed_sequence(new_citus_url):
    """A bulk insert draws its ids before writing (`new_ids`: nextval of the coordinator's
    sequence, which Citus distributed with the table), so its postings can name them."""
    memoric = Memoric(new_citus_url())
    memoric.migrate()
    first = memoric.save("ada", "first tea")
    rows_in = [{"user_id": user, "content": f"{user} tea {n}"} for n in range(5) for user in ("ada", "bob")]
    assert memoric.db.insert_memories(rows_in, batch_size=3) == 10
    last = memoric.save("bob", "last tea")
    ids = sorted(m["id"] for m in memoric.db.get_memories(limit=None))
    assert ids == list(range(first, last + 1)), "each id handed out once, in order"
    documents = rows(memoric, 'SELECT memory_id FROM "memory_documents" ORDER BY 1')
    assert [memory_id for (memory_id,) in documents] == ids
    assert len(memoric.retrieve("bob", query="tea", scope="user", top_k=20)) == 6
    memoric.close()


@pytest.mark.parametrize("plain", selected_dialects())
def test_the_step_changes_nothing_without_citus(plain, tmp_path, request):
    """On SQLite and plain PostgreSQL, 007 leaves the schema as 006 built it, both ways."""
    url = (
        f"sqlite:///{tmp_path / 'plain.db'}"
        if plain == "sqlite"
        else request.getfixturevalue("new_postgres_url")()
    )
    memoric = Memoric(url)
    memoric.migrate(POSTINGS)
    before = schema(memoric.migrations.store)
    assert memoric.migrations.upgrade(DISTRIBUTE) == [DISTRIBUTE]
    assert schema(memoric.migrations.store) == before
    assert memoric.migrations.downgrade(POSTINGS) == [DISTRIBUTE]
    assert schema(memoric.migrations.store) == before
    memoric.close()


# --- routing: every per-user call on one shard ---------------------------------------------------

WRITES_AND_READS = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)


def shard_counts(memoric: Memoric, call) -> list[tuple[str, list[int]]]:
    """Run `call`; each statement it sent that touches a distributed table, with its plan's task
    counts (a 0 for each step Citus runs through the coordinator: a subplan, an INSERT ... SELECT)."""
    database = memoric.db.database
    sent = sent_statements(database, call)
    planned = []
    for sql, params in sent:
        if not WRITES_AND_READS.match(sql):
            continue
        plan = "\n".join(line for (line,) in database.execute_sql(f"EXPLAIN {sql}", params).fetchall())
        if "Citus" in plan:
            tasks = [int(n) for n in re.findall(r"Task Count: (\d+)", plan)]
            through_coordinator = re.findall(r"Distributed Subplan|Citus INSERT \.\.\. SELECT", plan)
            planned.append((sql, tasks + [0] * len(through_coordinator)))
    return planned


def seeded(url: str) -> Memoric:
    """Three users with memories in two threads and topics, half of them old enough for the policies."""
    config = {
        "summarization": {"min_records": 3},
        "tiers": [
            {"name": "short_term", "expire_after_days": 7},
            {"name": "long_term", "trim_chars": 12},
        ],
    }
    clock = Clock(NOW - dt.timedelta(days=30))
    memoric = Memoric(url, config=config, clock=clock)
    memoric.migrate()
    for n in range(6):
        for user in ("ada", "bob", "cyd"):
            topic = {"topic": f"x{n % 2}", "category": "c"}
            memoric.save(user, f"{user} note {n} about tea", thread_id=f"t{n % 2}", metadata=topic)
        clock.advance(days=5)
    return memoric


def test_every_per_user_call_runs_on_one_shard(new_citus_url):
    memoric = seeded(new_citus_url())
    oldest = memoric.db.get_memories(user_id="ada", limit=None)[-1]["id"]
    calls = {
        "save": lambda: memoric.save("ada", "one more", thread_id="t0", metadata={"topic": "x0"}),
        "retrieve query": lambda: memoric.retrieve("ada", query="tea note", scope="user"),
        "retrieve thread": lambda: memoric.retrieve("ada", thread_id="t0"),
        "retrieve topic": lambda: memoric.retrieve(
            "ada", thread_id="t0", scope="topic", metadata_filter={"topic": "x0"}
        ),
        "retrieve user": lambda: memoric.retrieve("ada", scope="user", metadata_filter={"category": "c"}),
        "run_policies": lambda: memoric.run_policies(user_id="ada"),
        "rebuild_clusters": lambda: memoric.rebuild_clusters("ada"),
        "get_clusters": lambda: memoric.get_clusters("ada"),
        "stats": lambda: memoric.stats("ada"),
        "export --user": lambda: export_memoric(memoric, io.StringIO(), user_id="ada"),
        "forget": lambda: memoric.forget("ada", [oldest]),
    }
    spread = {}
    for name, call in calls.items():
        counts = shard_counts(memoric, call)
        assert counts, f"{name}: no statement on a distributed table"
        spread[name] = [(sql, tasks) for sql, tasks in counts if set(tasks) != {1}]
    assert spread == {name: [] for name in calls}
    memoric.close()


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
    with pytest.raises(MemoricError, match=duplicate):
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
