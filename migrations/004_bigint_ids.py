"""004: 64-bit ids on every dialect: `memories.id` and `memory_clusters.cluster_id` become BIGINT.

PostgreSQL's SERIAL columns stop at 2,147,483,647 while a SQLite INTEGER PRIMARY KEY (and its
AUTOINCREMENT counter) goes to 2**63 - 1, so a SQLite export with larger ids could not be
loaded into PostgreSQL, and a busy PostgreSQL store would run out of ids. On PostgreSQL both
columns and the sequences behind them become BIGINT (the table is rewritten and its indexes
rebuilt: writes wait meanwhile; measured at 1M memories on a shared 2-core machine: upgrade
13.7-19.7 s, rollback 17.0 s). SQLite needs nothing: its integer key is 64-bit already. A view
that reads an id column would stop PostgreSQL's type change: the upgrade names it instead.

The rollback narrows the columns back to INTEGER, and refuses, changing nothing, while any id
(or either sequence) is past what INTEGER holds.
"""

import peewee as pw

ID_COLUMNS = {"memories": "id", "memory_clusters": "cluster_id"}
INTEGER_MAX = 2**31 - 1


class IdField(pw.BigAutoField):
    """Snapshot of memoric's id column: AUTOINCREMENT on SQLite, BIGSERIAL on PostgreSQL."""

    def ddl(self, ctx):
        node = super().ddl(ctx)
        if isinstance(self.model._meta.database, pw.SqliteDatabase):
            return pw.NodeList((node, pw.SQL("AUTOINCREMENT")))
        return node


class NarrowIdField(IdField):
    """Snapshot of the 32-bit id column 003 left (SERIAL on PostgreSQL)."""

    field_type = "AUTO"


def _sequence(database, table: str, column: str) -> str:
    """The name of the sequence that hands out `table.column`, quoted for SQL."""
    (name,) = database.execute_sql("SELECT pg_get_serial_sequence(%s, %s)", (f'"{table}"', column)).fetchone()
    if name is None:
        raise ValueError(f"{table}.{column} has no sequence: it is not a memoric id column")
    return name


DEPENDENT_VIEWS = """
SELECT DISTINCT view.relname
FROM pg_depend AS dep
JOIN pg_rewrite AS rule ON rule.oid = dep.objid
JOIN pg_class AS view ON view.oid = rule.ev_class AND view.oid <> dep.refobjid
JOIN pg_attribute AS att ON att.attrelid = dep.refobjid AND att.attnum = dep.refobjsubid
WHERE dep.refobjid = %s::regclass AND att.attname = %s
ORDER BY 1
"""


def _refuse_dependent_views(database, table: str, column: str) -> None:
    """Name the views reading `table.column`: PostgreSQL cannot change the type under them."""
    views = [name for (name,) in database.execute_sql(DEPENDENT_VIEWS, (f'"{table}"', column)).fetchall()]
    if views:
        raise ValueError(
            f"{table}.{column} changes type, and view(s) {', '.join(views)} read it: drop them, "
            "run this migration, then create them again"
        )


COLUMN_TYPE = (
    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s"
)
SEQUENCE_TYPE = "SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = %s::regclass"


def _set_type(database, sql_type: str) -> None:
    """Give both id columns and their sequences the type `sql_type`; those of that type already are
    left alone (tables adopted as they are; Citus refuses to alter a distributed table's id)."""
    for table, column in ID_COLUMNS.items():
        _refuse_dependent_views(database, table, column)
        sequence = _sequence(database, table, column)
        (column_type,) = database.execute_sql(COLUMN_TYPE, (f'"{table}"', column)).fetchone()
        if column_type != sql_type.lower():
            database.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE {sql_type}')
        (sequence_type,) = database.execute_sql(SEQUENCE_TYPE, (sequence,)).fetchone()
        if sequence_type != sql_type.lower():
            database.execute_sql(f"ALTER SEQUENCE {sequence} AS {sql_type}")


def _refuse_wide_ids(database) -> None:
    """Stop the rollback while any id, given or to be given, is past what INTEGER holds."""
    for table, column in ID_COLUMNS.items():
        (largest,) = database.execute_sql(f'SELECT MAX("{column}") FROM "{table}"').fetchone()
        (counter,) = database.execute_sql(
            f"SELECT last_value FROM {_sequence(database, table, column)}"
        ).fetchone()
        widest = max(largest or 0, counter or 0)
        if widest > INTEGER_MAX:
            raise ValueError(
                f"{table}.{column} has reached {widest}, past the 32-bit ids before 004 "
                f"(at most {INTEGER_MAX}): the ids cannot be narrowed back"
            )


def _set_id_fields(migrator, field_class) -> None:
    """Record in the ORM snapshot which field class the id columns have."""
    for table, column in ID_COLUMNS.items():
        migrator.orm[table]._meta.set_primary_key(column, field_class())


def migrate(migrator, database, *, fake=False):
    """PostgreSQL: both id columns and their sequences become BIGINT."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.run(_set_type, database, "BIGINT")
    _set_id_fields(migrator, IdField)


def rollback(migrator, database, *, fake=False):
    """PostgreSQL: both id columns back to INTEGER, refused while an id needs more than 32 bits."""
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.run(_refuse_wide_ids, database)
        migrator.run(_set_type, database, "INTEGER")
    _set_id_fields(migrator, NarrowIdField)
