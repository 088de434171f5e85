"""Outgrowing SQLite: pooled connections (`+pool` URLs) and a schema that shards by user_id."""

from __future__ import annotations

import io

import psycopg2
from click.testing import CliRunner
from playhouse.pool import PooledDatabase

from memoric import Memoric
from memoric.cli import main
from memoric.errors import MemoricError
from memoric.transfer import export_memoric, import_jsonl
from tests.helpers.chain import HEAD
from tests.helpers.concurrency import WRITERS, assert_every_write_landed, run_in_threads, save_as_writer
from tests.helpers.dialects import requires_postgres


def pooled(dsn: str, **options) -> str:
    """`dsn` with `+pool` added to its scheme and `options` to its query string."""
    scheme, rest = dsn.split("://", 1)
    query = "&".join(f"{key}={value}" for key, value in options.items())
    separator = "&" if "?" in rest else "?"
    return f"{scheme}+pool://{rest}{separator}{query}" if query else f"{scheme}+pool://{rest}"


def test_eight_threads_share_a_pool_of_four_connections(new_dsn):
    memoric = Memoric(pooled(new_dsn(), max_connections=4))
    assert isinstance(memoric.db.database, PooledDatabase)
    memoric.ensure_schema()
    memoric.close()

    def write(writer):
        try:
            save_as_writer(memoric, writer)
        finally:
            memoric.close()

    assert run_in_threads(WRITERS, write) == []
    assert_every_write_landed(memoric.db)
    assert memoric.migrations.current() == HEAD


def test_an_exhausted_pool_fails_with_a_memoric_error_after_its_timeout(new_dsn):
    memoric = Memoric(pooled(new_dsn(), max_connections=1, timeout=1))
    memoric.save("ada", "holds the only connection")
    errors = run_in_threads(1, lambda _: memoric.save("bob", "finds none free"))
    assert len(errors) == 1 and isinstance(errors[0], MemoricError)
    assert "connection pool exhausted: all 1 connections in use" in str(errors[0])
    memoric.close()
    assert run_in_threads(1, lambda _: (memoric.save("bob", "now there is one"), memoric.close())) == []
    assert memoric.stats()["total"] == 2


def test_the_cli_takes_a_pooled_url(new_dsn):
    dsn = pooled(new_dsn())
    Memoric(dsn).save("ada", "through a pool")
    result = CliRunner().invoke(main, ["--dsn", dsn, "stats", "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    assert '"total": 1' in result.stdout


def terminate_backends(dsn: str) -> int:
    """Kill every other session on the database of `dsn` (a server restart, as clients see it),
    waiting until each has ended: a write sent before its backend exits is honestly in doubt."""
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    cursor = admin.cursor()
    cursor.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    killed = cursor.fetchone()[0]
    admin.close()
    return killed


@requires_postgres
def test_a_pool_recovers_when_the_server_drops_its_connections(new_postgres_url):
    dsn = new_postgres_url()
    memoric = Memoric(pooled(dsn, max_connections=8))
    memoric.save("ada", "before")
    assert run_in_threads(4, lambda _: (memoric.save("bob", "idle afterwards"), memoric.close())) == []
    assert terminate_backends(dsn) >= 2
    memoric.save("ada", "on the dropped connection")  # its end is noticed first: a new connection
    memoric.save("ada", "after")
    assert run_in_threads(4, lambda _: (memoric.save("bob", "from the pool"), memoric.close())) == []
    assert memoric.stats()["total"] == 11


# --- a schema that distributes by user_id (Citus and similar) ----------------------------------

PER_USER_INDEXES = {
    "memories": [
        "idx_memories_user_thread",
        "idx_memories_user_tier",
        "idx_memories_user_tier_updated",
        "idx_memories_user_created",
    ],
    "memory_clusters": ["idx_cluster_unique", "idx_cluster_user"],
}


def test_every_per_user_index_leads_with_user_id(new_dsn):
    memoric = Memoric(new_dsn())
    memoric.ensure_schema()
    for table, names in PER_USER_INDEXES.items():
        indexes = {index.name: index for index in memoric.db.database.get_indexes(table)}
        for name in names:
            assert indexes[name].columns[0] == "user_id", (table, name, indexes[name].columns)
        leading_with_user_id = {name for name, index in indexes.items() if index.columns[0] == "user_id"}
        assert leading_with_user_id == set(names), table
    unique = [index.name for index in memoric.db.database.get_indexes("memory_clusters") if index.unique]
    assert "idx_cluster_unique" in unique


@requires_postgres
def test_the_engine_runs_unchanged_with_user_id_in_every_primary_key(new_postgres_url):
    """The key change a user_id-distributed table needs: (user_id, id) as the primary key."""
    memoric = Memoric(new_postgres_url(), config={"summarization": {"min_records": 3}})
    memoric.ensure_schema()
    database = memoric.db.database
    database.execute_sql(
        'ALTER TABLE "memories" DROP CONSTRAINT "memories_pkey", ADD PRIMARY KEY ("user_id", "id")'
    )
    database.execute_sql(
        'ALTER TABLE "memory_clusters" DROP CONSTRAINT "memory_clusters_pkey", '
        'ADD PRIMARY KEY ("user_id", "cluster_id")'
    )
    for user in ("ada", "bob"):
        for n in range(4):
            memoric.save(user, f"{user} fact {n}.", thread_id="t1", tier="long_term", metadata={"topic": "x"})
    assert [m["user_id"] for m in memoric.retrieve("ada", scope="user")] == ["ada"] * 4
    assert memoric.run_policies()["summaries_created"] == 2
    assert memoric.rebuild_clusters() == 2
    assert memoric.rebuild_clusters("ada") == 1
    out = io.StringIO()
    export_memoric(memoric, out)
    assert import_jsonl(memoric.db, io.StringIO(out.getvalue()))["skipped"] == 12
    assert memoric.stats()["total"] == 10
