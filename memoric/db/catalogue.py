"""What a database holds, read from its own catalogue: tables, columns, row counts, index checks.

The migration runner compares shapes with these (a table someone else created under a name the
chain uses; the tables and columns a downgrade would drop); the SQL of each dialect's catalogue
lives here.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import peewee

from memoric.db.models import is_postgres

POSTGRES_COLUMNS = """
SELECT cls.relname, att.attname, format_type(att.atttypid, att.atttypmod), att.attnotnull,
       pg_get_expr(def.adbin, def.adrelid), COALESCE(att.attnum = ANY(pk.conkey), false)
FROM pg_class AS cls
JOIN pg_namespace AS ns ON ns.oid = cls.relnamespace
JOIN pg_attribute AS att ON att.attrelid = cls.oid AND att.attnum > 0 AND NOT att.attisdropped
LEFT JOIN pg_attrdef AS def ON def.adrelid = cls.oid AND def.adnum = att.attnum
LEFT JOIN pg_constraint AS pk ON pk.conrelid = cls.oid AND pk.contype = 'p'
WHERE ns.nspname = current_schema() AND cls.relkind IN ('r', 'p') AND cls.relname = ANY(%s)
ORDER BY cls.relname, att.attnum
"""
SQLITE_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)
# One SQL token: a string, a "quoted" identifier (group 1), a [bracketed] or `backquoted` one,
# a word (group 2), or any other character.
SQL_TOKEN = re.compile(r"""'(?:[^']|'')*'|"((?:[^"]|"")*)"|\[[^\]]*\]|`(?:[^`]|``)*`|(\w+)|\S""")


class Column(NamedTuple):
    """One column as the catalogue declares it."""

    type: str
    null: bool
    primary_key: bool
    default: str | None

    def describe(self) -> str:
        nullability = "null" if self.null else "not null"
        return f"{self.type} {nullability}{' primary key' if self.primary_key else ''}"


def quoted(name: str) -> str:
    """`name` as an SQL identifier (double quotes, which both dialects read as one here)."""
    return '"' + name.replace('"', '""') + '"'


def tables(database: peewee.Database) -> list[str]:
    """The application tables of the current schema (SQLite's internal ones left out)."""
    if is_postgres(database):
        return database.get_tables()
    return sorted(name for (name,) in database.execute_sql(SQLITE_TABLES).fetchall())


def columns(database: peewee.Database, table_names) -> dict[str, dict[str, Column]]:
    """{table: {column: Column}} for those of `table_names` that exist, columns in table order."""
    found: dict[str, dict[str, Column]] = {}
    if is_postgres(database):
        rows = database.execute_sql(POSTGRES_COLUMNS, (list(table_names),)).fetchall()
        for table, name, kind, not_null, default, primary_key in rows:
            found.setdefault(table, {})[name] = Column(kind, not not_null, primary_key, default)
        return found
    existing = set(tables(database))
    for table in table_names:
        if table in existing:
            rows = database.execute_sql(f"PRAGMA table_info({quoted(table)})").fetchall()
            found[table] = {
                name: Column(kind.upper(), not not_null, bool(primary_key), default)
                for _, name, kind, not_null, default, primary_key in rows
            }
    return found


def shape_differences(built: dict[str, Column] | None, found: dict[str, Column]) -> list[str]:
    """How the columns `found` in a table differ from those a migration `built` (None: not built).

    Extra columns are fine as long as an insert that leaves them out still works.
    """
    if built is None:
        return []
    missing = [name for name in built if name not in found]
    differences = [f"missing columns {', '.join(missing)}"] if missing else []
    differences += [
        f"column {name} is {found[name].describe()}, expected {column.describe()}"
        for name, column in built.items()
        if name in found and not _same_column(column, found[name])
    ]
    differences += [
        f"column {name} ({column.describe()}) is none of the chain's and has no default"
        for name, column in found.items()
        if name not in built and not column.null and column.default is None and not column.primary_key
    ]
    return differences


def _same_column(one: Column, other: Column) -> bool:
    """Same type (any case), nullability and primary-key role; defaults may differ."""
    return (one.type.lower(), one.null, one.primary_key) == (
        other.type.lower(),
        other.null,
        other.primary_key,
    )


def count_rows(database: peewee.Database, table: str) -> int:
    """The rows of `table`."""
    return database.execute_sql(f"SELECT COUNT(*) FROM {quoted(table)}").fetchone()[0]


def count_values(database: peewee.Database, table: str, column: str) -> int:
    """The rows of `table` where `column` is not NULL."""
    return database.execute_sql(f"SELECT COUNT({quoted(column)}) FROM {quoted(table)}").fetchone()[0]


def rename_table(database: peewee.Database, old: str, new: str) -> None:
    """Rename a table; on SQLite without rewriting (or failing on) views that name it."""
    statement = f"ALTER TABLE {quoted(old)} RENAME TO {quoted(new)}"
    if is_postgres(database):
        database.execute_sql(statement)
        return
    legacy = database.execute_sql("PRAGMA legacy_alter_table").fetchone()[0]
    database.execute_sql("PRAGMA legacy_alter_table = 1")
    try:
        database.execute_sql(statement)
    finally:
        database.execute_sql(f"PRAGMA legacy_alter_table = {int(legacy)}")


def misread_index_columns(database: peewee.Database, table_names) -> list[str]:
    """Indexes on `table_names` that name a column the table lacks (SQLite only; else none).

    SQLite reads a double-quoted name that is no column as a string literal, so such an index
    is built on a constant instead of failing: `CREATE INDEX i ON t ("no_such_column")`.
    """
    if is_postgres(database):
        return []
    problems = []
    for table, table_columns in columns(database, table_names).items():
        known = {name.lower() for name in table_columns}
        rows = database.execute_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL "
            "ORDER BY name",
            (table,),
        ).fetchall()
        for index, sql in rows:
            problems += [
                f'index {index} on {table} names "{name}", which is not a column of {table} '
                "(SQLite would index the string instead)"
                for name in _quoted_names_after_on(sql)
                if name.lower() not in known
            ]
    return problems


def _quoted_names_after_on(sql: str) -> list[str]:
    """The double-quoted names in an index's columns and WHERE clause (collation names left out)."""
    names, state, previous = [], "head", ""
    for match in SQL_TOKEN.finditer(sql):
        text, quoted_name, word = match.group(0), match.group(1), match.group(2)
        if state == "head":
            state = "table" if (word or "").upper() == "ON" else "head"
        elif state == "table":
            state = "body"
        elif quoted_name is not None and previous != "COLLATE":
            names.append(quoted_name.replace('""', '"'))
        previous = text.upper()
    return names
