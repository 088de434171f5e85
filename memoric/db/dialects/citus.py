"""Citus (distributed PostgreSQL): what a database with the `citus` extension needs beyond PostgreSQL.

A database is on Citus when the extension is installed in it (`CREATE EXTENSION citus`, the
operator's explicit choice for that database). There memoric's tables (the memories, the
clusters and the text postings) are distributed by `user_id` and co-located, so every per-user
statement is routed to the one shard holding the user; Citus requires every primary and unique
key to contain that column, so `user_id` is appended to each primary key: (id, user_id),
(memory_id, term, user_id)... the old columns first, so a lookup by them alone is still served by
the key's index on each shard. This is what migration 007 does to a database built through the
chain; `distribute` does the same to one built from the models.
"""

from __future__ import annotations

import re
import weakref

import peewee

CITUS_INSTALLED = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
DISTRIBUTED = "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = %s::regclass)"
PRIMARY_KEY = "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'"
# Each table's primary key without user_id, the memories first (the others are placed beside them).
PRIMARY_KEYS = {
    "memories": ("id",),
    "memory_clusters": ("cluster_id",),
    "memory_terms": ("memory_id", "term"),
    "memory_documents": ("memory_id",),
}
# The id column of each table whose rows may be written with ids given (an import, a copy, explicit ids).
ID_COLUMNS = {"memories": "id", "memory_clusters": "cluster_id"}
EXPLICIT_IDS_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"
# Citus's functions that change tables though called by a SELECT: a `--sql` preview shows them.
TABLE_FUNCTIONS = re.compile(
    r"^\s*SELECT\s+(create_distributed_table|undistribute_table|alter_distributed_table)\s*\(", re.IGNORECASE
)


# {table: distributed?} of each open Database, asked once (`routed`) until its schema changes.
_LAYOUTS: weakref.WeakKeyDictionary[peewee.Database, dict[str, bool]] = weakref.WeakKeyDictionary()


def installed(database: peewee.Database) -> bool:
    """Whether the Citus extension is installed in this database."""
    return database.execute_sql(CITUS_INSTALLED).fetchone()[0]


def distributed(database: peewee.Database, table: str) -> bool:
    """Whether `table` is a Citus distributed table."""
    return database.execute_sql(DISTRIBUTED, (f'"{table}"',)).fetchone()[0]


def distribute(database: peewee.Database) -> None:
    """Key every table with user_id, then distribute them by it, all beside the memories."""
    for table, columns in PRIMARY_KEYS.items():
        if not distributed(database, table):
            (name,) = database.execute_sql(PRIMARY_KEY, (f'"{table}"',)).fetchone()
            listed = ", ".join(f'"{column}"' for column in (*columns, "user_id"))
            key = f'ADD CONSTRAINT "{name}" PRIMARY KEY ({listed})'
            database.execute_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}", {key}')
    if not distributed(database, "memories"):
        database.execute_sql("SELECT create_distributed_table('memories', 'user_id')")
    for table in list(PRIMARY_KEYS)[1:]:
        if not distributed(database, table):
            database.execute_sql(
                f"SELECT create_distributed_table('{table}', 'user_id', colocate_with => 'memories')"
            )


def distributed_now(database: peewee.Database, table: str) -> bool:
    """Whether `table` is distributed, asked now: a write that gives ids must not trust what
    `routed` remembers from before the tables were distributed by another process."""
    return installed(database) and distributed(database, table)


def routed(database: peewee.Database, table: str) -> bool:
    """Whether `table` is distributed here, so statements naming one user go to one shard.

    Asked once per Database and remembered until `forget_layout` (a migration run or a schema
    build through it); a process that keeps a store open while another distributes the tables
    goes on writing as on plain PostgreSQL, correctly, through the coordinator.
    """
    layout = _LAYOUTS.setdefault(database, {})
    if table not in layout:
        layout[table] = distributed_now(database, table)
    return layout[table]


def taken_ids(
    database: peewee.Database, table: str, columns: list[str], rows: list[tuple]
) -> set[int] | None:
    """The ids given in `rows` that a row of `table` already holds, under any user; None where the
    key refuses taken ids itself (no ids given, or not a distributed table).

    A distributed table's primary key must contain user_id, so (id, user_id) would let two users'
    memories share an id, which no unique index can refuse. Writes that give ids therefore take
    one lock for the table, held to the end of their transaction, and look first: two imports at
    once cannot both pass. Saves draw ids from the sequence and never take it.
    """
    column = ID_COLUMNS.get(table)
    if column not in columns or not distributed_now(database, table):
        return None
    database.execute_sql(EXPLICIT_IDS_LOCK, (f"memoric explicit ids {table}",))
    place = columns.index(column)
    given = [row[place] for row in rows]
    found = database.execute_sql(f'SELECT "{column}" FROM "{table}" WHERE "{column}" = ANY(%s)', (given,))
    return {value for (value,) in found.fetchall()}


def untaken_rows(
    database: peewee.Database, table: str, columns: list[str], rows: list[tuple], skip_existing: bool
) -> list[tuple]:
    """`rows` whose given ids no row holds yet (`taken_ids`); a taken one is a duplicate key error
    as on one server, or, with `skip_existing`, left out as ON CONFLICT DO NOTHING would."""
    taken = taken_ids(database, table, columns, rows)
    if taken is None:
        return rows
    place = columns.index(ID_COLUMNS[table])
    kept = []
    for row in rows:  # an id given twice in `rows` is taken by its first row
        if row[place] not in taken:
            kept.append(row)
        elif not skip_existing:
            raise peewee.IntegrityError(
                f'duplicate key value violates unique constraint "{table}_pkey"\n'
                f"DETAIL:  Key ({ID_COLUMNS[table]})=({row[place]}) already exists."
            )
        taken.add(row[place])
    return kept


def locked_rows(query: peewee.Select, lock: str) -> list[dict]:
    """The rows of `query` locked (`lock`: FOR UPDATE, FOR KEY SHARE), one user at a time in user
    order: Citus locks rows only through a statement routed to one shard."""
    model = query.model
    users = sorted({user for (user,) in query.select(model.user_id).tuples()})
    return [row for user in users for row in query.where(model.user_id == user).for_update(lock).dicts()]


def forget_layout(database: peewee.Database) -> None:
    """Forget what `routed` remembers of `database` (its tables may have been distributed or undone)."""
    _LAYOUTS.pop(database, None)


def changes_tables(sql: str) -> bool:
    """Whether `sql`, a SELECT, calls one of Citus's functions that change tables."""
    return bool(TABLE_FUNCTIONS.match(sql))
