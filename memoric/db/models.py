"""The schema: `Memory` and `MemoryCluster`, one model class per table for both dialects.

The two JSON columns are JSONB on PostgreSQL (through playhouse's `BinaryJSONField`) and JSON
text on SQLite; timestamps are UTC on both. A field learns its dialect when its model is bound
to a database (peewee's `FieldDatabaseHook`), and `bind_models` gives every store its own bound
copies, so one process can talk to a SQLite file and a PostgreSQL server at once.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterable
from types import SimpleNamespace

import peewee
from playhouse.postgres_ext import BinaryJSONField

from memoric.db import jsonfilter
from memoric.db.jsoncodec import dump_json, load_json, load_json_column
from memoric.errors import MemoricError

UTC = dt.UTC
SQLITE_TIME_LENGTH = len("2026-01-01 00:00:00.000000")


def is_postgres(database) -> bool:
    return isinstance(database, peewee.PostgresqlDatabase)


def to_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def sqlite_time(value: dt.datetime) -> str:
    """An aware UTC datetime as SQLite stores it: `YYYY-MM-DD HH:MM:SS.ffffff`, fixed width."""
    return value.isoformat(" ", "microseconds")[:SQLITE_TIME_LENGTH]


def unreadable(field: peewee.Field, value) -> MemoricError:
    """The error for a stored value of `field` memoric cannot read: a row written outside memoric."""
    where = f"{field.model._meta.table_name}.{field.name}"
    return MemoricError(
        f"{where} holds a value memoric cannot read, {repr(value)[:80]} (written outside memoric?): "
        "correct or delete that row"
    )


class UTCDateTimeField(peewee.FieldDatabaseHook, peewee.Field):
    """`timestamptz` on PostgreSQL, fixed-width ISO text on SQLite; aware UTC in Python.

    The session time zone of a PostgreSQL connection changes nothing: values go in and come
    out as UTC instants.
    """

    field_type = "DATETIME"
    _postgres = False

    def _db_hook(self, database):
        self._postgres = is_postgres(database)

    def ddl_datatype(self, ctx):
        return peewee.SQL("TIMESTAMPTZ" if self._postgres else "DATETIME")

    def db_value(self, value):
        if value is None or isinstance(value, peewee.Node):
            return value
        if value.tzinfo is not UTC:
            value = to_utc(value)
        return value if self._postgres else sqlite_time(value)

    def python_value(self, value):
        if value is None:
            return None
        if isinstance(value, str):
            if len(value) == SQLITE_TIME_LENGTH:  # as `db_value` writes it: parse it as UTC in one step
                try:
                    return dt.datetime.fromisoformat(value + "+00:00")
                except ValueError:
                    pass  # another ISO form of that length: parsed below
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                raise unreadable(self, value) from None
        if not isinstance(value, dt.datetime):
            raise unreadable(self, value)
        return value if value.tzinfo is UTC else to_utc(value)


class IdField(peewee.FieldDatabaseHook, peewee.BigAutoField):
    """A 64-bit integer primary key whose values are never handed out twice, even after deletes.

    A PostgreSQL sequence never goes back by itself; SQLite picks max(rowid) + 1 unless the
    column is declared AUTOINCREMENT, so a deleted newest row's id would come back.
    """

    _sqlite = False

    def _db_hook(self, database):
        self._sqlite = isinstance(database, peewee.SqliteDatabase)

    def ddl(self, ctx):
        node = super().ddl(ctx)
        return peewee.NodeList((node, peewee.SQL("AUTOINCREMENT"))) if self._sqlite else node


class JSONDocumentField(peewee.FieldDatabaseHook, peewee.Field):
    """JSONB (playhouse `BinaryJSONField`, no implicit index) on PostgreSQL; JSON text on SQLite.

    Its query methods read the same on both: `contains` (`@>`) and `contains_any` (`?|`) are
    BinaryJSONField's operators on PostgreSQL and memoric's exact equivalents on SQLite
    (`jsonfilter`), so both dialects return the same rows; `string_at` reads one key.
    """

    field_type = "JSON"
    _jsonb = None

    def _db_hook(self, database):
        if is_postgres(database):
            self._jsonb = BinaryJSONField(index=False, dumps=dump_json)
            self._jsonb._db_hook(database)
            self._bind_jsonb()
        else:
            self._jsonb = None

    def bind(self, model, name, set_attribute=True):
        """Bind to `model` as peewee does, the JSONB field (on PostgreSQL) with it."""
        super().bind(model, name, set_attribute)
        self._bind_jsonb()

    def _bind_jsonb(self) -> None:
        """Make the JSONB field stand for this column, so that its operators name it."""
        model = getattr(self, "model", None)
        if self._jsonb is not None and model is not None:
            self._jsonb.column_name = self.column_name
            peewee.Field.bind(self._jsonb, model, self.name, set_attribute=False)

    @property
    def stored_as_text(self) -> bool:
        """Whether the driver hands the documents over as JSON text (SQLite), not parsed (JSONB)."""
        return self._jsonb is None

    def ddl_datatype(self, ctx):
        return peewee.SQL("JSONB" if self._jsonb is not None else "TEXT")

    def db_value(self, value):
        if value is None or isinstance(value, peewee.Node):
            return value
        if self._jsonb is not None:
            return self._jsonb.db_value(value)
        return dump_json(value)

    def python_value(self, value):
        if value is None or self._jsonb is not None:  # PostgreSQL's driver has parsed the JSONB
            return value
        if isinstance(value, str):
            try:
                return load_json(value)
            except ValueError:
                raise unreadable(self, value) from None
        return value

    def contains(self, pattern) -> peewee.Node:
        """True where the document contains `pattern`, exactly as PostgreSQL's `jsonb @>` decides."""
        if self._jsonb is not None:
            return self._jsonb.contains(pattern)
        return jsonfilter.sqlite_contains(self, pattern)

    def contains_any(self, *strings) -> peewee.Node:
        """True where one of `strings` (or of one list of them) is a top-level key of the document,
        one of its string elements, or the document itself (PostgreSQL's `?|`)."""
        if len(strings) == 1 and isinstance(strings[0], (list, tuple)):
            strings = tuple(strings[0])
        if self._jsonb is not None:
            return self._jsonb.contains_any(*strings)
        return jsonfilter.sqlite_contains_any(self, list(strings))

    def string_at(self, key: str) -> peewee.Node:
        """The string under the top-level `key`, or NULL when the key is missing or holds no string.

        The key is bound as a parameter on both dialects (BinaryJSONField's `field[key]` writes it
        into the SQL text, where a `%` breaks psycopg2).
        """
        if self._jsonb is None:
            return jsonfilter.sqlite_string_at(self, key)
        key_value = peewee.Value(key, converter=False)
        value = peewee.Expression(self, "->", key_value)
        string = peewee.Expression(self, "->>", key_value)
        return peewee.Case(None, [(peewee.fn.jsonb_typeof(value) == "string", string)])


class Memory(peewee.Model):
    """One memory of an agent about a user."""

    id = IdField()
    user_id = peewee.CharField(max_length=128)
    namespace = peewee.CharField(max_length=128, null=True)
    thread_id = peewee.CharField(max_length=128, null=True)
    content = peewee.TextField()
    tier = peewee.CharField(max_length=64)
    score = peewee.IntegerField(default=50, constraints=[peewee.SQL("DEFAULT 50")])
    metadata = JSONDocumentField(default=dict, constraints=[peewee.SQL("DEFAULT '{}'")])
    related_threads = JSONDocumentField(default=list, constraints=[peewee.SQL("DEFAULT '[]'")])
    summarized = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    class Meta:
        table_name = "memories"


class MemoryCluster(peewee.Model):
    """A group of one user's memories that share a topic and a category."""

    cluster_id = IdField()
    user_id = peewee.CharField(max_length=128)
    topic = peewee.CharField(max_length=255)
    category = peewee.CharField(max_length=255)
    memory_ids = JSONDocumentField(default=list, constraints=[peewee.SQL("DEFAULT '[]'")])
    memory_count = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    summary = peewee.TextField(default="", constraints=[peewee.SQL("DEFAULT ''")])
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    last_built_at = UTCDateTimeField()

    class Meta:
        table_name = "memory_clusters"


class MemoryTerm(peewee.Model):
    """A term posting: how often `term` occurs in one memory, with that memory's length in terms.

    The owner and namespace are the memory's, so a recall reads one user's postings of one
    namespace for the query's terms from one index, and never another user's.
    """

    memory_id = peewee.BigIntegerField()
    user_id = peewee.CharField(max_length=128)
    namespace = peewee.CharField(max_length=128, null=True)
    term = peewee.CharField(max_length=64)
    tf = peewee.IntegerField()
    dl = peewee.IntegerField()

    class Meta:
        table_name = "memory_terms"
        primary_key = peewee.CompositeKey("memory_id", "term")


class MemoryDocument(peewee.Model):
    """One row per memory: its length in terms (0 for content without any), for the statistics
    of its user and namespace (how many memories, their average length)."""

    memory_id = peewee.BigIntegerField(primary_key=True)
    user_id = peewee.CharField(max_length=128)
    namespace = peewee.CharField(max_length=128, null=True)
    length = peewee.IntegerField()

    class Meta:
        table_name = "memory_documents"


# Fields whose values need converting between Python and the database (the others pass as they are).
CONVERTED_FIELDS = (peewee.BooleanField, JSONDocumentField, UTCDateTimeField)
_TZINFO = operator.attrgetter("tzinfo")


def python_column(field: peewee.Field, values: tuple) -> Iterable:
    """A column of driver values as `field.python_value` makes them, converted one by one only
    when some need it: PostgreSQL's driver already gives JSON, aware UTC datetimes and booleans,
    and checking a whole column (in C) is cheaper than a Python call per value."""
    kinds = set(map(type, values))
    if isinstance(field, JSONDocumentField):
        if str in kinds and field.stored_as_text:
            return load_json_column(values, field.python_value)
        as_is = str not in kinds  # every other value is returned as it is
    elif isinstance(field, UTCDateTimeField):
        if str in kinds:
            return _sqlite_times(field, values)
        as_is = kinds == {dt.datetime} and set(map(id, map(_TZINFO, values))) == {id(UTC)}  # UTC itself
    else:
        as_is = kinds <= {bool, type(None)}
    return values if as_is else map(field.python_value, values)


def _sqlite_times(field: UTCDateTimeField, values: tuple) -> list:
    """`field.python_value` of each value, SQLite's own timestamps parsed here in one loop (a
    Python call less per value); anything else is left to the field."""
    parse = dt.datetime.fromisoformat
    parsed = []
    for value in values:
        if type(value) is str and len(value) == SQLITE_TIME_LENGTH:
            try:
                parsed.append(parse(value + "+00:00"))
                continue
            except ValueError:
                pass
        parsed.append(field.python_value(value))
    return parsed


MEMORY_INDEXES = {
    # also newest first within a thread: LIMIT stops after the rows it returns (migration 002)
    "idx_memories_user_thread": ("user_id", "thread_id", "created_at"),
    "idx_memories_user_tier": ("user_id", "tier"),
    "idx_memories_tier_updated": ("tier", "updated_at"),
    "idx_memories_user_tier_updated": ("user_id", "tier", "updated_at"),
    "idx_memories_user_created": ("user_id", "created_at"),
    "idx_memories_created": ("created_at",),
}
CLUSTER_INDEXES = {
    "idx_cluster_unique": ("user_id", "topic", "category"),
    "idx_cluster_user": ("user_id",),
    "idx_cluster_topic": ("topic",),
}
TERM_INDEXES = {"idx_memory_terms_lookup": ("user_id", "namespace", "term", "memory_id", "tf", "dl")}
DOCUMENT_INDEXES = {"idx_memory_documents_scope": ("user_id", "namespace", "length")}
UNIQUE_INDEXES = {"idx_cluster_unique"}
# The metadata of a memory under its user's id, `{user_id: metadata}`: jsonb_path_ops hashes each
# key with its whole path, so a GIN index of it finds one user's holders of a value alone.
USER_METADATA = "jsonb_set('{}'::jsonb, ARRAY[CAST(user_id AS text)], metadata)"
# PostgreSQL only: GIN indexes serve `@>` (metadata, and a user's metadata) and `?|`
# (related_threads). jsonb_path_ops is smaller and faster for `@>`; `?|` needs the default
# jsonb_ops. A name in parentheses is an expression.
GIN_INDEXES = {
    "idx_memories_metadata_gin": ("metadata", "jsonb_path_ops"),
    "idx_memories_related_threads_gin": ("related_threads", "jsonb_ops"),
    "idx_memories_user_metadata_gin": (f"({USER_METADATA})", "jsonb_path_ops"),
}


def _declare_indexes(model, indexes):
    for name, columns in indexes.items():
        fields = [getattr(model, column) for column in columns]
        model.add_index(*fields, name=name, unique=name in UNIQUE_INDEXES)


_declare_indexes(Memory, MEMORY_INDEXES)
_declare_indexes(MemoryCluster, CLUSTER_INDEXES)
_declare_indexes(MemoryTerm, TERM_INDEXES)
_declare_indexes(MemoryDocument, DOCUMENT_INDEXES)
# The tables keyword recall reads (`memoric.db.postings` keeps them in step with `memories`).
POSTING_MODELS = (MemoryTerm, MemoryDocument)
POSTING_TABLES = frozenset(model._meta.table_name for model in POSTING_MODELS)


def bind_models(database) -> SimpleNamespace:
    """Copies of every model bound to `database`, leaving the originals unbound."""
    bound = {}
    for model in (Memory, MemoryCluster, *POSTING_MODELS):
        meta = type("Meta", (), {"database": database, "table_name": model._meta.table_name})
        bound[model.__name__] = type(model.__name__, (model,), {"Meta": meta, "__module__": __name__})
    return SimpleNamespace(**bound)
