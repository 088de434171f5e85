"""Rows in and out of the database: input rows validated, values converted, statements cached.

Every query module of `memoric.db` builds on these: a memory row checked for INSERT
(`memory_row`), rows read with each column converted by its field (`read`, `memory_rows`),
rows inserted through the dialect's fast path (`insert_rows`), and the cache of rendered
statements whose parameters are filled in per call (`Statements`, `slot`, `bind`).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import peewee

from memoric import json_input, validation
from memoric.db.dialects.base import ids_left as dialect_ids_left
from memoric.db.models import CONVERTED_FIELDS, python_column

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

ID_CHUNK_SIZE = 5000  # ids per `IN (...)` of one statement
STATEMENT_CACHE_SIZE = 512
ROW_FIELDS = (
    "user_id", "content", "thread_id", "tier", "score", "metadata", "namespace", "related_threads",
    "summarized", "created_at", "updated_at", "id",
)  # fmt: skip
REQUIRED_ROW_FIELDS = ("user_id", "content")
_ROW_FIELD_SET = frozenset(ROW_FIELDS)
MEMORY_COLUMNS = (
    "id", "user_id", "namespace", "thread_id", "content", "tier", "score", "metadata",
    "related_threads", "summarized", "created_at", "updated_at",
)  # fmt: skip


def memory_row(store: MemoryStore, row: dict, where: str = "") -> dict:
    """One validated row ready for INSERT; `where` prefixes error messages (e.g. `rows[3]`)."""
    try:
        if not _ROW_FIELD_SET.issuperset(row):
            known_keywords("field", row, ROW_FIELDS)
        for name in REQUIRED_ROW_FIELDS:
            if name not in row:
                raise validation.ValidationError(f"missing field {name}")
        return _validated_row(store, row)
    except validation.ValidationError as exc:
        raise validation.ValidationError(f"{where}{exc}") from None


def _validated_row(store: MemoryStore, row: dict) -> dict:
    """The fields of a memory row checked (row has only ROW_FIELDS, the required ones among them)."""
    get = row.get
    created = validation.timestamp("created_at", get("created_at")) or store.clock()
    tier = get("tier")
    checked = {
        "user_id": validation.user_id(row["user_id"]),
        "content": validation.content(row["content"]),
        "thread_id": validation.optional_text("thread_id", get("thread_id")),
        "namespace": validation.optional_text("namespace", get("namespace")),
        "tier": validation.tier(store.tiers[0] if tier is None else tier, store.tiers),
        "score": validation.score(get("score")),
        "metadata": json_input.metadata(get("metadata")),
        "related_threads": validation.thread_list("related_threads", get("related_threads")),
        "summarized": bool(validation.flag("summarized", get("summarized", False))),
        "created_at": created,
        "updated_at": validation.timestamp("updated_at", get("updated_at")) or created,
    }
    if get("id") is not None:
        checked["id"] = validation.stored_id(row["id"], "id")
    return checked


def read(store: MemoryStore, model, sql: str, params: list) -> list[dict]:
    """Rows of `sql` as dicts, each column converted by its field (as peewee's `.dicts()` does)."""
    cursor = store.database.execute_sql(sql, params)
    names = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    if not rows:
        return []
    columns = list(zip(*rows, strict=True))  # converted a column at a time
    for index, field in _converted_columns(model, names):
        columns[index] = python_column(field, columns[index])
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def memory_rows(store: MemoryStore, sql: str, params: list) -> list[dict]:
    """Memory dicts of a `SELECT` of all memory columns (metadata `{}`, related_threads `[]` if empty)."""
    rows = read(store, store.Memory, sql, params)
    for row in rows:
        row["metadata"] = row["metadata"] or {}
        row["related_threads"] = row["related_threads"] or []
    return rows


def insert_rows(
    store: MemoryStore, model, rows: list[dict], skip_existing: bool, ids_given: bool = True
) -> int:
    """One multi-row INSERT of rows with the same keys, values converted by their fields
    (`ids_given`: see `Dialect.insert_rows`)."""
    columns, convert = _driver_converter(model, tuple(rows[0]))
    table = model._meta.table_name
    return store.dialect.insert_rows(
        store.database, table, columns, [convert(row) for row in rows], skip_existing, ids_given
    )


def ids_left(store: MemoryStore, model):
    """The block's INSERTs into `model`'s table, "no id left" (MemoricError) once its ids are used
    up (the dialects' own INSERTs check the same way)."""
    return dialect_ids_left(store.dialect, store.database, model._meta.table_name)


class Slot:
    """A named parameter of a cached statement: `bind` puts each call's value in its place."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def slot(name: str) -> peewee.Value:
    return peewee.Value(Slot(name), converter=False)


def bind(params: list, values: dict) -> list:
    """A cached statement's parameters with each slot replaced by this call's value."""
    return [values[param.name] if type(param) is Slot else param for param in params]


class Statements:
    """The rendered statements of query shapes, each built once per key (at most `size` kept)."""

    def __init__(self, size: int = STATEMENT_CACHE_SIZE) -> None:
        self.size = size
        self._cached: dict[tuple, tuple[str, list]] = {}

    def get(self, key: tuple, build: Callable) -> tuple[str, list]:
        """(sql, parameters with `Slot`s) of a query shape, built (rendered) once per `key`."""
        cached = self._cached.get(key)
        if cached is None:
            if len(self._cached) >= self.size:
                self._cached.clear()
            cached = self._cached[key] = build()
        return cached


@functools.lru_cache(maxsize=256)
def _converted_fields(model, names: tuple[str, ...]) -> list[tuple[int, peewee.Field]]:
    columns = model._meta.columns
    converted = [(index, columns.get(name)) for index, name in enumerate(names)]
    return [(index, field) for index, field in converted if isinstance(field, CONVERTED_FIELDS)]


def _converted_columns(model, names: list[str]) -> list[tuple[int, peewee.Field]]:
    """(column index, field) of the columns whose database values may need converting to Python."""
    return _converted_fields(model, tuple(names))


@functools.lru_cache(maxsize=256)
def _driver_converter(model, keys: tuple[str, ...]) -> tuple[list[str], Callable[[dict], tuple]]:
    """The columns of `keys` and a function turning a row dict into the driver's value tuple."""
    fields = [model._meta.fields[key] for key in keys]
    converters = [
        (index, field.db_value) for index, field in enumerate(fields) if isinstance(field, CONVERTED_FIELDS)
    ]
    values_of = operator.itemgetter(*keys) if len(keys) > 1 else lambda row: (row[keys[0]],)

    def convert(row: dict) -> tuple:
        values = list(values_of(row))
        for index, db_value in converters:
            values[index] = db_value(values[index])
        return tuple(values)

    return [field.column_name for field in fields], convert


def driver_row(model, row: dict) -> tuple[list[str], tuple]:
    """The columns and driver values of one row dict."""
    columns, convert = _driver_converter(model, tuple(row))
    return columns, convert(row)


def memory_dict(row: dict) -> dict:
    """A memory as the API returns it (metadata `{}` and related_threads `[]` when empty)."""
    row["metadata"] = row.get("metadata") or {}
    row["related_threads"] = row.get("related_threads") or []
    row["summarized"] = bool(row["summarized"])
    return {column: row[column] for column in MEMORY_COLUMNS}


def known_keywords(kind: str, given: dict, accepted: tuple[str, ...], method: str = "") -> None:
    """ValidationError naming the first of `given`'s keys not in `accepted`, and the accepted ones."""
    unknown = next((name for name in given if name not in accepted), None)
    if unknown is None:
        return
    where = f"{method} got an " if method else ""
    raise validation.ValidationError(
        f"{where}unexpected {kind} {validation.shown(unknown)} (accepted: {', '.join(accepted)})"
    )


def dict_rows(rows: Iterable[dict], field: str = "rows") -> Iterator[tuple[int, dict]]:
    """(index, row) for an iterable of dicts; ValidationError naming the argument `field` when
    it is no iterable (or one dict), or the first row that is not a dict."""
    if isinstance(rows, dict):
        raise validation.ValidationError(f"{field} must be an iterable of dicts, got one dict")
    try:
        each = iter(rows)
    except TypeError:
        raise validation.ValidationError(
            f"{field} must be an iterable of dicts, got {type(rows).__name__}"
        ) from None
    for index, row in enumerate(each):
        if not isinstance(row, dict):
            raise validation.ValidationError(f"{field}[{index}] must be a dict, got {type(row).__name__}")
        yield index, row


def group_by_keys(rows: list[dict]) -> list[list[dict]]:
    """Split rows into runs with the same keys (insert_many needs one column list per statement)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())
