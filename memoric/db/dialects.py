"""What differs between SQLite and PostgreSQL, behind one interface.

`MemoryStore` asks its dialect for the SQL of JSON containment, array overlap, age in days,
the PostgreSQL-only indexes, a fast table reset, a read snapshot and the reservation of ids
(raising the id counter under a short lock); the migration runner asks it for foreign-key
handling around a run and for the literal SQL of a preview. Nothing outside `memoric.db` knows
which dialect it runs on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import os
from collections.abc import Iterator

import peewee

from memoric.db import jsonfilter
from memoric.db.connection import PRIVATE_FILE_MODE
from memoric.db.models import GIN_INDEXES, dump_json, sqlite_time, to_utc

SECONDS_PER_DAY = 86400.0
# Rows inserted into a GIN index go to its pending list first, which every search scans; the
# default 4 MB list made a containment search take 5 ms at 100k rows, 256 kB keeps it under one,
# and bulk inserts are no slower (they still merge the list in batches).
GIN_PENDING_LIST_LIMIT = "256kB"
COPY_CHUNK = 1 << 20  # characters handed to the server per read of a COPY
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The guard generated migration files put around SQL for PostgreSQL alone (a file runs on both).
POSTGRES_ONLY = "if isinstance(database, pw.PostgresqlDatabase):"


class SqliteDialect:
    name = "sqlite"
    # Whether a user's metadata filter first looks among the user's newest rows (see
    # `MemoryStore._from_newest_rows`): SQLite walks that user's index newest first anyway.
    window_first = False

    def prepare(self, database: peewee.Database) -> None:
        """Register the exact containment function on every connection of `database`."""
        database.register_function(
            jsonfilter.sqlite_contains_function, jsonfilter.SQLITE_CONTAINS_FUNCTION, 2, deterministic=True
        )

    def json_contains(self, column, pattern: dict, *, indexed: bool = True):
        """The exact containment test (there is no JSON index to use or avoid)."""
        return jsonfilter.sqlite_contains(column, pattern)

    def in_values(self, column, values: list[str]):
        """`column IN values`, the list bound as one JSON parameter: any length, whatever the
        build's limit on host parameters (32766 by default).
        """
        return peewee.Expression(column, "IN", _json_values(values))

    def array_overlaps(self, column, values: list[str]):
        """True where the JSON array in `column` shares an element with `values` (one parameter)."""
        return peewee.fn.EXISTS(
            peewee.NodeList(
                (
                    peewee.SQL("SELECT 1 FROM json_each("),
                    column,
                    peewee.SQL(") WHERE json_each.value IN"),
                    _json_values(values),
                )
            )
        )

    def age_days(self, column, now: dt.datetime):
        """Days between `column` (a timestamp) and `now`, as a float expression."""
        now_text = sqlite_time(to_utc(now))
        return peewee.fn.julianday(peewee.Value(now_text, converter=False)) - peewee.fn.julianday(column)

    def create_extra_indexes(self, database: peewee.Database) -> None:
        """SQLite needs none beyond the models' own."""

    def try_lock(self, database: peewee.Database, name: str):
        """Take the named lock if free (an exclusive flock on a file beside the database)."""
        path = f"{database.database}.{name}.lock"
        handle = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            return None
        return handle

    def unlock(self, database: peewee.Database, handle) -> bool:
        """Release the lock; True (a file lock outlives any connection)."""
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)
        return True

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

    def reserve_ids(
        self, database: peewee.Database, table: str, column: str, *, above: int, count: int
    ) -> int:
        """Keep new rows from ids up to max(`above`, top + `count`); top, the highest id used so far.

        Inside BEGIN IMMEDIATE (no other writer meanwhile) the table's `sqlite_sequence` entry is
        raised, never lowered. A table without AUTOINCREMENT has no counter: the caller must write
        a row with the highest id in the same transaction (`has_id_counter`).
        """
        with database.atomic():
            top = database.execute_sql(f'SELECT COALESCE(MAX("{column}"), 0) FROM "{table}"').fetchone()[0]
            if not self.has_id_counter(database, table):
                return top
            entry = database.execute_sql(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
            ).fetchone()
            counter = 0 if entry is None else entry[0]
            top = max(top, counter)
            wanted = max(above, top + count)
            if entry is None:
                database.execute_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, wanted))
            elif wanted > counter:
                database.execute_sql("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (wanted, table))
        return top

    def insert_rows(
        self,
        database: peewee.Database,
        table: str,
        columns: list[str],
        rows: list[tuple],
        skip_existing: bool,
    ) -> int:
        """INSERT `rows` (values already converted for the driver) in one `executemany`; rows inserted."""
        verb = "INSERT OR IGNORE" if skip_existing else "INSERT"
        marks = ", ".join("?" * len(columns))
        sql = f'{verb} INTO "{table}" ({_column_list(columns)}) VALUES ({marks})'
        with peewee.__exception_wrapper__:
            cursor = database.cursor()
            cursor.executemany(sql, rows)
            return cursor.rowcount

    def insert_one(self, database: peewee.Database, table: str, columns: list[str], row: tuple) -> int:
        """INSERT one row (values already converted for the driver); its new id."""
        sql = f'INSERT INTO "{table}" ({_column_list(columns)}) VALUES ({", ".join("?" * len(columns))})'
        return database.execute_sql(sql, row).lastrowid

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
        return _inline_sqlite_params(sql, list(params))

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

    def json_text(self, column, key: str):
        """The string at `column.key`, or NULL when missing or not a JSON string."""
        path = _text(f'$."{key}"')
        return peewee.Case(
            None, [(peewee.fn.json_type(column, path) == "text", peewee.fn.json_extract(column, path))]
        )


class PostgresDialect:
    name = "postgresql"
    window_first = True

    def prepare(self, database: peewee.Database) -> None:
        """Cap the GIN pending list this store's sessions leave behind (see GIN_PENDING_LIST_LIMIT).

        Set for this connection and, through the connect options, for every later one.
        """
        setting = f"-c gin_pending_list_limit={GIN_PENDING_LIST_LIMIT}"
        options = database.connect_params.get("options")
        database.connect_params["options"] = f"{options} {setting}" if options else setting
        if not database.is_closed():
            database.execute_sql(f"SET gin_pending_list_limit = '{GIN_PENDING_LIST_LIMIT}'")

    def json_contains(self, column, pattern: dict, *, indexed: bool = True):
        """`@>`, served by the GIN index unless not `indexed` (see `jsonfilter.postgres_contains`)."""
        return jsonfilter.postgres_contains(column, pattern, indexed=indexed)

    def in_values(self, column, values: list[str]):
        """`column IN (...)`: PostgreSQL takes a list of any length."""
        return column.in_(values)

    def array_overlaps(self, column, values: list[str]):
        """`column ?| array[...]`: served by the GIN index on the JSONB array."""
        return peewee.Expression(column, "?|", peewee.Value(list(values), converter=False, unpack=False))

    def age_days(self, column, now: dt.datetime):
        now_value = peewee.Value(to_utc(now), converter=False)
        seconds = peewee.fn.EXTRACT(
            peewee.NodeList((peewee.SQL("EPOCH FROM"), now_value, peewee.SQL("-"), column))
        )
        return seconds / SECONDS_PER_DAY

    def try_lock(self, database: peewee.Database, name: str):
        """Take the named session-level advisory lock if free (held by this thread's connection)."""
        key = lock_key(name)
        taken = database.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        return (key, database.connection()) if taken else None

    def unlock(self, database: peewee.Database, handle) -> bool:
        """Release the lock; False when the connection holding it was lost (and the lock with it)."""
        key, connection = handle
        if database.is_closed() or database.connection() is not connection or database.connection_lost():
            return False
        database.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))
        return True

    def create_extra_indexes(self, database: peewee.Database) -> None:
        for name in GIN_INDEXES:
            database.execute_sql(gin_index_sql(name))

    @contextlib.contextmanager
    def snapshot(self, database: peewee.Database):
        """One REPEATABLE READ, read-only transaction: every read in it sees the moment the block
        starts (its first query, made at once, takes the snapshot)."""
        with database.transaction(isolation_level="REPEATABLE READ"):
            database.execute_sql("SET TRANSACTION READ ONLY")
            database.execute_sql("SELECT 1")
            yield

    def has_id_counter(self, database: peewee.Database, table: str) -> bool:
        """Always: every id column of memoric's tables draws from a sequence."""
        return True

    def reserve_ids(
        self, database: peewee.Database, table: str, column: str, *, above: int, count: int
    ) -> int:
        """Keep the id sequence from handing out ids up to max(`above`, top + `count`); top.

        top is the highest id handed out or stored. `LOCK ... IN EXCLUSIVE MODE` waits for every
        transaction that is inserting (an INSERT locks the table before it draws from the
        sequence) and holds new ones back for this short transaction, so no id drawn before the
        lock is higher than the sequence says; the sequence is then raised, never lowered.
        """
        with database.atomic():
            database.execute_sql(f'LOCK TABLE "{table}" IN EXCLUSIVE MODE')
            sequence = database.execute_sql(
                "SELECT pg_get_serial_sequence(%s, %s)", (f'"{table}"', column)
            ).fetchone()[0]
            last, called = database.execute_sql(f"SELECT last_value, is_called FROM {sequence}").fetchone()
            handed_out = last if called else last - 1
            stored = database.execute_sql(f'SELECT COALESCE(MAX("{column}"), 0) FROM "{table}"').fetchone()[0]
            top = max(handed_out, stored)
            wanted = max(above, top + count)
            if wanted > handed_out:
                database.execute_sql("SELECT setval(%s, %s, true)", (sequence, wanted))
        return top

    def insert_rows(
        self,
        database: peewee.Database,
        table: str,
        columns: list[str],
        rows: list[tuple],
        skip_existing: bool,
    ) -> int:
        """Insert `rows` (values already converted for the driver); the number inserted.

        New rows go through `COPY ... FROM STDIN` (half the server's work of a multi-row INSERT);
        `skip_existing` needs `ON CONFLICT DO NOTHING`, which only INSERT has.
        """
        from psycopg2.extras import execute_values

        with peewee.__exception_wrapper__:
            cursor = database.cursor()
            if not skip_existing:
                lines = io.StringIO("".join(map(copy_line, rows)))
                cursor.copy_expert(f'COPY "{table}" ({_column_list(columns)}) FROM STDIN', lines, COPY_CHUNK)
                return cursor.rowcount
            sql = f'INSERT INTO "{table}" ({_column_list(columns)}) VALUES %s ON CONFLICT DO NOTHING'
            execute_values(cursor, sql, rows, page_size=len(rows))
            return cursor.rowcount

    def insert_one(self, database: peewee.Database, table: str, columns: list[str], row: tuple) -> int:
        """INSERT one row (values already converted for the driver); its new id."""
        marks = ", ".join(["%s"] * len(columns))
        sql = f'INSERT INTO "{table}" ({_column_list(columns)}) VALUES ({marks}) RETURNING "id"'
        return database.execute_sql(sql, row).fetchone()[0]

    def truncate(self, database: peewee.Database, tables: list[str]) -> None:
        quoted = ", ".join(f'"{table}"' for table in tables)
        database.execute_sql(f"TRUNCATE {quoted} RESTART IDENTITY")

    # --- migrations ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def foreign_keys_off(self, database: peewee.Database) -> Iterator[None]:
        """Nothing to turn off: PostgreSQL never cascades a table rebuild (it has none)."""
        yield

    def foreign_key_violations(self, database: peewee.Database) -> list:
        """None: PostgreSQL checks foreign keys at every statement."""
        return []

    def render_sql(self, database: peewee.Database, sql: str, params) -> str:
        """`sql` with its parameters inlined as the driver sends them, as the preview prints it."""
        return database.cursor().mogrify(sql, params).decode()

    # --- engine helpers: the recall score and clusters -------------------------------------

    def age_seconds(self, column, now: dt.datetime):
        """Whole seconds from `column` to `now`, rounded down, as a bigint expression."""
        now_value = peewee.Value(to_utc(now), converter=False)
        seconds = peewee.fn.EXTRACT(
            peewee.NodeList((peewee.SQL("EPOCH FROM"), now_value, peewee.SQL("-"), column))
        )
        return peewee.fn.FLOOR(seconds).cast("BIGINT")

    def clamp(self, value, low, high):
        """`value` limited to [low, high] (evaluated once)."""
        return peewee.fn.LEAST(peewee.fn.GREATEST(value, low), high)

    def json_text(self, column, key: str):
        """The string at `column.key`, or NULL when missing or not a JSON string."""
        value = peewee.Expression(column, "->", _text(key))
        text = peewee.Expression(column, "->>", _text(key))
        return peewee.Case(None, [(peewee.fn.jsonb_typeof(value) == "string", text)])


def gin_index_sql(name: str, table: str = "memories", definition: tuple[str, str] | None = None) -> str:
    """The DDL of a PostgreSQL GIN index (default: one of the GIN indexes of `memories`)."""
    column, opclass = definition or GIN_INDEXES[name]
    return f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" USING GIN ("{column}" {opclass})'


def postgres_only_code(code: str, indent: str) -> str:
    """Migration-file code running `code` on PostgreSQL only (the file itself runs on both dialects)."""
    return f"{POSTGRES_ONLY}\n{indent}{code}"


def _inline_sqlite_params(sql: str, params: list) -> str:
    """Replace each `?` outside quotes with the next parameter as a SQLite literal."""
    out, quote = [], None
    for char in sql:
        if quote:
            quote = None if char == quote else quote
        elif char in ("'", '"'):
            quote = char
        elif char == "?" and params:
            out.append(_sqlite_literal(params.pop(0)))
            continue
        out.append(char)
    return "".join(out)


def _sqlite_literal(value) -> str:
    """`value` written as a SQLite literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    return "'" + str(value).replace("'", "''") + "'"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a lock name."""
    digest = hashlib.sha256(f"memoric:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def epoch_microseconds(moment: dt.datetime) -> int:
    """Exact microseconds since the Unix epoch of an aware (or naive UTC) datetime."""
    return (to_utc(moment) - EPOCH) // dt.timedelta(microseconds=1)


def copy_line(row: tuple) -> str:
    """One row in COPY's text format: tab-separated fields, `\\N` for NULL, a newline at the end."""
    return "\t".join([_COPY_FORMATS[type(value)](value) for value in row]) + "\n"


def _copy_text(text: str) -> str:
    """Text with COPY's escapes: backslash, tab, newline and carriage return."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _copy_json(document) -> str:
    """A psycopg2 `Json` parameter (what `BinaryJSONField.db_value` gives) as its JSON text."""
    return _copy_text(document.dumps(document.adapted))


class _CopyFormats(dict):
    """type -> function writing a value of it for COPY; subclasses and psycopg2's Json looked up once."""

    def __missing__(self, kind: type):
        from psycopg2.extras import Json

        self.setdefault(Json, _copy_json)
        for base in kind.__mro__:
            if base in self:
                self[kind] = self[base]
                return self[kind]
        raise TypeError(f"cannot COPY a {kind.__name__} value")


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_FORMATS = _CopyFormats({
    str: _copy_text,
    int: str,
    bool: lambda value: "t" if value else "f",
    type(None): lambda value: "\\N",
    dt.datetime: dt.datetime.isoformat,
})  # fmt: skip


def _column_list(columns: list[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


def _text(value: str) -> peewee.Value:
    return peewee.Value(value, converter=False)


def _json_values(values: list[str]) -> peewee.Node:
    """`(SELECT value FROM json_each(?))`: the strings of `values` as a SQLite row set."""
    return peewee.NodeList(
        (peewee.SQL("(SELECT value FROM json_each("), _text(dump_json(values)), peewee.SQL("))"))
    )


def dialect_for(name: str):
    return {"sqlite": SqliteDialect, "postgresql": PostgresDialect}[name]()
