"""008: on PostgreSQL, a GIN index of each memory's metadata under its user's id.

The index is of `{user_id: metadata}` (`jsonb_set('{}', ARRAY[user_id], metadata)`) with
`jsonb_path_ops`, which hashes every value with the whole path leading to it: the path now starts
with the user, so a filter within one user finds that user's holders of a value alone, where the
metadata GIN index finds everyone's and leaves the user's rows to be picked out of them (at 1M
memories, 1.3 ms to build the bitmap of one user's 10,000 rows for a value nobody holds).

Building it reads every memory: about 4 s for 1M memories, during which writes to `memories`
wait (reads do not). An index of that name that is not this one, or is invalid, is refused
(the upgrade is undone): adopting it would leave the filters without their index. SQLite needs
nothing: its metadata keys table holds the user already. The rollback drops the index from
`memories`, never another table's index of that name.
"""

import re

import peewee as pw

from memoric.errors import MigrationError

NAME = "idx_memories_user_metadata_gin"
DEFINITION = ("(jsonb_set('{}'::jsonb, ARRAY[CAST(user_id AS text)], metadata))", "jsonb_path_ops")
CREATE = f'CREATE INDEX IF NOT EXISTS "{NAME}" ON "memories" USING GIN ({DEFINITION[0]} {DEFINITION[1]})'
DROP = f'DROP INDEX IF EXISTS "{NAME}"'
# How PostgreSQL prints the index's key and operator class (pg_get_indexdef; some versions show
# jsonb_set's default fourth argument).
KEY = re.compile(
    r"USING gin \(jsonb_set\('\{\}'::jsonb, ARRAY\[\(user_id\)::text\], metadata(, true)?\) jsonb_path_ops\)$"
)
FOUND = (
    "SELECT coalesce(pg_get_indexdef(name.oid), 'a ' || CASE name.relkind WHEN 'r' THEN 'table' "
    "WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' "
    "ELSE 'relation' END), index.indrelid = to_regclass('memories'), coalesce(index.indisvalid, false) "
    "FROM pg_class AS name LEFT JOIN pg_index AS index ON index.indexrelid = name.oid "
    "JOIN pg_namespace AS schema ON schema.oid = name.relnamespace "
    "WHERE name.relname = %s AND schema.nspname = current_schema()"
)


def _found(database) -> tuple[str, bool, bool] | None:
    """(definition, whether on `memories`, whether valid) of the index holding NAME, or None;
    for a table, view or sequence of that name, its kind and two falses (it is refused)."""
    return database.execute_sql(FOUND, (NAME,)).fetchone()


def _create(database) -> None:
    """The index, unless one holds its name: kept when it is this one (on another table, the
    adoption guard's copy of `memories` set aside, left as 001 leaves its own), else refused."""
    found = _found(database)
    if found is None:
        database.execute_sql(CREATE)
        return
    definition, on_memories, valid = found
    if not KEY.search(definition):
        raise MigrationError(
            f"a relation named {NAME} already exists and is not the index 008 creates: {definition} "
            "(drop or rename it, then upgrade)"
        )
    if on_memories and not valid:
        raise MigrationError(
            f"the index {NAME} exists but is invalid (a failed CREATE INDEX CONCURRENTLY leaves one): "
            "drop it, then upgrade"
        )


def _drop(database) -> None:
    """The index, when `memories` has it (never another table's index of that name)."""
    found = _found(database)
    if found is not None and found[1]:
        database.execute_sql(DROP)


def migrate(migrator, database, *, fake=False):
    """PostgreSQL: the per-user metadata GIN index (recorded in the snapshot on both dialects)."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.run(_create, database)
    migrator.orm["memories"]._meta.gin_indexes[NAME] = DEFINITION


def rollback(migrator, database, *, fake=False):
    """PostgreSQL: the index dropped."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.run(_drop, database)
    migrator.orm["memories"]._meta.gin_indexes.pop(NAME, None)
