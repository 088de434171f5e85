"""What a database holds: columns as the catalogue declares them, shape comparisons, row counts.

The migration runner compares shapes with these (a table someone else created under a name the
chain uses; the tables and columns a downgrade would drop). Reading each dialect's catalogue
(tables, columns, renames, index checks) is the dialect's (`Dialect.tables`, `Dialect.columns`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import peewee

METADATA_KEYS_TABLE = "memory_metadata_keys"  # SQLite's index of metadata keys
METADATA_KEYS_COLUMNS = frozenset({"name", "value", "user_id", "memory_id"})


class Column(NamedTuple):
    """One column as the catalogue declares it."""

    type: str
    null: bool
    primary_key: bool
    default: str | None

    def describe(self) -> str:
        nullability = "null" if self.null else "not null"
        return f"{self.type} {nullability}{' primary key' if self.primary_key else ''}"


# What may stand between two words of SQL: one space or comment (a pattern matching one of them).
SQL_GAP = r"(?:\s|--[^\n]*\n|/\*.*?\*/)"


def quoted(name: str) -> str:
    """`name` as an SQL identifier (double quotes, which both dialects read as one here)."""
    return '"' + name.replace('"', '""') + '"'


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


# A default that is NULL, as a catalogue writes it: `NULL`, `(NULL)`, `NULL::text`.
NULL_DEFAULT = re.compile(r"[\s(]*NULL[\s)]*(?:::[\w\s]+)?", re.IGNORECASE)


def unfillable_columns(found: dict[str, dict[str, Column]], written: dict[str, dict[str, bool]]) -> list[str]:
    """`table.column` for each NOT NULL column of `found` that memoric's INSERTs cannot fill:
    one of memoric's (`written`: {table: {column: whether memoric may write NULL there}}) where
    it may write NULL, or one it leaves out, with no database default (peewee's Python-side
    `default=` leaves none) and no primary key."""
    unfillable = []
    for table, columns in found.items():
        for name, column in columns.items():
            if column.null or column.primary_key:
                continue
            ours = written.get(table, {})
            defaulted = column.default is not None and not NULL_DEFAULT.fullmatch(column.default)
            if ours.get(name, False) or (name not in ours and not defaulted):
                unfillable.append(f"{table}.{name}")
    return unfillable


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


def any_row(database: peewee.Database, table: str, condition: str = "TRUE", params: tuple = ()) -> bool:
    """Whether a row of `table` meets `condition` (SQL, with `params`); reading stops at the first."""
    sql = f"SELECT EXISTS (SELECT 1 FROM {quoted(table)} WHERE {condition})"
    return bool(database.execute_sql(sql, params).fetchone()[0])
