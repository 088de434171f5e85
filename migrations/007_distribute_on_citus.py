"""007: on Citus, memoric's tables distributed by `user_id`, co-located with `memories`.

Citus (distributed PostgreSQL) spreads a distributed table's rows over shards on its worker
nodes by one column. Every per-user call filters on `user_id`, so with `memories`,
`memory_clusters` and the text postings (`memory_terms`, `memory_documents`) distributed on it,
and co-located (a user's memories, clusters and postings on the same shard), such a call is
routed to one shard. Citus requires every primary and unique key to contain the distribution
column: `user_id` is appended to each primary key, which becomes (`id`, `user_id`),
(`cluster_id`, `user_id`), (`memory_id`, `term`, `user_id`) and (`memory_id`, `user_id`), the
old columns first so a lookup by them alone is still served by the key's index on every shard;
`idx_cluster_unique` already leads with `user_id`. Every index, the GIN ones included, is created
on every shard by `create_distributed_table`, and the migration history stays a local table on
the coordinator. Ids still come from the coordinator's sequences, so they stay unique across users.

The step runs only where the `citus` extension is installed in the database being migrated
(`pg_extension`): installing it (`CREATE EXTENSION citus`) is the operator's explicit choice for
that database, whereas a server merely preloading the library may hold plain databases too, and
a database without the extension cannot call Citus's functions at all. On plain PostgreSQL and
on SQLite this step does nothing. Run it on the coordinator.

The rollback turns every table back into a plain table on the coordinator (`undistribute_table`
copies every row back), the id sequences back into local ones, and the primary keys back to
their columns without `user_id`.
"""

import peewee as pw

# Each table's primary key without user_id, the memories first (the others are placed beside them).
PRIMARY_KEYS = {
    "memories": ("id",),
    "memory_clusters": ("cluster_id",),
    "memory_terms": ("memory_id", "term"),
    "memory_documents": ("memory_id",),
}
# The tables whose ids a sequence hands out, and their id columns.
ID_COLUMNS = {"memories": "id", "memory_clusters": "cluster_id"}
CITUS_INSTALLED = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
DISTRIBUTED = "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = %s::regclass)"
UNMARK_SEQUENCE = (
    "SELECT citus_unmark_object_distributed("
    "'pg_class'::regclass, pg_get_serial_sequence(%s, %s)::regclass, 0, false)"
)
PRIMARY_KEY = "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'"
KEY_COLUMNS = (
    "SELECT array_agg(attname::text ORDER BY n) "
    "FROM pg_constraint, unnest(conkey) WITH ORDINALITY AS k(num, n), pg_attribute "
    "WHERE pg_constraint.conrelid = %s::regclass AND contype = 'p' "
    "AND attrelid = pg_constraint.conrelid AND attnum = k.num"
)
# A save writes the memory, then its document row, then its terms: the rollback locks them so too.
LOCK_ORDER = '"memories", "memory_documents", "memory_terms", "memory_clusters"'


def _on_citus(database) -> bool:
    """Whether the Citus extension is installed in this database."""
    return database.execute_sql(CITUS_INSTALLED).fetchone()[0]


def _distributed(database, table: str) -> bool:
    """Whether `table` is a Citus distributed table."""
    return database.execute_sql(DISTRIBUTED, (f'"{table}"',)).fetchone()[0]


def _set_primary_key(database, table: str, columns: tuple[str, ...]) -> None:
    """Make `columns` the primary key of `table`, under the name its key has now (unless they are)."""
    if tuple(database.execute_sql(KEY_COLUMNS, (f'"{table}"',)).fetchone()[0]) == columns:
        return
    (name,) = database.execute_sql(PRIMARY_KEY, (f'"{table}"',)).fetchone()
    listed = ", ".join(f'"{column}"' for column in columns)
    database.execute_sql(
        f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}", ADD CONSTRAINT "{name}" PRIMARY KEY ({listed})'
    )


def _distribute(database) -> None:
    """Citus: keys with user_id, then every table distributed by it, beside the memories."""
    if not _on_citus(database):
        return
    for table, columns in PRIMARY_KEYS.items():
        if not _distributed(database, table):
            _set_primary_key(database, table, (*columns, "user_id"))
    if not _distributed(database, "memories"):
        database.execute_sql("SELECT create_distributed_table('memories', 'user_id')")
    for table in list(PRIMARY_KEYS)[1:]:
        if not _distributed(database, table):
            database.execute_sql(
                f"SELECT create_distributed_table('{table}', 'user_id', colocate_with => 'memories')"
            )


def _undistribute(database) -> None:
    """Citus: every table back on the coordinator alone, keyed without user_id.

    `undistribute_table` leaves an id sequence recorded as a distributed object, which Citus
    refuses to alter (004's rollback narrows it): the record is removed, as for a local table.
    The tables are locked first, in the order a save writes them, so saves wait for the rollback
    instead of deadlocking with it.
    """
    if not _on_citus(database):
        return
    database.execute_sql(f"LOCK TABLE {LOCK_ORDER} IN ACCESS EXCLUSIVE MODE")
    for table, columns in reversed(PRIMARY_KEYS.items()):
        if _distributed(database, table):
            database.execute_sql("SELECT undistribute_table(%s)", (table,))
            if table in ID_COLUMNS:
                database.execute_sql(UNMARK_SEQUENCE, (f'"{table}"', ID_COLUMNS[table]))
        _set_primary_key(database, table, columns)


def migrate(migrator, database, *, fake=False):
    """Citus: distribute every table by user_id, co-located; elsewhere nothing."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.run(_distribute, database)


def rollback(migrator, database, *, fake=False):
    """Citus: every table back to a plain table keyed without user_id; elsewhere nothing."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.run(_undistribute, database)
