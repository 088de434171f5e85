"""SQLite's triggers across a table rebuild.

SQLite alters most of a table (a column's type, default or constraint; a dropped column, in
playhouse's migrator) by copying it into a new table, and the triggers on the old one are dropped
with it. memoric re-creates its own (`sqlite_keys.repair`); the application's are re-created here,
at the end of the migration that rebuilt their table, unless the migration dropped them itself.
"""

from __future__ import annotations

import re

import peewee

from memoric.db.catalogue import SQL_GAP as GAP  # one space or comment between two words
from memoric.db.dialects import sqlite_keys
from memoric.errors import MigrationError

SCHEMA_OBJECTS = (
    "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master WHERE type IN ('table', 'trigger')"
)
# The name a DROP TRIGGER names: quoted, bracketed, backquoted or bare, after an optional schema.
NAME = r"""(?:"((?:[^"]|"")*)"|\[([^\]]*)\]|`([^`]*)`|(\w+))"""  # an identifier, in any quotes
SCHEMA = rf"""(?:(?:"(?:[^"]|"")*"|\w+){GAP}*\.{GAP}*)?"""
DROP_TRIGGER = re.compile(
    rf"DROP{GAP}+TRIGGER{GAP}+(?:IF{GAP}+EXISTS{GAP}+)?{SCHEMA}{NAME}", re.IGNORECASE | re.DOTALL
)
# A trigger of the main schema a statement creates: its name (groups 1-4), then its table (5-8).
CREATE_TRIGGER = re.compile(
    rf"{GAP}*CREATE{GAP}+TRIGGER{GAP}+(?:IF{GAP}+NOT{GAP}+EXISTS{GAP}+)?{SCHEMA}{NAME}.*?\bON{GAP}+{SCHEMA}{NAME}",
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
    """Re-create the triggers a rebuild of their table dropped: those of `before`, and those the
    `sent` statements created, as they last defined them, but those they dropped by name."""
    if not before:
        return
    after = snapshot(database)
    present = {name.lower() for name in after["triggers"]}
    for name, (table, sql) in _expected(before["triggers"], sent).items():
        rebuilt = table in after["tables"] and after["tables"][table] != before["tables"].get(table)
        if not rebuilt or name.lower() in present:
            continue
        try:
            database.execute_sql(sql)
        except peewee.DatabaseError as exc:
            raise MigrationError(
                f"it rebuilt table {table} (SQLite alters a table by copying it), which dropped the "
                f"trigger {name}, and it cannot be re-created on the new table ({exc}): drop it in "
                "the migration, or re-create it there as it should now be"
            ) from exc


def _expected(triggers: dict, sent: list[str]) -> dict:
    """{trigger: (table, SQL)} as `triggers` stand after the `sent` statements, in order: each
    CREATE TRIGGER (of the main schema) defines one, each DROP TRIGGER takes one away."""
    expected = {name.lower(): (name, table, sql) for name, (table, sql) in triggers.items()}
    for sql in sent:
        for dropped in DROP_TRIGGER.finditer(sql):
            expected.pop(_identifier(dropped.groups()).lower(), None)
        created = CREATE_TRIGGER.match(sql)
        if created:
            name, table = _identifier(created.groups()[:4]), _identifier(created.groups()[4:])
            expected[name.lower()] = (name, table, sql)
    return {name: (table, sql) for name, table, sql in expected.values()}


def _identifier(groups: tuple) -> str:
    """The identifier NAME matched, unquoted."""
    return next(part for part in groups if part is not None).replace('""', '"')
