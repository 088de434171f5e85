"""What an export or a copy would leave behind: the application's own columns and tables.

Both carry memoric's tables and columns only. A value in a column an application's migration
added to one of memoric's tables, or a row in a table memoric does not own (in memoric's
schema), would reach neither the file nor the target; so they refuse, naming each, unless
told to leave them (`memoric_only`): the application moves its own data (`pg_dump`, SQLite's
`.backup`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import peewee

from memoric import validation
from memoric.db.catalogue import METADATA_KEYS_TABLE, any_row, quoted
from memoric.db.driver_errors import first_line
from memoric.errors import ValidationError
from memoric.migrate.chains import APP_HISTORY_TABLE, HISTORY_TABLE

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

SHOWN = 10  # the columns and tables an error names at most


def refuse_leaving_behind(
    store: MemoryStore, action: str, memoric_only: bool, user_id: str | None = None
) -> None:
    """ValidationError naming the application's data `action` (an export, a copy; of one user's
    rows with `user_id`) would leave behind, unless `memoric_only`; run inside the transfer's
    snapshot, before it writes."""
    if validation.boolean("memoric_only", memoric_only):
        return
    found = left_behind(store, user_id)
    if not found:
        return
    shown = ", ".join(found[:SHOWN]) + (f" and {len(found) - SHOWN} more" if len(found) > SHOWN else "")
    raise ValidationError(
        f"{action} carries memoric's tables and columns only, and this database also holds "
        f"{shown}: move those with the database's own tools (pg_dump, SQLite's .backup), or pass "
        "--memoric-only (memoric_only=True) to leave them out"
    )


def left_behind(store: MemoryStore, user_id: str | None = None) -> list[str]:
    """The application's columns of memoric's tables that hold a value (in `user_id`'s rows, when
    given), then the tables memoric does not own that hold a row: what an export or a copy would
    not carry. The histories and SQLite's metadata keys are memoric's alone: no application
    column is looked for there."""
    database = store.database
    declared = store.dialect.columns(database, [model._meta.table_name for model in store.models()])
    found = [
        f"column {table}.{column}"
        for model in store.models()
        for table in [model._meta.table_name]
        for column in declared.get(table, {})
        if column not in model._meta.columns and _holds_values(database, table, column, user_id)
    ]
    owned = own_tables(store)
    others = [table for table in store.dialect.tables(database) if table not in owned]
    return found + [f"table {table}" for table in others if _holds_rows(database, table)]


def _holds_values(database, table: str, column: str, user_id: str | None) -> bool:
    """Whether `column` of `table` (one of memoric's, each with a user) holds a value: in any
    row, or in `user_id`'s."""
    condition = f"{quoted(column)} IS NOT NULL"
    if user_id is None:
        return any_row(database, table, condition)
    return any_row(database, table, f"{condition} AND {quoted('user_id')} = {database.param}", (user_id,))


def _holds_rows(database, table: str) -> bool:
    """Whether `table` holds a row; ValidationError naming it when it cannot be read (its own
    savepoint, so that the transfer's snapshot stays usable)."""
    try:
        with database.atomic():
            return any_row(database, table)
    except peewee.DatabaseError as exc:
        raise ValidationError(
            f"cannot tell whether table {table} holds data the transfer would leave behind: "
            f"{first_line(exc)}; grant memoric's role SELECT on it, or pass --memoric-only "
            "(memoric_only=True)"
        ) from None


def own_tables(store: MemoryStore) -> frozenset[str]:
    """The tables memoric creates and keeps: its models', SQLite's metadata keys, both histories."""
    names = {model._meta.table_name for model in store.models()}
    return frozenset({*names, METADATA_KEYS_TABLE, HISTORY_TABLE, APP_HISTORY_TABLE})
