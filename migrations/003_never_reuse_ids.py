"""003: ids are never handed out twice: `memories.id`, `memory_clusters.cluster_id` AUTOINCREMENT on SQLite.

Without AUTOINCREMENT SQLite gives a new row max(rowid) + 1, so deleting the newest memory
freed its id for the next one, and a cluster still listing the old id then pointed at another
user's memory. SQLite cannot add AUTOINCREMENT to a column, so on SQLite each table is rebuilt
the way its documentation prescribes: a new table from the table's own stored definition with
the keyword added (any column an application added is kept), one INSERT .. SELECT of every
row, the old table dropped, the new one renamed, then every index and trigger the table had
recreated from its stored SQL under its own name. The memories sequence starts at the largest
id still in use or still listed by a cluster, so no id a cluster remembers comes back.
Measured at 1M memories (a 741 MB file, shared 2-core machine): upgrade 13-20 s, rollback
11-16 s, two thirds of it rebuilding the six indexes of `memories`; writes wait meanwhile.
The rollback rebuilds both tables without the keyword, the shape 002 left.

PostgreSQL needs nothing: a SERIAL sequence never goes back on its own.
"""

import re

import peewee as pw

ID_COLUMNS = {"memories": "id", "memory_clusters": "cluster_id"}
REBUILT = "memoric_rebuild"
CREATE_TABLE = re.compile(
    r"""^\s*CREATE\s+TABLE\s+(?:"(?:[^"]|"")+"|\[[^\]]+\]|`[^`]+`|\w+)\s*\(""", re.IGNORECASE
)


def _id_definition(column: str) -> re.Pattern:
    """The stored definition of the integer primary key `column`, with or without AUTOINCREMENT."""
    name = rf"""(?:"{column}"|\[{column}\]|`{column}`|{column})"""
    return re.compile(
        rf"(?<=[(,])(\s*{name}\s+INTEGER\s+(?:NOT\s+NULL\s+)?PRIMARY\s+KEY)(\s+AUTOINCREMENT)?(?=\s*[,)])",
        re.IGNORECASE,
    )


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class IdField(pw.AutoField):
    """Snapshot of memoric's id column: AUTOINCREMENT on SQLite, SERIAL on PostgreSQL."""

    def ddl(self, ctx):
        node = super().ddl(ctx)
        if isinstance(self.model._meta.database, pw.SqliteDatabase):
            return pw.NodeList((node, pw.SQL("AUTOINCREMENT")))
        return node


def _rebuild(database, table: str, column: str, autoincrement: bool) -> None:
    """Rebuild `table` with (or without) AUTOINCREMENT on `column`, keeping rows, indexes, triggers."""
    (definition,) = database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    pattern = _id_definition(column)
    found = pattern.findall(definition)
    if len(found) != 1:
        raise ValueError(f"{table}.{column} is not declared INTEGER PRIMARY KEY: {definition}")
    if bool(found[0][1]) is autoincrement:
        return  # built that way already (e.g. from the models)
    keyword = " AUTOINCREMENT" if autoincrement else ""
    rebuilt = pattern.sub(lambda match: match.group(1) + keyword, definition)
    rebuilt = CREATE_TABLE.sub(f"CREATE TABLE {_quoted(REBUILT)} (", rebuilt, count=1)
    dependents = database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
        "AND sql IS NOT NULL ORDER BY type = 'trigger', name",
        (table,),
    ).fetchall()
    info = database.execute_sql(f"PRAGMA table_info({_quoted(table)})").fetchall()
    columns = ", ".join(_quoted(row[1]) for row in info)
    database.execute_sql(rebuilt)
    database.execute_sql(f"INSERT INTO {_quoted(REBUILT)} ({columns}) SELECT {columns} FROM {_quoted(table)}")
    database.execute_sql(f"DROP TABLE {_quoted(table)}")
    # The legacy rename leaves views that name the table alone instead of failing on them.
    legacy = database.execute_sql("PRAGMA legacy_alter_table").fetchone()[0]
    database.execute_sql("PRAGMA legacy_alter_table = 1")
    try:
        database.execute_sql(f"ALTER TABLE {_quoted(REBUILT)} RENAME TO {_quoted(table)}")
    finally:
        database.execute_sql(f"PRAGMA legacy_alter_table = {int(legacy)}")
    for (sql,) in dependents:
        database.execute_sql(sql)


def _seed_memory_ids(database) -> None:
    """Start the memories sequence past every id in use and every id a cluster still lists."""
    (floor,) = database.execute_sql(
        """SELECT MAX(n) FROM (
               SELECT MAX("id") AS n FROM "memories"
               UNION ALL
               SELECT MAX(CAST(j.value AS INTEGER))
               FROM "memory_clusters" AS c, json_each(c."memory_ids") AS j
               WHERE json_valid(c."memory_ids") AND j.type = 'integer')"""
    ).fetchone()
    if floor is None:
        return
    database.execute_sql("DELETE FROM sqlite_sequence WHERE name = 'memories'")
    database.execute_sql("INSERT INTO sqlite_sequence (name, seq) VALUES ('memories', ?)", (floor,))


def _set_id_fields(migrator, field_class) -> None:
    """Record in the ORM snapshot which field class the id columns have."""
    for table, column in ID_COLUMNS.items():
        migrator.orm[table]._meta.set_primary_key(column, field_class())


def migrate(migrator, database, *, fake=False):
    """SQLite: rebuild both tables with AUTOINCREMENT ids, the memories sequence seeded."""
    if not isinstance(database, pw.PostgresqlDatabase):
        for table, column in ID_COLUMNS.items():
            migrator.run(_rebuild, database, table, column, True)
        migrator.run(_seed_memory_ids, database)
    _set_id_fields(migrator, IdField)


def rollback(migrator, database, *, fake=False):
    """SQLite: rebuild both tables with plain INTEGER PRIMARY KEY ids, as 002 left them."""
    if not isinstance(database, pw.PostgresqlDatabase):
        for table, column in ID_COLUMNS.items():
            migrator.run(_rebuild, database, table, column, False)
    _set_id_fields(migrator, pw.AutoField)
