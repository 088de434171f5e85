"""`Dialect`: the one interface behind which SQLite and PostgreSQL differ.

`MemoryStore` asks its dialect for the few SQL expressions that differ (age arithmetic, clamping,
`IN` over a long list, containment checked row by row), the dialect-only indexes, locks, a fast
table reset, a read snapshot, bulk inserts and the reservation of ids; the migration runner asks
it for foreign-key handling around a run, the literal SQL of a preview, and the catalogue (tables,
columns, renames, index checks). Nothing outside `memoric.db` knows which dialect it runs on.

A dialect compares equal to its name, so `store.dialect == "sqlite"` reads as it always did.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from typing import NamedTuple

import peewee

from memoric import validation
from memoric.db.catalogue import Column
from memoric.errors import MemoricError


class MemoryPostings(NamedTuple):
    """The text postings of one memory about to be inserted (its id comes from the INSERT)."""

    documents_table: str  # columns memory_id, user_id, namespace, length
    terms_table: str  # columns memory_id, user_id, namespace, term, tf, dl
    user_id: str
    namespace: str | None
    length: int  # the memory's length in terms (dl)
    counts: list[tuple[str, int]]  # (term, tf), sorted by term


DOCUMENT_COLUMNS = ["memory_id", "user_id", "namespace", "length"]
TERM_COLUMNS = ["memory_id", "user_id", "namespace", "term", "tf", "dl"]


class Dialect(abc.ABC):
    """What one SQL dialect does its own way; stateless, every method takes the Database."""

    name: str  # "sqlite" or "postgresql", as `stats()` and exports report it
    # Whether a page of a user's metadata filter probes the user's newest rows first, then walks
    # them or asks the index of the user's values (`memoric.db.newest_rows`).
    window_first: bool

    def __eq__(self, other) -> bool:
        """Equal to the same dialect, and to its name."""
        if isinstance(other, Dialect):
            return self.name == other.name
        return self.name == other if isinstance(other, str) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # --- the store ----------------------------------------------------------------------------

    @abc.abstractmethod
    def database_file(self, url: str) -> str | None:
        """The file holding the database of `url`, or None when a server holds it."""

    @abc.abstractmethod
    def may_hold_memoric(self, url: str) -> bool:
        """Whether the database may hold memoric's tables, seen without opening it the way the
        store does (which may change a file); True when it cannot tell without opening it."""

    @abc.abstractmethod
    def prepare(self, database: peewee.Database) -> None:
        """Set up every connection of `database` as memoric needs it (called before the first)."""

    @abc.abstractmethod
    def contains_row_by_row(self, column, pattern: dict) -> peewee.Node:
        """`column.contains(pattern)` as a test of each row, never a search of a JSON index."""

    @abc.abstractmethod
    def user_holds(self, database: peewee.Database, memory, user_id, pattern: dict) -> list:
        """Conditions saying a memory is `user_id`'s and its metadata contains `pattern`, in the
        form this dialect's indexes serve best."""

    @abc.abstractmethod
    def by_code_point(self, column) -> peewee.Node:
        """`column` (text) to sort by: by code point, as Python sorts strings, whatever the
        database's collation (PostgreSQL's default follows its locale: `_x` before `A`)."""

    @abc.abstractmethod
    def in_values(self, column, values: list[str]) -> peewee.Node:
        """`column IN values`, for a list of any length."""

    @abc.abstractmethod
    def create_extra_indexes(self, database: peewee.Database) -> None:
        """Create the indexes this dialect has beyond the models' own."""

    @abc.abstractmethod
    def distribute(self, database: peewee.Database) -> None:
        """Spread memoric's tables over the nodes of a distributed database; nothing elsewhere."""

    @abc.abstractmethod
    def select_writes(self, sql: str) -> bool:
        """Whether `sql`, a SELECT, changes the schema (a function with effects): a preview shows it."""

    @abc.abstractmethod
    def repair_extra_indexes(self, database: peewee.Database) -> None:
        """Put back what a migration's rebuild of a table took from the dialect's own indexes."""

    @abc.abstractmethod
    def routes_by_user(self, database: peewee.Database, table: str) -> bool:
        """Whether a statement on `table` that names its users goes only where they are (a table
        distributed by user); elsewhere a condition on the users can only mislead the planner."""

    @abc.abstractmethod
    def refuse_a_temporary_schema(self, database: peewee.Database) -> None:
        """ConfigError where the tables memoric would build would not outlive the connection."""

    @abc.abstractmethod
    def hidden_schemas_holding(self, database: peewee.Database, table: str) -> list[str]:
        """The schemas on the search path, after the one memoric uses, that hold `table`: a
        store memoric cannot see from here (none where a database has one namespace)."""

    @abc.abstractmethod
    def schema_changed(self, database: peewee.Database) -> None:
        """The schema of `database` was built, migrated or dropped: forget what the dialect
        remembers of it, and set up what a database holding memoric's tables wants."""

    @abc.abstractmethod
    def drop_extra_tables(self, database: peewee.Database) -> None:
        """Drop the tables this dialect keeps beside memoric's two (its indexes of them)."""

    @abc.abstractmethod
    def metadata_key(self, database: peewee.Database, pattern: dict, user_id: str | None, enough: int | None):
        """The key of `pattern` to look memories up by in this dialect's own metadata index
        (its `holders(id_column)` is the condition, `leading(query)` the query reading by it):
        None where there is none to use (no such index, or every key held by more than
        `enough` memories of `user_id`, or of everyone's when None)."""

    @abc.abstractmethod
    def locked_rows(
        self, database: peewee.Database, query: peewee.Select, *, deletes_only: bool = False
    ) -> list[dict]:
        """The rows of `query` (by id), each locked to the end of the transaction where writers
        do not already exclude one another: a concurrent rebuild of their postings waits, then
        reads what this one committed. `deletes_only`: locked against a delete only (PostgreSQL's
        FOR KEY SHARE), other updates go on."""

    @abc.abstractmethod
    def is_deadlock(self, error: BaseException) -> bool:
        """Whether the driver's `error` is the server ending this transaction to break a deadlock
        (the error alone, not those it was raised from)."""

    @abc.abstractmethod
    def hold_for_drop(self, database: peewee.Database, tables: list[str]) -> None:
        """Take, inside the current transaction, the lock a DROP takes on each of `tables`, so that
        what this transaction counts in them next is what a drop later in it would lose."""

    @abc.abstractmethod
    def hold_writes(self, database: peewee.Database, table: str) -> None:
        """Take, inside the current transaction, the lock every write of `table` takes, so that
        what this transaction reads of the schema next is what its writes will meet: a schema
        change that excludes writers (a migration) is committed before, or waits for it."""

    @abc.abstractmethod
    def table_triggers(self, database: peewee.Database) -> dict:
        """What a migration's table rebuild would drop of the application's own, for
        `restore_rebuilt_triggers`: the triggers on each table ({} where ALTER keeps them)."""

    @abc.abstractmethod
    def restore_rebuilt_triggers(self, database: peewee.Database, before: dict, sent: list[str]) -> None:
        """Re-create (inside the migration's transaction) the triggers `before` lists that a
        rebuild of their table dropped, but those one of the migration's `sent` statements
        dropped by name; MigrationError naming one that cannot be re-created."""

    @abc.abstractmethod
    def schemas_named(self, database: peewee.Database, tables: list[str]) -> dict[str | None, str | None]:
        """Where this session's unqualified names lead: for each of `tables`, the schema of what
        it names (None: nothing), and under None, where an unqualified CREATE TABLE creates.
        memoric names its tables, its history tables among them, without a schema."""

    @abc.abstractmethod
    def try_lock(self, database: peewee.Database, name: str):
        """Take the named cross-process lock if it is free: its handle, or None."""

    @abc.abstractmethod
    def unlock(self, database: peewee.Database, handle) -> bool:
        """Release the lock; False when it was lost before (with its connection)."""

    @abc.abstractmethod
    def snapshot(self, database: peewee.Database) -> contextlib.AbstractContextManager:
        """A block whose reads all see the database as of the moment it starts."""

    @abc.abstractmethod
    def has_id_counter(self, database: peewee.Database, table: str) -> bool:
        """Whether `table` keeps the highest id it ever handed out."""

    @abc.abstractmethod
    def id_top(self, database: peewee.Database, table: str, column: str) -> int:
        """The highest id of `table` used so far: stored, or handed out by its id counter."""

    @abc.abstractmethod
    def reserve_ids(
        self, database: peewee.Database, table: str, column: str, *, above: int, count: int
    ) -> int:
        """Keep new rows from ids up to max(`above`, top + `count`); top, the highest id used so far.

        ValidationError (`reserved_end`), nothing written, when that passes the largest id.
        """

    @abc.abstractmethod
    def new_ids(self, database: peewee.Database, table: str, column: str, count: int) -> list[int]:
        """`count` new ids for rows about to be inserted into `table`, ascending, drawn from its id
        counter as an INSERT would draw them (inside the transaction that inserts the rows);
        "no id left" (MemoricError) when the counter has fewer left."""

    @abc.abstractmethod
    def refuse_exhausted_ids(self, database: peewee.Database, table: str, error: BaseException) -> None:
        """MemoricError ("no id left") when `error`, raised by an INSERT into `table`, means its
        id counter has handed out the largest id there is; otherwise nothing (called only on errors)."""

    @abc.abstractmethod
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

        `ids_given`: whether ids in `rows` come from the caller (an import, explicit ids) rather
        than from the table's own counter; a dialect whose keys cannot refuse a taken id checks those.
        """

    @abc.abstractmethod
    def insert_one(self, database: peewee.Database, table: str, columns: list[str], row: tuple) -> int:
        """INSERT one row (values already converted for the driver); its new id."""

    @abc.abstractmethod
    def insert_one_with_postings(
        self, database: peewee.Database, table: str, columns: list[str], row: tuple, postings: MemoryPostings
    ) -> int:
        """INSERT one memory row (values converted for the driver) and its postings, atomically; its id."""

    @abc.abstractmethod
    def truncate(self, database: peewee.Database, tables: list[str]) -> None:
        """Delete every row of `tables` and restart their ids."""

    @abc.abstractmethod
    def age_seconds(self, column, now: dt.datetime) -> peewee.Node:
        """Whole seconds from `column` (a timestamp) to `now`, as an integer expression."""

    @abc.abstractmethod
    def clamp(self, value, low, high) -> peewee.Node:
        """`value` limited to [low, high] (evaluated once)."""

    # --- migrations ---------------------------------------------------------------------------

    @abc.abstractmethod
    def foreign_keys_off(self, database: peewee.Database) -> contextlib.AbstractContextManager[None]:
        """Foreign keys unenforced for the block, where a table rebuild could otherwise cascade."""

    @abc.abstractmethod
    def foreign_key_violations(self, database: peewee.Database) -> list:
        """Rows breaking a foreign key (checked after each migration)."""

    @abc.abstractmethod
    def render_sql(self, database: peewee.Database, sql: str, params) -> str:
        """`sql` with its parameters inlined as literals, as the `--sql` preview prints it."""

    # --- the catalogue ------------------------------------------------------------------------

    @abc.abstractmethod
    def tables(self, database: peewee.Database) -> list[str]:
        """The application tables of the current schema (the engine's internal ones left out)."""

    @abc.abstractmethod
    def columns(self, database: peewee.Database, table_names) -> dict[str, dict[str, Column]]:
        """{table: {column: Column}} for those of `table_names` that exist, columns in table order."""

    @abc.abstractmethod
    def rename_table(self, database: peewee.Database, old: str, new: str) -> None:
        """Rename a table, leaving views that name it alone."""

    @abc.abstractmethod
    def misread_index_columns(self, database: peewee.Database, table_names) -> list[str]:
        """Problems of indexes on `table_names` that name a column the table lacks."""


def reserved_end(table: str, top: int, above: int, count: int) -> int:
    """max(`above`, `top` + `count`): the highest id a reservation keeps from new rows.

    ValidationError when `count` new ids above `top` would pass the largest id both dialects
    store, which neither SQLite's counter nor a PostgreSQL sequence can be set beyond.
    """
    left = validation.MAX_STORED_ID - top
    if count > left:
        raise validation.ValidationError(
            f"{table} needs {count} new ids but has only {left} left: ids end at "
            f"{validation.MAX_STORED_ID} and it has used them up to {top}; nothing was written"
        )
    return max(above, top + count)


def driver_error(error: BaseException) -> BaseException:
    """The driver's own exception behind a peewee one (peewee raises its own while handling it)."""
    if isinstance(error, peewee.PeeweeException) and error.__context__ is not None:
        return error.__context__
    return error


def no_id_left(table: str) -> MemoricError:
    """The error of a save into `table` once its id counter has handed out the largest id."""
    return MemoricError(
        f"no id left: {table} has handed out the largest id there is ({validation.MAX_STORED_ID}), "
        "so no new row can be saved there; nothing was written"
    )


def skipping_taken(table: str, memory_key: str) -> str:
    """The clause that makes an INSERT skip a row whose key the table holds: a memory whose
    primary key it holds, `memory_key` naming that key as the dialect's ON CONFLICT does (only
    that: a row an application's own constraint refuses is an error naming it, not a row skipped
    and then missed); any other row whose unique key it holds (a cluster's user, topic and
    category)."""
    return f" ON CONFLICT {memory_key} DO NOTHING" if table == "memories" else " ON CONFLICT DO NOTHING"


def column_list(columns: list[str]) -> str:
    """The quoted column names, comma-separated."""
    return ", ".join(f'"{column}"' for column in columns)


@contextlib.contextmanager
def ids_left(dialect: Dialect, database: peewee.Database, table: str):
    """A block of INSERTs into `table`: "no id left" (MemoricError) once its ids are used up, any
    other driver error as it is. Only a failing INSERT pays for the check."""
    try:
        yield
    except peewee.DatabaseError as exc:
        dialect.refuse_exhausted_ids(database, table, exc)
        raise
