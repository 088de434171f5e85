"""memoric on Citus: the schema distributed by migration 007, per-user calls routed to one shard.

The cluster is a coordinator and two workers the suite starts (see conftest.py); each test has a
database of its own on every node. Without Citus these tests are deselected (one line says so);
the tests that prove 007 changes nothing on SQLite and plain PostgreSQL run on both dialects.
"""

from __future__ import annotations

import io
import re

import pytest

from memoric import Memoric
from memoric.migrate import HISTORY_TABLE
from memoric.transfer import export_memoric
from tests.helpers.chain import DISTRIBUTE, HEAD, MEMORIC_TABLES, POSTINGS, schema, sent_statements
from tests.helpers.citus import (
    DISTRIBUTED_KEYS,
    FROM_007,
    assert_distributed,
    distribution,
    postings_rows,
    primary_key,
    rows,
    seeded,
)
from tests.helpers.dialects import selected_dialects
from tests.helpers.reference import Clock

pytestmark = pytest.mark.citus


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
