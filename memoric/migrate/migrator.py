"""The Migrator every migration runs with: peewee-migrate's, with checks of what each migration
built (index columns, foreign keys, columns memoric's saves cannot fill, the application's
triggers a SQLite rebuild dropped, id counters moved back, memoric's table names led to another
schema), and what a replay or a migration may not do to the run around it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import peewee
from peewee_migrate import Migrator

from memoric.db import catalogue
from memoric.db.dialects import Dialect
from memoric.errors import MigrationError
from memoric.migrate.chains import APP_HISTORY_TABLE, HISTORY_TABLE
from memoric.migrate.transactions import transaction_kept


class _NoRows:
    """The cursor a migration sees while it is only replayed to rebuild the ORM snapshot."""

    rowcount = 0
    lastrowid = None
    description = ()

    def fetchone(self):
        return None

    def fetchall(self):
        return []

    def fetchmany(self, size=None):
        return []

    def __iter__(self):
        return iter(())


@contextlib.contextmanager
def exits_refused() -> Iterator[None]:
    """A migration's SystemExit, or another exception that is not an error (asyncio's
    CancelledError), as a MigrationError: it would end the command as if all went well, or in
    a traceback, the migration undone and nothing said. A stop (KeyboardInterrupt) stays one."""
    try:
        yield
    except (Exception, KeyboardInterrupt):
        raise
    except BaseException as exc:
        said = f" ({exc})" if str(exc) else ""
        raise MigrationError(
            f"it raised {type(exc).__name__}{said}, which ends a program, not a migration: raise an "
            "exception instead"
        ) from exc


def no_rows(real, sql, params=None, *args, **kwargs):
    return _NoRows()


def nothing_to_end(name: str) -> None:
    """A replay's `database.commit()` and the like: it touches no database, so has nothing to end."""


class CheckedMigrator(Migrator):
    """peewee-migrate's Migrator; each migration ends with checks of what it built.

    No index may name a column its table lacks (SQLite would index a string constant instead of
    failing), no row may break a foreign key (SQLite runs migrations without enforcing them), an
    application's migration may not leave memoric's tables a column memoric's inserts cannot
    fill, and no migration may leave memoric's table names leading to another schema. The
    application's triggers a SQLite rebuild dropped are re-created, and id counters it moved back
    raised again. The migration and its operations keep to their transaction (`transaction_kept`).
    """

    def __init__(self, database: peewee.Database, dialect: Dialect, models: list[type[peewee.Model]]) -> None:
        super().__init__(database)
        self.dialect = dialect
        # {memoric's table: {column its INSERTs name: whether it may be NULL}}
        self.writes = {
            model._meta.table_name: {name: field.null for name, field in model._meta.columns.items()}
            for model in models
        }
        # {memoric's table whose ids come from a counter: its id column}
        self.id_columns = {
            model._meta.table_name: model._meta.primary_key.column_name
            for model in models
            if isinstance(model._meta.primary_key, peewee.AutoField)
        }
        # Before an application's migration (memoric's own are tested): the columns already
        # unfillable, which it is not to blame for; None: not checked.
        self.unfillable_before: set[str] | None = None
        self.triggers_before: dict = {}  # the tables' triggers before the migration (SQLite)
        self.id_tops_before: dict[str, int] = {}  # the highest id each id table had handed out
        self.schemas_before: dict = {}  # where memoric's unqualified table names led
        # Before an application's migration: the id tables that keep a counter; None: not checked.
        self.counted_before: set[str] | None = None
        self.sent: list[str] = []  # the statements the migration sent so far

    def __call__(self):
        database = self.__database__
        with exits_refused(), transaction_kept(database, self.sent):
            super().__call__()
        self.dialect.restore_rebuilt_triggers(database, self.triggers_before, self.sent)
        self._refuse_moved_names()
        tops = self.id_tops()
        self._refuse_lost_counters(tops)
        self._keep_id_counters(tops)
        misread = self.dialect.misread_index_columns(database, [model._meta.table_name for model in self.orm])
        if misread:
            raise MigrationError("; ".join(misread))
        broken = self.dialect.foreign_key_violations(database)
        if broken:
            raise MigrationError(f"foreign key violations after the migration: {broken[:5]}")
        if self.unfillable_before is not None:
            self._refuse_unfillable_columns()

    def id_tops(self) -> dict[str, int]:
        """The highest id each of memoric's id tables there has handed out (or stores)."""
        tables = set(self.dialect.tables(self.__database__))
        return {
            table: self.dialect.id_top(self.__database__, table, column)
            for table, column in self.id_columns.items()
            if table in tables
        }

    def counted_tables(self, tables) -> set[str]:
        """Those of memoric's id `tables` that keep the highest id they handed out (`has_id_counter`)."""
        return {table for table in tables if self.dialect.has_id_counter(self.__database__, table)}

    def _refuse_lost_counters(self, tops: dict[str, int]) -> None:
        """MigrationError when an application's migration left an id table of memoric's (`tops`:
        those there now) without its counter (on SQLite a rebuild of the id column drops
        AUTOINCREMENT): the id of every row deleted last would be handed out again, to anyone."""
        if self.counted_before is None:
            return
        lost = sorted((self.counted_before & set(tops)) - self.counted_tables(tops))
        if lost:
            raise MigrationError(
                f"it leaves {', '.join(lost)} without the counter that keeps an id from being handed "
                f"out twice (a SQLite rebuild of {self.id_columns[lost[0]]} drops AUTOINCREMENT): leave "
                "memoric's id columns as memoric declares them"
            )

    def _keep_id_counters(self, tops: dict[str, int]) -> None:
        """Raise each id counter the migration moved back (`tops`: the tops now; a SQLite table
        rebuild starts its AUTOINCREMENT counter at the highest id stored): an id is never handed
        out twice, not even the id of a memory deleted before the migration."""
        for table, top in tops.items():
            before = self.id_tops_before.get(table, 0)
            if top < before:
                self.dialect.reserve_ids(
                    self.__database__, table, self.id_columns[table], above=before, count=0
                )

    def schemas_named(self) -> dict:
        """Where memoric's unqualified table names lead now (`Dialect.schemas_named`)."""
        names = [*self.writes, catalogue.METADATA_KEYS_TABLE, HISTORY_TABLE, APP_HISTORY_TABLE]
        return self.dialect.schemas_named(self.__database__, names)

    def _refuse_moved_names(self) -> None:
        """MigrationError when the migration made a name of memoric's lead to another schema (a
        search_path set, a temporary table of that name): memoric's statements after it, the
        migration's history row first, would go there."""
        for name, schema in self.schemas_named().items():
            before = self.schemas_before.get(name)
            if before is not None and schema is not None and schema != before:
                what = "new tables are created" if name is None else f'"{name}" names a table'
                raise MigrationError(
                    f"it leaves the session where {what} in schema {schema} instead of {before} (a "
                    "search_path it set, or a temporary table of that name): memoric's statements "
                    "after it, its history row first, would go there; name the schema in the "
                    "migration's statements instead, or set search_path back before it ends"
                )

    def unfillable(self) -> list[str]:
        """The columns of memoric's tables that every write of memoric's would leave NULL where
        it may not be (peewee's Python-side `default=` sets none in the table)."""
        found = self.dialect.columns(self.__database__, list(self.writes))
        return catalogue.unfillable_columns(found, self.writes)

    def _refuse_unfillable_columns(self) -> None:
        """MigrationError for such a column the migration just made."""
        unfillable = [column for column in self.unfillable() if column not in self.unfillable_before]
        if unfillable:
            raise MigrationError(
                f"it leaves {', '.join(unfillable)} NOT NULL with no default the database applies, so "
                "every save of memoric's, which leaves the column out, would fail: make it nullable, "
                'or give it a default in the database too (constraints=[pw.SQL("DEFAULT ...")] beside '
                "default=, which only fills the rows there now)"
            )
