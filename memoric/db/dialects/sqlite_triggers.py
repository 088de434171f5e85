"""SQLite's triggers across a table rebuild.

SQLite alters most of a table (a column's type, default or constraint; a dropped column, in
playhouse's migrator) by copying it into a new table, and the triggers on the old one are dropped
with it. memoric re-creates its own (`sqlite_keys.repair`); the application's are re-created here,
at the end of the migration that rebuilt their table, unless the migration dropped them itself.
"""

from __future__ import annotations

import re

import peewee

from memoric.db.dialects import sqlite_keys
from memoric.errors import MigrationError

SCHEMA_OBJECTS = (
    "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master WHERE type IN ('table', 'trigger')"
)
# The name a DROP TRIGGER names: quoted, bracketed, backquoted or bare, after an optional schema.
GAP = r"(?:\s|--[^\n]*\n|/\*.*?\*/)"  # one space or comment between two words
DROP_TRIGGER = re.compile(
    rf"""DROP{GAP}+TRIGGER{GAP}+(?:IF{GAP}+EXISTS{GAP}+)?(?:(?:"(?:[^"]|"")*"|\w+){GAP}*\.{GAP}*)?"""
    r"""(?:"((?:[^"]|"")*)"|\[([^\]]*)\]|`([^`]*)`|(\w+))""",
    re.IGNORECASE | re.DOTALL,
)


def snapshot(database: peewee.Database) -> dict:
    """{"tables": {table: its root page}, "triggers": {trigger: (table, SQL)}}, memoric's own
    triggers left out; a rebuilt table has another root page."""
    rows = database.execute_sql(SCHEMA_OBJECTS).fetchall()
    return {
        "tables": {name: root for kind, name, _, root, _ in rows if kind == "table"},
        "triggers": {
            name: (table, sql)
            for kind, name, table, _, sql in rows
            if kind == "trigger" and name not in sqlite_keys.TRIGGERS
        },
    }


def restore(database: peewee.Database, before: dict, sent: list[str]) -> None:
    """Re-create the triggers of `before` that the rebuild of their table dropped, but those a
    `sent` statement dropped by name."""
    if not before:
        return
    after = snapshot(database)
    dropped = {name.lower() for sql in sent for name in _dropped_triggers(sql)}
    for name, (table, sql) in before["triggers"].items():
        rebuilt = table in after["tables"] and after["tables"][table] != before["tables"].get(table)
        if not rebuilt or name in after["triggers"] or name.lower() in dropped:
            continue
        try:
            database.execute_sql(sql)
        except peewee.DatabaseError as exc:
            raise MigrationError(
                f"it rebuilt table {table} (SQLite alters a table by copying it), which dropped the "
                f"trigger {name}, and it cannot be re-created on the new table ({exc}): drop it in "
                "the migration, or re-create it there as it should now be"
            ) from exc


def _dropped_triggers(sql: str) -> list[str]:
    """The names of the triggers a statement drops."""
    return [
        next(part for part in found.groups() if part is not None).replace('""', '"')
        for found in DROP_TRIGGER.finditer(sql)
    ]
