"""PostgreSQL: JSONB with GIN indexes, session advisory locks, sequences, bulk inserts by `COPY`."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator

import peewee

from memoric.db.catalogue import Column, quoted
from memoric.db.chunks import chunks
from memoric.db.dialects import citus
from memoric.db.dialects.base import (
    DOCUMENT_COLUMNS,
    TERM_COLUMNS,
    Dialect,
    MemoryPostings,
    column_list,
    ids_left,
    skipping_taken,
)
from memoric.db.dialects.postgres_copy import copy_rows
from memoric.db.dialects.postgres_ddl import gin_index_sql
from memoric.db.dialects.postgres_ids import SequenceIds
from memoric.db.dialects.postgres_session import with_session_settings
from memoric.db.models import GIN_INDEXES, to_utc
from memoric.errors import ConfigError

# A session's temporary tables live in the schema pg_temp_N; PostgreSQL reserves the prefix pg_,
# so no other schema has such a name.
TEMPORARY_SCHEMA_PREFIX = "pg_temp_"
DEADLOCK_DETECTED = "40P01"  # the SQLSTATE of a transaction ended to break a deadlock
VALUES_CHUNK = 1000  # rows per INSERT ... VALUES statement
# The schema of the relation each name leads to through the session's search_path (NULL: none).
SCHEMAS_NAMED = (
    "SELECT name, (SELECT n.nspname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE c.oid = to_regclass(quote_ident(name))) FROM unnest(%s::text[]) AS names (name)"
)
POSTGRES_COLUMNS = """
SELECT cls.relname, att.attname, format_type(att.atttypid, att.atttypmod), att.attnotnull,
       COALESCE(pg_get_expr(def.adbin, def.adrelid),
                CASE WHEN att.attidentity <> '' THEN 'GENERATED AS IDENTITY' END),
       COALESCE(att.attnum = ANY(pk.conkey), false)
FROM pg_class AS cls
JOIN pg_namespace AS ns ON ns.oid = cls.relnamespace
JOIN pg_attribute AS att ON att.attrelid = cls.oid AND att.attnum > 0 AND NOT att.attisdropped
LEFT JOIN pg_attrdef AS def ON def.adrelid = cls.oid AND def.adnum = att.attnum
LEFT JOIN pg_constraint AS pk ON pk.conrelid = cls.oid AND pk.contype = 'p'
WHERE ns.nspname = current_schema() AND cls.relkind IN ('r', 'p') AND cls.relname = ANY(%s)
ORDER BY cls.relname, att.attnum
"""


class PostgresDialect(SequenceIds, Dialect):
    """PostgreSQL: JSONB with GIN indexes, advisory locks, sequences, `COPY`."""

    name = "postgresql"
    window_first = True

    def may_hold_memoric(self, url: str) -> bool:
        """True: connecting to a server's database changes nothing, and tells."""
        return True

    def database_file(self, url: str) -> str | None:
        """None: a server holds the database."""
        return None

    def prepare(self, database: peewee.Database) -> None:
        """Give this store's sessions the settings memoric's answers depend on (`SESSION_SETTINGS`),
        through the connect options of every connection (called before the first); they come
        after any of the URL's own, so they win."""
        database.connect_params["options"] = with_session_settings(database.connect_params.get("options"))

    def contains_row_by_row(self, column, pattern: dict):
        """`jsonb_contains(column, pattern)`: `@>` as a function call, which the planner checks row
        by row on the rows another index yields instead of consulting the GIN index."""
        return peewee.fn.jsonb_contains(column, column.db_value(pattern))

    def user_holds(self, database: peewee.Database, memory, user_id, pattern: dict) -> list:
        """`{user_id: metadata} @> {user_id: pattern}`, served by the GIN index of that expression
        (USER_METADATA), which finds one user's holders of a value without reading anyone else's;
        and `user_id = ?`, which the expression implies, for the planner's estimate.

        The equality is written `(user_id = ?) IS TRUE` outside Citus (where it routes the
        statement, it stays plain): estimated as the equality is, but no index can serve it, so
        the planner neither ANDs the user's whole B-tree range into the bitmap nor walks the user's
        rows, or everyone's newest, testing each one. A pattern without a scalar (`{"tags": []}`)
        gives jsonb_path_ops nothing to look up: it is the plain test of the user's rows.
        """
        if not _has_scalar(pattern):
            return [memory.user_id == user_id, memory.metadata.contains(pattern)]
        lhs = _under_user(peewee.Cast(memory.user_id, "text"), memory.metadata)
        wanted = peewee.Cast(memory.metadata.db_value(pattern), "jsonb")
        contained = peewee.Expression(lhs, "@>", _under_user(peewee.Cast(user_id, "text"), wanted))
        if citus.routed(database, memory._meta.table_name):
            return [contained, memory.user_id == user_id]
        return [contained, peewee.Expression(memory.user_id == user_id, "IS", peewee.SQL("TRUE"))]

    def by_code_point(self, column):
        """`column COLLATE "C"`: UTF-8's bytes, in the order of their code points."""
        return column.collate('"C"')

    def in_values(self, column, values: list[str]):
        """`column IN (...)`: PostgreSQL takes a list of any length."""
        return column.in_(values)

    def locked_rows(
        self, database: peewee.Database, query: peewee.Select, *, deletes_only: bool = False
    ) -> list[dict]:
        lock = "FOR KEY SHARE" if deletes_only else "FOR UPDATE"
        if citus.routed(database, query.model._meta.table_name):
            return citus.locked_rows(query, lock)
        return list(query.for_update(lock).dicts())

    def is_deadlock(self, error: BaseException) -> bool:
        """SQLSTATE 40P01, deadlock_detected."""
        return getattr(error, "pgcode", None) == DEADLOCK_DETECTED

    def hold_for_drop(self, database: peewee.Database, tables: list[str]) -> None:
        """ACCESS EXCLUSIVE on each local table; a distributed one is left to its DROP (Citus would
        lock it on every worker)."""
        for table in tables:
            if not citus.routed(database, table):
                database.execute_sql(f"LOCK TABLE {quoted(table)} IN ACCESS EXCLUSIVE MODE")

    def hold_writes(self, database: peewee.Database, table: str) -> None:
        """The ROW EXCLUSIVE lock every INSERT, UPDATE and DELETE of `table` takes; nothing for a
        distributed table (Citus would lock it on every worker, and its schema is past 006)."""
        if not citus.routed(database, table):
            database.execute_sql(f'LOCK TABLE "{table}" IN ROW EXCLUSIVE MODE')

    def table_triggers(self, database: peewee.Database) -> dict:
        """Nothing: PostgreSQL alters a table in place, its triggers kept."""
        return {}

    def restore_rebuilt_triggers(self, database: peewee.Database, before: dict, sent: list[str]) -> None:
        """Nothing: no table is rebuilt."""

    def schemas_named(self, database: peewee.Database, tables: list[str]) -> dict[str | None, str | None]:
        """Through the search_path, a temporary table first."""
        found = database.execute_sql(SCHEMAS_NAMED, (tables,)).fetchall()
        return {**dict(found), None: database.execute_sql("SELECT current_schema()").fetchone()[0]}

    def try_lock(self, database: peewee.Database, name: str):
        """Take the named session-level advisory lock if free (held by this thread's connection,
        whose session is kept from ending for idleness meanwhile: `keep_session`)."""
        key = lock_key(name)
        taken = database.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if not taken:
            return None
        database.keep_session()
        return key, database.connection()

    def unlock(self, database: peewee.Database, handle) -> bool:
        """Release the lock; False when the connection holding it was lost (and the lock with it),
        or is another thread's."""
        key, connection = handle
        # Not through another thread's connection, which may be waiting on this thread's locks.
        if database.is_closed() or database.connection() is not connection or database.connection_lost():
            return False
        with database.bound_to_connection():  # on the lock's connection, or not at all
            released = database.execute_sql("SELECT pg_advisory_unlock(%s)", (key,)).fetchone()[0]
            database.let_session_idle()
        return released

    def create_extra_indexes(self, database: peewee.Database) -> None:
        for name in GIN_INDEXES:
            database.execute_sql(gin_index_sql(name))

    def distribute(self, database: peewee.Database) -> None:
        """On Citus (its extension installed in the database): every table distributed by user_id."""
        if citus.installed(database):
            citus.distribute(database)

    def select_writes(self, sql: str) -> bool:
        """Whether `sql` calls one of Citus's functions that change tables."""
        return citus.changes_tables(sql)

    def repair_extra_indexes(self, database: peewee.Database) -> None:
        """None: PostgreSQL rewrites a table with its indexes."""

    def routes_by_user(self, database: peewee.Database, table: str) -> bool:
        """On Citus, where `table` is distributed by user."""
        return citus.routed(database, table)

    def refuse_a_temporary_schema(self, database: peewee.Database) -> None:
        """ConfigError where the schema memoric builds in is the session's temporary one (a search
        path starting with `pg_temp`): the tables, and all saved in them, go when it closes."""
        (schema,) = database.execute_sql("SELECT current_schema()").fetchone()
        if schema is not None and schema.startswith(TEMPORARY_SCHEMA_PREFIX):
            raise ConfigError(
                "the first schema on the search path is the session's temporary schema (pg_temp): "
                "the tables memoric would build there, and every memory saved in them, would be "
                "dropped when the connection closes. Put a persistent schema first, e.g. "
                "?options=-c%20search_path%3Dpublic in the database URL; nothing was built"
            )

    def hidden_schemas_holding(self, database: peewee.Database, table: str) -> list[str]:
        """The schemas after `current_schema()` on the search path that hold `table`, in order."""
        rows = database.execute_sql(
            "SELECT schema FROM unnest(current_schemas(false)) WITH ORDINALITY AS path (schema, place) "
            "WHERE schema <> current_schema() AND to_regclass(format('%%I.%%I', schema, %s)) IS NOT NULL "
            "ORDER BY place",
            (table,),
        )
        return [schema for (schema,) in rows.fetchall()]

    def schema_changed(self, database: peewee.Database) -> None:
        """Forget which tables Citus distributes (`citus.routed`)."""
        citus.forget_layout(database)

    def drop_extra_tables(self, database: peewee.Database) -> None:
        """None: the GIN indexes go with their table."""

    def metadata_key(self, database: peewee.Database, pattern: dict, user_id: str | None, enough: int | None):
        """None: the GIN index serves `@>` itself."""
        return None

    @contextlib.contextmanager
    def snapshot(self, database: peewee.Database):
        """One REPEATABLE READ, read-only transaction: every read in it sees the moment the block
        starts (its first query, made at once, takes the snapshot)."""
        with database.transaction(isolation_level="REPEATABLE READ"):
            database.execute_sql("SET TRANSACTION READ ONLY")
            database.execute_sql("SELECT 1")
            yield

    def insert_rows(
        self,
        database: peewee.Database,
        table: str,
        columns: list[str],
        rows: list[tuple],
        skip_existing: bool,
        ids_given: bool = True,
    ) -> int:
        """Insert `rows` (values already converted for the driver); the number inserted.

        New rows go through `COPY ... FROM STDIN` (half the server's work of a multi-row INSERT);
        `skip_existing` needs `ON CONFLICT DO NOTHING`, which only INSERT has.
        """
        from psycopg2.extras import execute_values

        with (
            _citus_transaction(database, table, columns),
            ids_left(self, database, table),
            peewee.__exception_wrapper__,
        ):
            if ids_given:
                rows = citus.untaken_rows(database, table, columns, rows, skip_existing)
            cursor = database.cursor()
            if not rows:
                return 0
            if not skip_existing:
                return copy_rows(cursor, table, columns, rows)
            # the constraint, not its columns: on Citus the key is (id, user_id), and `untaken_rows`
            # has left out the ids another user holds
            skipping = skipping_taken(table, 'ON CONSTRAINT "memories_pkey"')
            sql = f'INSERT INTO "{table}" ({column_list(columns)}) VALUES %s{skipping}'
            execute_values(cursor, sql, rows, page_size=len(rows))
            return cursor.rowcount

    def insert_one(self, database: peewee.Database, table: str, columns: list[str], row: tuple) -> int:
        """INSERT one row (values already converted for the driver); its new id."""
        marks = ", ".join(["%s"] * len(columns))
        sql = f'INSERT INTO "{table}" ({column_list(columns)}) VALUES ({marks}) RETURNING "id"'
        with _citus_transaction(database, table, columns), ids_left(self, database, table):
            citus.untaken_rows(database, table, columns, [row], skip_existing=False)
            with database.autocommitted():
                return database.execute_sql(sql, row).fetchone()[0]

    def insert_one_with_postings(
        self, database: peewee.Database, table: str, columns: list[str], row: tuple, postings: MemoryPostings
    ) -> int:
        """One statement (atomic by itself, one round trip): the memory's INSERT, then its document
        row and its terms (from two arrays) in data-modifying WITH clauses; its new id.

        On Citus, three statements in one transaction instead (`_insert_one_then_postings`).
        """
        if citus.routed(database, table) or ("id" in columns and citus.distributed_now(database, table)):
            return self._insert_one_then_postings(database, table, columns, row, postings)
        values = ", ".join(["%s"] * len(columns))
        sql = (
            f'WITH "new" AS (INSERT INTO "{table}" ({column_list(columns)}) VALUES ({values}) '
            'RETURNING "id"), '
            f'"document" AS (INSERT INTO "{postings.documents_table}" ({column_list(DOCUMENT_COLUMNS)}) '
            'SELECT "id", %s, %s, %s FROM "new"), '
            f'"terms" AS (INSERT INTO "{postings.terms_table}" ({column_list(TERM_COLUMNS)}) '
            'SELECT "new"."id", %s, %s, "t"."term", "t"."tf", %s FROM "new", '
            'unnest(%s::text[], %s::integer[]) AS "t" ("term", "tf")) '
            'SELECT "id" FROM "new"'
        )
        owner = (postings.user_id, postings.namespace)
        terms = [term for term, _ in postings.counts]
        frequencies = [tf for _, tf in postings.counts]
        params = (*row, *owner, postings.length, *owner, postings.length, terms, frequencies)
        with ids_left(self, database, table), database.autocommitted():
            return database.execute_sql(sql, params).fetchone()[0]

    def _insert_one_then_postings(
        self, database: peewee.Database, table: str, columns: list[str], row: tuple, postings: MemoryPostings
    ) -> int:
        """Citus: the memory's INSERT, its document row's, its terms' (VALUES lists), in one
        transaction; its new id. Each is routed to the user's shard, whereas Citus plans each INSERT
        of a WITH as a step of its own through the coordinator, which needs every worker up."""
        with database.atomic():
            memory_id = self.insert_one(database, table, columns, row)
            owner = (memory_id, postings.user_id, postings.namespace)
            document = [(*owner, postings.length)]
            _insert_values(database, postings.documents_table, DOCUMENT_COLUMNS, document)
            terms = [(*owner, term, tf, postings.length) for term, tf in postings.counts]
            _insert_values(database, postings.terms_table, TERM_COLUMNS, terms)
        return memory_id

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

    # --- the catalogue ------------------------------------------------------------------------

    def tables(self, database: peewee.Database) -> list[str]:
        """The tables of the current schema."""
        return database.get_tables()

    def columns(self, database: peewee.Database, table_names) -> dict[str, dict[str, Column]]:
        """{table: {column: Column}} for those of `table_names` that exist, columns in table order."""
        found: dict[str, dict[str, Column]] = {}
        rows = database.execute_sql(POSTGRES_COLUMNS, (list(table_names),)).fetchall()
        for table, name, kind, not_null, default, primary_key in rows:
            found.setdefault(table, {})[name] = Column(kind, not not_null, primary_key, default)
        return found

    def rename_table(self, database: peewee.Database, old: str, new: str) -> None:
        """Rename a table (views follow it by reference)."""
        database.execute_sql(f"ALTER TABLE {quoted(old)} RENAME TO {quoted(new)}")

    def misread_index_columns(self, database: peewee.Database, table_names) -> list[str]:
        """None: PostgreSQL refuses an index on a column the table lacks."""
        return []


def _insert_values(database: peewee.Database, table: str, columns: list[str], rows: list[tuple]) -> None:
    """INSERT `rows` as VALUES lists of VALUES_CHUNK rows (one user's rows: one shard on Citus)."""
    row_marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
    for chunk in chunks(rows, VALUES_CHUNK):
        sql = f'INSERT INTO "{table}" ({column_list(columns)}) VALUES ' + ", ".join([row_marks] * len(chunk))
        database.execute_sql(sql, [value for row in chunk for value in row])


def _has_scalar(document) -> bool:
    """Whether a JSON document holds a string, number, boolean or null anywhere."""
    if isinstance(document, dict):
        return any(_has_scalar(value) for value in document.values())
    if isinstance(document, list):
        return any(_has_scalar(value) for value in document)
    return True


def _under_user(user_id, document) -> peewee.Node:
    """`{user_id: document}`, written as USER_METADATA writes it (the planner matches the index by it)."""
    array = peewee.NodeList((peewee.SQL("ARRAY["), user_id, peewee.SQL("]")), glue="")
    return peewee.fn.jsonb_set(peewee.SQL("'{}'::jsonb"), array, document)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a lock name."""
    digest = hashlib.sha256(f"memoric:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _citus_transaction(database: peewee.Database, table: str, columns: list[str]):
    """A transaction around a write to a Citus table, or one that gives ids, outside one (the lock
    `citus.taken_ids` takes lasts to the end of a transaction); nothing otherwise."""
    gives_ids = citus.ID_COLUMNS.get(table) in columns
    if database.in_transaction() or not (gives_ids or citus.routed(database, table)):
        return contextlib.nullcontext()
    return database.atomic()
