"""008: on PostgreSQL, a GIN index of each memory's metadata under its user's id.

The index is of `{user_id: metadata}` (`jsonb_set('{}', ARRAY[user_id], metadata)`) with
`jsonb_path_ops`, which hashes every value with the whole path leading to it: the path now starts
with the user, so a filter within one user finds that user's holders of a value alone, where the
metadata GIN index finds everyone's and leaves the user's rows to be picked out of them (at 1M
memories, 1.3 ms to build the bitmap of one user's 10,000 rows for a value nobody holds).

Building it reads every memory: about 4 s for 1M memories, during which writes to `memories`
wait (reads do not). SQLite needs nothing: its metadata keys table holds the user already. The
rollback drops the index.
"""

import peewee as pw

NAME = "idx_memories_user_metadata_gin"
DEFINITION = ("(jsonb_set('{}'::jsonb, ARRAY[CAST(user_id AS text)], metadata))", "jsonb_path_ops")
CREATE = f'CREATE INDEX IF NOT EXISTS "{NAME}" ON "memories" USING GIN ({DEFINITION[0]} {DEFINITION[1]})'
DROP = f'DROP INDEX IF EXISTS "{NAME}"'


def migrate(migrator, database, *, fake=False):
    """PostgreSQL: the per-user metadata GIN index (recorded in the snapshot on both dialects)."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql(CREATE)
    migrator.orm["memories"]._meta.gin_indexes[NAME] = DEFINITION


def rollback(migrator, database, *, fake=False):
    """PostgreSQL: the index dropped."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql(DROP)
    migrator.orm["memories"]._meta.gin_indexes.pop(NAME, None)
