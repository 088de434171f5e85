"""SQLite's index for metadata filters: what PostgreSQL's GIN index is, kept by triggers.

`memory_metadata_keys` holds, for each memory, one row per (name, value) key of its metadata:
every scalar with the name of the member it sits under (a scalar in an array takes the array's
name; the members of objects in arrays keep their own). A document contains a pattern only when
it holds every key of the pattern, so a memory lacking the rarest of them is skipped without
reading it; the exact containment test still decides every memory the keys let through, so an
answer is the same with or without the index, and the same as PostgreSQL's `@>`.

Triggers on `memories` keep the keys in the same transaction as every write, through any path.
Names come from SQLite's decoded member names, and numbers are compared as doubles: the pattern's
keys are read by the same SQL on its JSON text, so a key of a pattern equals the key of a
document holding that value. Numbers beyond 2**53 in magnitude could read as two doubles from two
spellings of one value, so the pattern's keys never include them (the exact test decides those).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from typing import NamedTuple

import peewee

from memoric.db.catalogue import METADATA_KEYS_TABLE as TABLE
from memoric.db.jsoncodec import dump_json
from memoric.db.jsonfilter import EXACT_SQLITE_INTEGER

# Keys of a pattern whose postings are counted to find the rarest: any of them is a valid one.
MAX_PROBED_KEYS = 8
# Postings counted at most per key (past that, a key is common whatever the caller's bound).
COUNT_CAP = 10_000


def _scalar(alias: str) -> str:
    """The stored value of the JSON scalar row `alias`: numbers as doubles, true/false/null as blobs."""
    return (
        f"CASE {alias}.type WHEN 'integer' THEN CAST({alias}.atom AS REAL) "
        f"WHEN 'true' THEN x'01' WHEN 'false' THEN x'02' WHEN 'null' THEN x'00' ELSE {alias}.atom END"
    )


def keys_of(document: str, owner: str = "", source: str = "") -> str:
    """SELECT of the (name, value) keys of the JSON `document` (an SQL expression), each followed by
    the `owner` columns (", user, id"), from the `source` tables ("memories AS m, ") when it has any.
    A key held twice comes twice."""
    return (
        f"SELECT leaf.key AS name, {_scalar('leaf')} AS value{owner} "
        f"FROM {source}json_tree({document}) AS leaf "
        "WHERE leaf.type NOT IN ('object', 'array') AND typeof(leaf.key) = 'text' "
        f"UNION ALL SELECT node.key, {_scalar('item')}{owner} "
        f"FROM {source}json_tree({document}) AS node, json_each(node.value) AS item "
        "WHERE node.type = 'array' AND typeof(node.key) = 'text' AND item.type NOT IN ('object', 'array')"
    )


# Member names SQLite's JSON functions read unlike memoric's reader and PostgreSQL: one written with
# an escape where none is needed (`caf\u00e9`, `a\/b`: a JSON path is matched against the name
# as written), and one written twice in an object (SQLite reads the first, the others the last).
# memoric never writes either; the triggers refuse another writer's, saying why.
_CONTROLS = "char(" + ", ".join(str(code) for code in range(1, 32)) + ")"
_NEEDS_ESCAPE = (
    "(instr(member.key, '\"') > 0 OR instr(member.key, '\\') > 0 "
    f"OR member.key GLOB '*[' || {_CONTROLS} || ']*')"
)
NEEDLESS_ESCAPE_MESSAGE = (
    "memoric: a metadata member name is written with an escape where none is needed (as \\u00e9 "
    "or \\/), which SQLite''s JSON paths do not match: write the JSON with ensure_ascii=False, "
    "as memoric does"
)
MEMBER_TWICE_MESSAGE = (
    "memoric: the metadata names a member twice in one object (SQLite reads the first, memoric "
    "and PostgreSQL the last): write each member once"
)


def needless_escape(document: str) -> str:
    """SQL: whether the JSON `document` names a member with an escape where none is needed."""
    return (
        f"(instr({document}, '\\') > 0 AND EXISTS (SELECT 1 FROM json_tree({document}) AS member "
        "WHERE typeof(member.key) = 'text' "
        "AND instr(substr(member.fullkey, length(member.path) + 2), '\\') > 0 "
        f"AND NOT {_NEEDS_ESCAPE}))"
    )


def member_twice(document: str) -> str:
    """SQL: whether the JSON `document` names a member twice in one object."""
    return (
        f"EXISTS (SELECT 1 FROM json_tree({document}) AS member WHERE typeof(member.key) = 'text' "
        "GROUP BY member.parent, member.key HAVING count(*) > 1)"
    )


def _refuse_misread(row: str) -> str:
    """The statements refusing the memory `row` when SQLite would read its metadata otherwise."""
    document = f"{row}.metadata"
    return (
        f"SELECT RAISE(ABORT, '{NEEDLESS_ESCAPE_MESSAGE}') WHERE {needless_escape(document)}; "
        f"SELECT RAISE(ABORT, '{MEMBER_TWICE_MESSAGE}') WHERE {member_twice(document)};"
    )


def _posted(row: str) -> str:
    """SELECT of the keys table's rows of the memory `row` (NEW or OLD in a trigger)."""
    return keys_of(f"{row}.metadata", owner=f", {row}.user_id, {row}.id")


def _remove(row: str) -> str:
    """The keys of the memory `row` deleted, found by the primary key whatever the statistics:
    its names and its values as two lists (the table holds no other pair of them for this memory;
    a list of pairs, or of all four columns, made SQLite read every key)."""
    keys = keys_of(f"{row}.metadata")
    return (
        f"DELETE FROM {TABLE} WHERE name IN (SELECT name FROM ({keys})) "
        f"AND value IN (SELECT value FROM ({keys})) AND user_id = {row}.user_id AND memory_id = {row}.id;"
    )


def _add(row: str) -> str:
    return f"INSERT OR IGNORE INTO {TABLE} (name, value, user_id, memory_id) {_posted(row)};"


TABLE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT NOT NULL, value NOT NULL, user_id TEXT NOT NULL, "
    "memory_id INTEGER NOT NULL, PRIMARY KEY (name, value, user_id, memory_id)) WITHOUT ROWID"
)
TRIGGERS_DDL = (
    "CREATE TRIGGER IF NOT EXISTS memories_keys_insert AFTER INSERT ON memories "
    f"BEGIN {_refuse_misread('NEW')} {_add('NEW')} END",
    "CREATE TRIGGER IF NOT EXISTS memories_keys_update AFTER UPDATE ON memories "
    "WHEN OLD.metadata IS NOT NEW.metadata OR OLD.user_id IS NOT NEW.user_id OR OLD.id IS NOT NEW.id "
    f"BEGIN {_refuse_misread('NEW')} {_remove('OLD')} {_add('NEW')} END",
    f"CREATE TRIGGER IF NOT EXISTS memories_keys_delete AFTER DELETE ON memories BEGIN {_remove('OLD')} END",
)


def create(database: peewee.Database) -> None:
    """Create the keys table, post the keys of any memories already there, and add the triggers
    that keep it; where the table exists already, only the missing triggers are added."""
    if not database.table_exists(TABLE):
        database.execute_sql(TABLE_DDL)
        database.execute_sql(
            f"INSERT OR IGNORE INTO {TABLE} {keys_of('m.metadata', ', m.user_id, m.id', 'memories AS m, ')}"
        )
    for statement in TRIGGERS_DDL:
        database.execute_sql(statement)


TRIGGERS = ("memories_keys_insert", "memories_keys_update", "memories_keys_delete")
_PARTS_FOUND = (
    "SELECT count(*) FROM sqlite_master WHERE (type = 'trigger' AND tbl_name = 'memories' "
    f"AND name IN {TRIGGERS!r}) OR (type = 'table' AND name = '{TABLE}')"
)


def kept(database: peewee.Database) -> bool:
    """Whether the keys table and its three triggers are all there: only then are the keys those
    of the memories (a schema drafted from the models has none of them)."""
    return database.execute_sql(_PARTS_FOUND).fetchone()[0] == len(TRIGGERS) + 1


def repair(database: peewee.Database) -> None:
    """Post every memory's keys afresh and put the triggers back, where the keys table is there
    but a trigger is not: rebuilding `memories` (as SQLite's ALTER of a column does, in any
    migration) drops its triggers, and every write after that would go unposted. Triggers an
    older memoric wrote are replaced by today's (same keys, found faster)."""
    if not (database.table_exists(TABLE) and database.table_exists("memories")):
        return
    if not kept(database):
        with database.atomic():
            drop(database)
            create(database)
    elif not current(database):
        with database.atomic():
            _drop_triggers(database)
            create(database)


def current(database: peewee.Database) -> bool:
    """Whether the triggers are today's, as `TRIGGERS_DDL` writes them."""
    found = f"SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name IN {TRIGGERS!r}"
    stored = database.execute_sql(found)
    wanted = {statement.replace(" IF NOT EXISTS", "", 1) for statement in TRIGGERS_DDL}
    return {sql for (sql,) in stored.fetchall()} == wanted


def drop(database: peewee.Database) -> None:
    """Drop the triggers and the keys table (the memories keep everything they hold)."""
    _drop_triggers(database)
    database.execute_sql(f"DROP TABLE IF EXISTS {TABLE}")


def _drop_triggers(database: peewee.Database) -> None:
    for trigger in TRIGGERS:
        database.execute_sql(f"DROP TRIGGER IF EXISTS {trigger}")


class MetadataKey(NamedTuple):
    """One key of a pattern (name and value may be slots), and the user whose postings hold it
    (None: every user's)."""

    name: object
    value: object
    user_id: object

    def holders(self, id_column) -> peewee.Node:
        """`id_column IN` the ids of the memories holding the key."""
        table = peewee.Table(TABLE, ("name", "value", "user_id", "memory_id"))
        query = table.select(table.memory_id).where(table.name == self.name, table.value == self.value)
        if self.user_id is not None:
            query = query.where(table.user_id == self.user_id)
        return id_column.in_(query)

    @staticmethod
    def leading(query):
        """`query` FROM the memories NOT INDEXED: read by rowid from the key's postings (SQLite
        would otherwise walk an index of another filter and test each row against them)."""
        return query.from_(peewee.NodeList((query.model, peewee.SQL("NOT INDEXED"))))


# Reads the keys of patterns with the same SQL as the triggers, on the same SQLite library.
_reader = sqlite3.connect(":memory:", check_same_thread=False)
_reader_lock = threading.Lock()


@functools.lru_cache(maxsize=1024)
def _pattern_keys(pattern_json: str) -> tuple[tuple[str, object], ...]:
    with _reader_lock:
        rows = _reader.execute(keys_of("?1"), (pattern_json,)).fetchall()
    exact = (row for row in rows if not (isinstance(row[1], float) and abs(row[1]) > EXACT_SQLITE_INTEGER))
    return tuple(dict.fromkeys(exact))


def pattern_keys(pattern: dict) -> tuple[tuple[str, object], ...]:
    """The (name, value) keys every document containing `pattern` holds."""
    return _pattern_keys(dump_json(pattern))


def rarest_key(
    database: peewee.Database, pattern: dict, user_id: str | None, enough: int | None
) -> MetadataKey | None:
    """The pattern's key with the fewest postings (of `user_id`'s memories, or everyone's).

    None when the pattern has no key, when even the rarest is held by more than `enough`
    memories (walking the memories in order finds a page sooner then), or when a trigger is
    missing or the table is (the keys may be stale or absent: every memory in scope is read instead).
    """
    keys = pattern_keys(pattern)[:MAX_PROBED_KEYS]
    if not keys or not kept(database):
        return None
    cap = COUNT_CAP if enough is None else min(enough, COUNT_CAP) + 1
    owner = "" if user_id is None else ' AND "user_id" = ?'
    sql = (
        f'SELECT count(*) FROM (SELECT 1 FROM "{TABLE}" WHERE "name" = ? AND "value" = ?{owner} LIMIT ?)'
    )
    counts = []
    for name, value in keys:
        params = (name, value) if user_id is None else (name, value, user_id)
        (count,) = database.execute_sql(sql, (*params, cap)).fetchone()
        if count == 0:
            return MetadataKey(name, value, user_id)
        counts.append(count)
    fewest = min(range(len(keys)), key=counts.__getitem__)
    if enough is not None and counts[fewest] > enough:
        return None
    name, value = keys[fewest]
    return MetadataKey(name, value, user_id)
