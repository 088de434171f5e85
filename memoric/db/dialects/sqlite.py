"""SQLite: JSON text with an exact containment function, a file lock, AUTOINCREMENT counters."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterator

import peewee

from memoric.db import jsonfilter, recovery_sqlite
from memoric.db.catalogue import Column, quoted
from memoric.db.connection import holds_own_tables
from memoric.db.dialects import sqlite_keys, sqlite_lock, sqlite_sql, sqlite_triggers
from memoric.db.dialects.base import (
    DOCUMENT_COLUMNS,
    TERM_COLUMNS,
    Dialect,
    MemoryPostings,
    column_list,
    driver_error,
    ids_left,
    no_id_left,
    reserved_end,
    skipping_taken,
)
from memoric.db.models import to_utc
from memoric.db.urls import sqlite_path
from memoric.validation import MAX_STORED_ID

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SQLITE_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)
# The same without the shadow tables of virtual tables (FTS5's `x_data`...), which SQLite 3.37
# and later can tell apart: only their virtual table reads them.
SQLITE_TABLES_UNSHADOWED = (
    "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual') "
    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)


class SqliteDialect(Dialect):
    """SQLite: JSON text, a file lock, `sqlite_sequence`, `executemany`."""

    name = "sqlite"
    # SQLite walks the user's index newest first anyway.
    window_first = False

    def database_file(self, url: str) -> str | None:
        """The file the URL names (relative with three slashes, absolute with four)."""
        return sqlite_path(url)

    def may_hold_memoric(self, url: str) -> bool:
        """Whether the file holds memoric's tables, read through a read-only connection."""
        return holds_own_tables(sqlite_path(url))

    def prepare(self, database: peewee.Database) -> None:
        """Register the exact containment function on every connection of `database`."""
        database.register_function(
            jsonfilter.sqlite_contains_function, jsonfilter.SQLITE_CONTAINS_FUNCTION, 2, deterministic=True
        )

    def contains_row_by_row(self, column, pattern: dict):
        """The exact containment test (there is no JSON index to avoid)."""
        return column.contains(pattern)

    def user_holds(self, database: peewee.Database, memory, user_id, pattern: dict) -> list:
        """The memory is the user's, and its metadata contains `pattern`."""
        return [memory.user_id == user_id, memory.metadata.contains(pattern)]

    def by_code_point(self, column):
        """`column` itself: memoric's columns compare as BINARY (UTF-8's bytes: code point order)."""
        return column

    def in_values(self, column, values: list[str]):
        """`column IN values`, the list bound as one JSON parameter: any length, whatever the
        build's limit on host parameters (32766 by default).
        """
        return peewee.Expression(column, "IN", jsonfilter.json_values(values))

    def create_extra_indexes(self, database: peewee.Database) -> None:
        """The metadata keys table and the triggers that keep it (`sqlite_keys`)."""
        sqlite_keys.create(database)

    def distribute(self, database: peewee.Database) -> None:
        """Nothing: a SQLite file is one node."""

    def select_writes(self, sql: str) -> bool:
        """False: no SQLite function memoric's migrations call changes the schema."""
        return False

    def repair_extra_indexes(self, database: peewee.Database) -> None:
        """The metadata keys' triggers, with every key posted afresh, when a rebuild of `memories`
        dropped them (`sqlite_keys.repair`)."""
        sqlite_keys.repair(database)

    def routes_by_user(self, database: peewee.Database, table: str) -> bool:
        """Never: one file holds every user."""
        return False

    def refuse_a_temporary_schema(self, database: peewee.Database) -> None:
        """Nothing: a store is a file (an in-memory database is refused with its URL)."""

    def hidden_schemas_holding(self, database: peewee.Database, table: str) -> list[str]:
        """None: a file is one namespace."""
        return []

    def schema_changed(self, database: peewee.Database) -> None:
        """Switch a file that holds memoric's tables now to WAL: one built into another
        application's file was opened in that file's journal mode. A file busy in another
        connection just then keeps its mode until it is next opened."""
        if database.is_closed() or database.in_transaction():
            return
        with contextlib.suppress(sqlite3.Error):  # never in place of a migration's own error
            recovery_sqlite.switch_to_wal(database.connection())

    def drop_extra_tables(self, database: peewee.Database) -> None:
        sqlite_keys.drop(database)

    def metadata_key(self, database: peewee.Database, pattern: dict, user_id: str | None, enough: int | None):
        """The rarest key of `pattern` (`sqlite_keys`); None in a schema without the keys table or
        one of its triggers (a draft of the models, say), where filters read every memory in scope."""
        return sqlite_keys.rarest_key(database, pattern, user_id, enough)

    def locked_rows(
        self, database: peewee.Database, query: peewee.Select, *, deletes_only: bool = False
    ) -> list[dict]:
        """The rows as they are: writers already exclude one another (BEGIN IMMEDIATE)."""
        return list(query.dicts())

    def is_deadlock(self, error: BaseException) -> bool:
        """Never: writers take turns from their BEGIN IMMEDIATE."""
        return False

    def hold_for_drop(self, database: peewee.Database, tables: list[str]) -> None:
        """Nothing: a transaction holds the database's write lock from its BEGIN IMMEDIATE."""

    def hold_writes(self, database: peewee.Database, table: str) -> None:
        """Nothing: a transaction holds the database's write lock from its BEGIN IMMEDIATE."""

    def table_triggers(self, database: peewee.Database) -> dict:
        return sqlite_triggers.snapshot(database)

    def restore_rebuilt_triggers(self, database: peewee.Database, before: dict, sent: list[str]) -> None:
        sqlite_triggers.restore(database, before, sent)

    def schemas_named(self, database: peewee.Database, tables: list[str]) -> dict[str | None, str | None]:
        """`temp` first, then `main`; a CREATE TABLE without TEMP creates in `main`."""
        where = {}
        for schema in ("main", "temp"):  # temp last: it wins
            listing = "sqlite_master" if schema == "main" else "sqlite_temp_master"
            sql = f"SELECT name FROM {listing} WHERE type IN ('table', 'view')"
            where.update({name: schema for (name,) in database.execute_sql(sql).fetchall()})
        return {**{table: where.get(table) for table in tables}, None: "main"}

    def try_lock(self, database: peewee.Database, name: str):
        """Take the named lock if free (an exclusive flock on a file beside the database)."""
        return sqlite_lock.try_take(database.database, name)

    def unlock(self, database: peewee.Database, handle) -> bool:
        """Release the lock; False in a process forked from the one that took it."""
        return sqlite_lock.release(handle)

    @contextlib.contextmanager
    def snapshot(self, database: peewee.Database):
        """One read transaction: in WAL mode every read in it sees the database as of its first
        read, made at once so that the snapshot is of the moment the block starts."""
        with database.transaction(lock_type="DEFERRED"):
            database.execute_sql("SELECT COUNT(*) FROM sqlite_master")
            yield

    def has_id_counter(self, database: peewee.Database, table: str) -> bool:
        """Whether `table` keeps its highest id ever used (AUTOINCREMENT: in `sqlite_sequence`).

        Without it SQLite gives a new row max(rowid) + 1, so only a row can hold an id back.
        """
        sql = database.execute_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return sql is not None and "AUTOINCREMENT" in sql[0].upper()

    def id_top(self, database: peewee.Database, table: str, column: str) -> int:
        """The highest id stored, or (AUTOINCREMENT) ever handed out: `sqlite_sequence`'s entry."""
        top = database.execute_sql(f'SELECT COALESCE(MAX("{column}"), 0) FROM "{table}"').fetchone()[0]
        if not self.has_id_counter(database, table):
            return top
        return max(top, self._counter(database, table) or 0)

    def reserve_ids(
        self, database: peewee.Database, table: str, column: str, *, above: int, count: int
    ) -> int:
        """Keep new rows from ids up to max(`above`, top + `count`); top, the highest id used so far.

        Inside BEGIN IMMEDIATE (no other writer meanwhile) the table's `sqlite_sequence` entry is
        raised, never lowered. A table without AUTOINCREMENT has no counter: the caller must write
        a row with the highest id in the same transaction (`has_id_counter`).
        """
        with database.atomic():
            top = self.id_top(database, table, column)
            wanted = reserved_end(table, top, above, count)
            if not self.has_id_counter(database, table):
                return top
            counter = self._counter(database, table)
            if counter is None:
                database.execute_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, wanted))
            elif wanted > counter:
                database.execute_sql("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (wanted, table))
        return top

    def new_ids(self, database: peewee.Database, table: str, column: str, count: int) -> list[int]:
        """The `count` ids after the highest used so far: inside the write transaction (BEGIN
        IMMEDIATE) no other writer can take them, and inserting them moves the counter past them."""
        top = self.id_top(database, table, column)
        if count > MAX_STORED_ID - top:
            raise no_id_left(table)
        return list(range(top + 1, top + count + 1))

    def _counter(self, database: peewee.Database, table: str) -> int | None:
        """The `sqlite_sequence` entry of `table` (an AUTOINCREMENT table), None before its first id."""
        entry = database.execute_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return None if entry is None else entry[0]

    def refuse_exhausted_ids(self, database: peewee.Database, table: str, error: BaseException) -> None:
        """MemoricError "no id left" for SQLITE_FULL ("database or disk is full") while the counter
        stands at the largest id: SQLite's answer when AUTOINCREMENT has nothing left to give."""
        if getattr(driver_error(error), "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
            return
        exhausted = self.has_id_counter(database, table) and self._counter(database, table) == MAX_STORED_ID
        if exhausted:
            raise no_id_left(table) from error

    def insert_rows(
        self,
        database: peewee.Database,
        table: str,
        columns: list[str],
        rows: list[tuple],
        skip_existing: bool,
        ids_given: bool = True,
    ) -> int:
        """INSERT `rows` (values already converted for the driver) in one `executemany`; rows inserted
        (the primary key refuses a taken id, given or not)."""
        marks = ", ".join("?" * len(columns))
        skipping = skipping_taken(table, '("id")') if skip_existing else ""
        sql = f'INSERT INTO "{table}" ({column_list(columns)}) VALUES ({marks}){skipping}'
        with ids_left(self, database, table), peewee.__exception_wrapper__:
            cursor = database.cursor()
            cursor.executemany(sql, rows)
            return cursor.rowcount

    def insert_one(self, database: peewee.Database, table: str, columns: list[str], row: tuple) -> int:
        """INSERT one row (values already converted for the driver); its new id."""
        sql = f'INSERT INTO "{table}" ({column_list(columns)}) VALUES ({", ".join("?" * len(columns))})'
        with ids_left(self, database, table):
            return database.execute_sql(sql, row).lastrowid

    def insert_one_with_postings(
        self, database: peewee.Database, table: str, columns: list[str], row: tuple, postings: MemoryPostings
    ) -> int:
        """INSERT one memory row (values converted for the driver) and its postings in one transaction
        (statements cost no round trip in process); its id."""
        with database.atomic():
            memory_id = self.insert_one(database, table, columns, row)
            owner = (memory_id, postings.user_id, postings.namespace)
            self.insert_rows(
                database, postings.documents_table, DOCUMENT_COLUMNS, [(*owner, postings.length)], False
            )
            terms = [(*owner, term, tf, postings.length) for term, tf in postings.counts]
            if terms:
                self.insert_rows(database, postings.terms_table, TERM_COLUMNS, terms, False)
        return memory_id

    def truncate(self, database: peewee.Database, tables: list[str]) -> None:
        for table in tables:
            database.execute_sql(f'DELETE FROM "{table}"')
        if database.table_exists("sqlite_sequence"):
            database.execute_sql("DELETE FROM sqlite_sequence")

    # --- migrations ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def foreign_keys_off(self, database: peewee.Database) -> Iterator[None]:
        """Foreign keys unenforced for the block: a table rebuild inside a transaction must not cascade.

        peewee-migrate opens its transaction before the migrator could turn them off itself.
        """
        enabled = bool(database.pragma("foreign_keys"))
        if enabled:
            database.pragma("foreign_keys", 0)
        try:
            yield
        finally:
            if enabled:
                database.pragma("foreign_keys", 1)

    def foreign_key_violations(self, database: peewee.Database) -> list:
        """Rows breaking a foreign key (checked after each migration, since enforcement was off)."""
        return database.execute_sql("PRAGMA foreign_key_check").fetchall()

    def render_sql(self, database: peewee.Database, sql: str, params) -> str:
        """`sql` with its `?` parameters inlined as SQLite literals, as the preview prints it."""
        return sqlite_sql.inline_params(sql, list(params))

    # --- engine helpers: the recall score and clusters -------------------------------------

    def age_seconds(self, column, now: dt.datetime):
        """Whole seconds from `column` to `now` as an integer expression (exact: microseconds parsed).

        Rounds toward zero, which is the floor for every non-negative age (the score treats any
        negative age as 0, so the two roundings never disagree where it matters).
        """
        whole = peewee.fn.unixepoch(peewee.fn.substr(column, 1, 19))
        micros = peewee.fn.substr(column, 21, 6).cast("INTEGER")
        column_us = whole * 1_000_000 + micros
        return (peewee.Value(epoch_microseconds(now), converter=False) - column_us) / 1_000_000

    def clamp(self, value, low, high):
        """`value` limited to [low, high] (evaluated once)."""
        return peewee.fn.min(peewee.fn.max(value, low), high)

    # --- the catalogue ------------------------------------------------------------------------

    def tables(self, database: peewee.Database) -> list[str]:
        """The application tables: SQLite's internal ones and the shadow tables of virtual tables left out."""
        sql = SQLITE_TABLES_UNSHADOWED if sqlite3.sqlite_version_info >= (3, 37) else SQLITE_TABLES
        return sorted(name for (name,) in database.execute_sql(sql).fetchall())

    def columns(self, database: peewee.Database, table_names) -> dict[str, dict[str, Column]]:
        """{table: {column: Column}} for those of `table_names` that exist, columns in table order."""
        found: dict[str, dict[str, Column]] = {}
        existing = set(self.tables(database))
        for table in table_names:
            if table in existing:
                rows = database.execute_sql(f"PRAGMA table_info({quoted(table)})").fetchall()
                found[table] = {
                    name: Column(kind.upper(), not not_null, bool(primary_key), default)
                    for _, name, kind, not_null, default, primary_key in rows
                }
        return found

    def rename_table(self, database: peewee.Database, old: str, new: str) -> None:
        """Rename a table without rewriting (or failing on) views that name it."""
        legacy = database.execute_sql("PRAGMA legacy_alter_table").fetchone()[0]
        database.execute_sql("PRAGMA legacy_alter_table = 1")
        try:
            database.execute_sql(f"ALTER TABLE {quoted(old)} RENAME TO {quoted(new)}")
        finally:
            database.execute_sql(f"PRAGMA legacy_alter_table = {int(legacy)}")

    def misread_index_columns(self, database: peewee.Database, table_names) -> list[str]:
        """Indexes on `table_names` that name a column the table lacks.

        SQLite reads a double-quoted name that is no column as a string literal, so such an index
        is built on a constant instead of failing: `CREATE INDEX i ON t ("no_such_column")`.
        """
        problems = []
        for table, table_columns in self.columns(database, table_names).items():
            known = {name.lower() for name in table_columns}
            rows = database.execute_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL ORDER BY name",
                (table,),
            ).fetchall()
            for index, sql in rows:
                problems += [
                    f'index {index} on {table} names "{name}", which is not a column of {table} '
                    "(SQLite would index the string instead)"
                    for name in sqlite_sql.quoted_names_after_on(sql)
                    if name.lower() not in known
                ]
        return problems


def epoch_microseconds(moment: dt.datetime) -> int:
    """Exact microseconds since the Unix epoch of an aware (or naive UTC) datetime."""
    return (to_utc(moment) - EPOCH) // dt.timedelta(microseconds=1)
