"""Reading a Citus cluster's state for the tests of it: distribution, keys, shards, a seeded database."""

from __future__ import annotations

import datetime as dt

from memoric import Memoric
from memoric.db.models import GIN_INDEXES
from tests.helpers.chain import DISTRIBUTE, MEMORIC_TABLES, SHIPPED
from tests.helpers.reference import NOW, Clock

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
