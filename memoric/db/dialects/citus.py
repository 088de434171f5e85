"""Citus (distributed PostgreSQL): what a database with the `citus` extension needs beyond PostgreSQL.

A database is on Citus when the extension is installed in it (`CREATE EXTENSION citus`, the
operator's explicit choice for that database). There memoric's two tables are distributed by
`user_id` and co-located, so every per-user statement is routed to the one shard holding the
user; Citus requires every primary and unique key to contain that column, so the keys become
(id, user_id): id first, so a lookup by id alone is still served by the key's index on each shard.
This is what migration 007 does to a database built through the chain; `distribute` does the same
to one built from the models.
"""

from __future__ import annotations

import re

import peewee

CITUS_INSTALLED = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
DISTRIBUTED = "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = %s::regclass)"
PRIMARY_KEY = "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'"
ID_COLUMNS = {"memories": "id", "memory_clusters": "cluster_id"}
# Citus's functions that change tables though called by a SELECT: a `--sql` preview shows them.
TABLE_FUNCTIONS = re.compile(
    r"^\s*SELECT\s+(create_distributed_table|undistribute_table|alter_distributed_table)\s*\(", re.IGNORECASE
)


def installed(database: peewee.Database) -> bool:
    """Whether the Citus extension is installed in this database."""
    return database.execute_sql(CITUS_INSTALLED).fetchone()[0]


def distributed(database: peewee.Database, table: str) -> bool:
    """Whether `table` is a Citus distributed table."""
    return database.execute_sql(DISTRIBUTED, (f'"{table}"',)).fetchone()[0]


def distribute(database: peewee.Database) -> None:
    """Key both tables with user_id, then distribute them by it, the clusters beside the memories."""
    for table, column in ID_COLUMNS.items():
        if not distributed(database, table):
            (name,) = database.execute_sql(PRIMARY_KEY, (f'"{table}"',)).fetchone()
            database.execute_sql(
                f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}", '
                f'ADD CONSTRAINT "{name}" PRIMARY KEY ("{column}", "user_id")'
            )
    if not distributed(database, "memories"):
        database.execute_sql("SELECT create_distributed_table('memories', 'user_id')")
    if not distributed(database, "memory_clusters"):
        database.execute_sql(
            "SELECT create_distributed_table('memory_clusters', 'user_id', colocate_with => 'memories')"
        )


def changes_tables(sql: str) -> bool:
    """Whether `sql`, a SELECT, calls one of Citus's functions that change tables."""
    return bool(TABLE_FUNCTIONS.match(sql))
