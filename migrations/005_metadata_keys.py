"""005: an index for metadata filters on SQLite, what PostgreSQL's GIN index is there.

`memory_metadata_keys` holds one row per (name, value) key of each memory's metadata: every
scalar with the name of the member it sits under (a scalar in an array takes the array's name),
numbers as doubles, true/false/null as one-byte blobs, with the memory's user and id. Three
triggers keep it in the same transaction as every write to `memories`. The upgrade posts the
keys of the memories already there, BUILD_BATCH memories per statement, then adds the triggers (each
step kept when there already, as in a schema built from the models); the
rollback drops the triggers and the table (the memories keep everything: nothing to confirm).

PostgreSQL needs nothing: its GIN index serves metadata filters.
"""

import peewee as pw

TABLE = "memory_metadata_keys"
TRIGGERS = ("memories_keys_insert", "memories_keys_update", "memories_keys_delete")
BUILD_BATCH = 20_000


def _scalar(alias: str) -> str:
    return (
        f"CASE {alias}.type WHEN 'integer' THEN CAST({alias}.atom AS REAL) "
        f"WHEN 'true' THEN x'01' WHEN 'false' THEN x'02' WHEN 'null' THEN x'00' ELSE {alias}.atom END"
    )


def _keys_of(document: str, owner: str, source: str = "", where: str = "") -> str:
    """SELECT of the key rows of `document`, each with the `owner` columns, optionally from `source`."""
    return (
        f"SELECT leaf.key, {_scalar('leaf')}{owner} FROM {source}json_tree({document}) AS leaf "
        f"WHERE {where}leaf.type NOT IN ('object', 'array') AND typeof(leaf.key) = 'text' "
        f"UNION ALL SELECT node.key, {_scalar('item')}{owner} "
        f"FROM {source}json_tree({document}) AS node, json_each(node.value) AS item "
        f"WHERE {where}node.type = 'array' AND typeof(node.key) = 'text' "
        "AND item.type NOT IN ('object', 'array')"
    )


def _posted(row: str) -> str:
    return _keys_of(f"{row}.metadata", f", {row}.user_id, {row}.id")


def _remove(row: str) -> str:
    return f"DELETE FROM {TABLE} WHERE (name, value, user_id, memory_id) IN ({_posted(row)});"


def _add(row: str) -> str:
    return f"INSERT OR IGNORE INTO {TABLE} (name, value, user_id, memory_id) {_posted(row)};"


CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT NOT NULL, value NOT NULL, user_id TEXT NOT NULL, "
    "memory_id INTEGER NOT NULL, PRIMARY KEY (name, value, user_id, memory_id)) WITHOUT ROWID"
)
CREATE_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS memories_keys_insert AFTER INSERT ON memories BEGIN {_add('NEW')} END",
    "CREATE TRIGGER IF NOT EXISTS memories_keys_update AFTER UPDATE ON memories "
    "WHEN OLD.metadata IS NOT NEW.metadata OR OLD.user_id IS NOT NEW.user_id OR OLD.id IS NOT NEW.id "
    f"BEGIN {_remove('OLD')} {_add('NEW')} END",
    f"CREATE TRIGGER IF NOT EXISTS memories_keys_delete AFTER DELETE ON memories BEGIN {_remove('OLD')} END",
)
# The id ending the next batch of memories after an id (ids may be far apart: walked, not counted).
BATCH_END = "SELECT max(id) FROM (SELECT id FROM memories WHERE id > ? ORDER BY id LIMIT ?)"
BUILD = f"INSERT OR IGNORE INTO {TABLE} " + _keys_of(
    "m.metadata", ", m.user_id, m.id", "memories AS m, ", "m.id > ? AND m.id <= ? AND "
)


def _create(database) -> None:
    """The table, the keys of every memory (BUILD_BATCH memories at a time), then the triggers."""
    database.execute_sql(CREATE_TABLE)
    start = -(2**63)
    while True:
        (end,) = database.execute_sql(BATCH_END, (start, BUILD_BATCH)).fetchone()
        if end is None:
            break
        database.execute_sql(BUILD, (start, end, start, end))
        start = end
    for statement in CREATE_TRIGGERS:
        database.execute_sql(statement)


def _drop(database) -> None:
    for trigger in TRIGGERS:
        database.execute_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    database.execute_sql(f"DROP TABLE IF EXISTS {TABLE}")


def migrate(migrator, database, *, fake=False):
    """SQLite: the metadata keys table, built for the memories there, and its triggers."""
    if isinstance(database, pw.SqliteDatabase):
        migrator.run(_create, database)


def rollback(migrator, database, *, fake=False):
    """SQLite: the triggers and the keys table dropped."""
    if isinstance(database, pw.SqliteDatabase):
        migrator.run(_drop, database)
