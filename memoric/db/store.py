"""MemoryStore: every query and write memoric makes, the only code that builds SQL.

A store owns one peewee Database (SQLite file or PostgreSQL server), its own bound copies of the
models and a dialect object for the few places where the SQL differs. Every public method
validates its input first (`ValidationError`, nothing written), and wraps driver errors in
`MemoricError` with the cause chained.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import operator
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import peewee

from memoric import validation
from memoric.db.connection import (
    DriverErrors,
    dialect_of,
    driver_errors,
    failure_reason,
    open_database,
)
from memoric.db.dialects import Dialect, dialect_for
from memoric.db.jsonfilter import all_of, any_of
from memoric.db.models import CONVERTED_FIELDS, UTC, bind_models, dump_json
from memoric.db.urls import mask_url
from memoric.errors import LockTimeout, MemoricError

DEFAULT_TIERS = ("short_term", "mid_term", "long_term")
INSERT_BATCH_SIZE = 1000
BULK_BATCH_SIZE = 5000  # rows per transaction of insert_memories: fewer commits, WAL checkpoints
ID_CHUNK_SIZE = 5000
LOCK_POLL_SECONDS = 0.05
STATEMENT_CACHE_SIZE = 512
EQUALITY_FILTERS = ("user_id", "namespace", "thread_id", "tier")
FILTERS = (*EQUALITY_FILTERS, "where_metadata", "related_threads_any_of", "summarized")
ROW_FIELDS = (
    "user_id", "content", "thread_id", "tier", "score", "metadata", "namespace", "related_threads",
    "summarized", "created_at", "updated_at", "id",
)  # fmt: skip
REQUIRED_ROW_FIELDS = ("user_id", "content")
CLUSTER_FIELDS = ("topic", "category", "memory_ids", "summary")  # all but the summary required
_ROW_FIELD_SET = frozenset(ROW_FIELDS)
WINDOW_PER_ROW = 40  # rows of the user looked at per row asked for before using the JSON index
MEMORY_COLUMNS = (
    "id", "user_id", "namespace", "thread_id", "content", "tier", "score", "metadata",
    "related_threads", "summarized", "created_at", "updated_at",
)  # fmt: skip


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _checked_clock(clock: Callable[[], dt.datetime]) -> Callable[[], dt.datetime]:
    """`clock`, each reading checked like a timestamp argument (aware UTC, years 1 to 9999).

    A clock outside that range would store times no export can load back; its reading is a
    ValidationError before anything is written.
    """

    def now() -> dt.datetime:
        return validation.timestamp("the clock's time", clock())

    return now


def _failure_message(store: MemoryStore, method_name: str, exc: BaseException) -> str:
    """What failed, on which dialect, and why (saying so when the connection was lost)."""
    return f"{method_name} failed on {store.dialect.name}: {failure_reason(store.database, exc, store.dsn)}"


_translate_errors = driver_errors(_failure_message)


def _ascending_ids(ids: list[int]) -> list[int]:
    """`ids` if each is above the one before (a stored cluster's memory_ids are); else ValidationError."""
    for place in range(1, len(ids)):
        if ids[place] <= ids[place - 1]:
            raise validation.ValidationError(
                f"memory_ids must be unique and ascending, but memory_ids[{place}] {ids[place]} "
                f"follows {ids[place - 1]}"
            )
    return ids


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class MemoryStore:
    """Memories and clusters in one SQLite file or PostgreSQL database."""

    def __init__(
        self,
        dsn: str,
        *,
        tiers: Iterable[str] = DEFAULT_TIERS,
        clock: Callable[[], dt.datetime] = utc_now,
        warn_sqlite: bool = True,
    ) -> None:
        self.dialect: Dialect = dialect_for(dialect_of(dsn))
        self.dsn: str = dsn
        self.tiers: tuple[str, ...] = tuple(tiers)
        self.clock = clock
        self.database: peewee.Database = open_database(dsn, warn_sqlite=warn_sqlite)
        self.dialect.prepare(self.database)
        models = bind_models(self.database)
        self.Memory = models.Memory
        self.MemoryCluster = models.MemoryCluster
        self._statements: dict[tuple, tuple[str, list]] = {}

    @property
    def clock(self) -> Callable[[], dt.datetime]:
        """The time source, each reading checked like a timestamp argument (see `_checked_clock`)."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], dt.datetime]) -> None:
        self._clock = _checked_clock(clock)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect.name == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    def __repr__(self) -> str:
        return f"MemoryStore({mask_url(self.dsn)!r})"

    @_translate_errors
    def close(self) -> None:
        """Close this thread's connection (the next call opens a new one)."""
        if not self.database.is_closed():
            self.database.close()

    def _driver_errors(self, what: str) -> DriverErrors:
        """A block whose driver errors become MemoricError, worded as a failed `what`."""
        return DriverErrors(functools.partial(_failure_message, self, what))

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float | None = None, on_wait: Callable[[], None] | None = None):
        """Hold the named cross-process lock for the block (PostgreSQL advisory lock, SQLite file lock).

        Waits while another process or thread holds it, calling `on_wait` once when it starts to
        wait; raises LockTimeout after `timeout` seconds (None waits forever). A PostgreSQL lock
        belongs to the connection that took it: when that connection is lost during the block,
        so is the lock, and a block that did not fail otherwise raises MemoricError saying so.
        """
        if timeout is not None:
            validation.non_negative_number("timeout", timeout)
        with self._driver_errors("lock"):
            handle = self._take_lock(name, timeout, on_wait)
        try:
            yield
        finally:
            with self._driver_errors("lock"):
                held = self.dialect.unlock(self.database, handle)
        if not held:
            raise MemoricError(
                f"the {name!r} lock was lost with the connection to the database during the block: "
                "what ran after that was not protected by it"
            )

    def _take_lock(self, name: str, timeout: float | None, on_wait: Callable[[], None] | None):
        """The dialect's handle of the named lock, once free (see `lock`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = False
        while (handle := self.dialect.try_lock(self.database, name)) is None:
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(
                    f"could not take the {name!r} lock within {timeout} s: another run holds it"
                )
            time.sleep(LOCK_POLL_SECONDS)
        return handle

    # --- schema -------------------------------------------------------------------------

    @_translate_errors
    def has_schema(self) -> bool:
        """Whether the memories table exists (an empty database has none yet)."""
        return self.database.table_exists(self.Memory._meta.table_name)

    @_translate_errors
    def create_schema(self) -> None:
        """Create the tables and indexes straight from the models (tests; `init_db`)."""
        with self.database.atomic():
            self.database.create_tables([self.Memory, self.MemoryCluster], safe=True)
            self.dialect.create_extra_indexes(self.database)

    @_translate_errors
    def drop_schema(self) -> None:
        """Drop the two tables (and their indexes)."""
        self.database.drop_tables([self.Memory, self.MemoryCluster], safe=True)

    @_translate_errors
    def truncate(self) -> None:
        """Delete every memory and cluster and restart the ids."""
        with self.database.atomic():
            tables = [self.Memory._meta.table_name, self.MemoryCluster._meta.table_name]
            self.dialect.truncate(self.database, tables)

    # --- writing memories ---------------------------------------------------------------

    def _memory_row(self, row: dict, where: str = "") -> dict:
        """One validated row ready for INSERT; `where` prefixes error messages (e.g. `rows[3]`)."""
        try:
            if not _ROW_FIELD_SET.issuperset(row):
                _known_keywords("field", row, ROW_FIELDS)
            for name in REQUIRED_ROW_FIELDS:
                if name not in row:
                    raise validation.ValidationError(f"missing field {name}")
            return self._validated_row(row)
        except validation.ValidationError as exc:
            raise validation.ValidationError(f"{where}{exc}") from None

    def _validated_row(self, row: dict) -> dict:
        """The fields of a memory row checked (row has only ROW_FIELDS, the required ones among them)."""
        get = row.get
        created = validation.timestamp("created_at", get("created_at")) or self.clock()
        tier = get("tier")
        checked = {
            "user_id": validation.user_id(row["user_id"]),
            "content": validation.content(row["content"]),
            "thread_id": validation.optional_text("thread_id", get("thread_id")),
            "namespace": validation.optional_text("namespace", get("namespace")),
            "tier": validation.tier(self.tiers[0] if tier is None else tier, self.tiers),
            "score": validation.score(get("score")),
            "metadata": validation.metadata(get("metadata")),
            "related_threads": validation.thread_list("related_threads", get("related_threads")),
            "summarized": bool(validation.flag("summarized", get("summarized", False))),
            "created_at": created,
            "updated_at": validation.timestamp("updated_at", get("updated_at")) or created,
        }
        if get("id") is not None:
            checked["id"] = validation.stored_id(row["id"], "id")
        return checked

    @_translate_errors
    def insert_memory(self, **fields) -> int:
        """Store one memory and return its id (the memory fields, plus optional timestamps)."""
        row = self._memory_row(fields)
        columns, values = _driver_row(self.Memory, row)
        # One statement is atomic by itself: no BEGIN/COMMIT round trips around it.
        return self.dialect.insert_one(self.database, self.Memory._meta.table_name, columns, values)

    @_translate_errors
    def insert_memories(self, rows: Iterable[dict], *, batch_size: int = BULK_BATCH_SIZE) -> int:
        """Validate every row, then insert them in batches, one transaction per batch.

        Rows may carry an explicit `id`; the id counter is first moved past the highest one
        (never back), so no memory saved meanwhile takes one of them. An id already taken fails.
        """
        checked = [self._memory_row(row, where=f"rows[{i}]: ") for i, row in _dict_rows(rows)]
        explicit = [row for row in checked if "id" in row]
        if explicit:
            highest = max(explicit, key=operator.itemgetter("id"))
            table = self.Memory._meta.table_name
            if self.dialect.has_id_counter(self.database, table):
                self.dialect.reserve_ids(self.database, table, "id", above=highest["id"], count=0)
            else:  # max(rowid) + 1 is the counter: the first transaction writes the highest id
                checked = [highest, *(row for row in checked if row is not highest)]
        return self._insert_batches(self.Memory, checked, batch_size, skip_existing=False)

    def _insert_batches(self, model, rows: list[dict], batch_size: int, skip_existing: bool) -> int:
        validation.count("batch_size", batch_size)
        inserted = 0
        for batch in _chunks(rows, max(batch_size, 1)):
            with self.database.atomic():
                for same_keys in _group_by_keys(batch):
                    inserted += self._insert_rows(model, same_keys, skip_existing)
        return inserted

    def _insert_rows(self, model, rows: list[dict], skip_existing: bool) -> int:
        """One multi-row INSERT of rows with the same keys, values converted by their fields."""
        columns, convert = _driver_converter(model, tuple(rows[0]))
        table = model._meta.table_name
        return self.dialect.insert_rows(
            self.database, table, columns, [convert(row) for row in rows], skip_existing
        )

    # --- reading memories ---------------------------------------------------------------

    def _conditions(self, **filters) -> list:
        """The SQL conditions of the memory filters (validated; see `get_memories`)."""
        return self._filter_nodes(self._checked_filters(filters))

    def _checked_filters(self, filters: dict, *, method: str = "", others: tuple[str, ...] = ()) -> dict:
        """The filters (FILTERS) validated, in that order; None where not given (and for
        `where_metadata={}`). A keyword that is neither a filter nor one of `others` (the
        method's own keywords, named with `method` in the message) is a ValidationError.
        """
        _known_keywords("keyword argument", filters, (*others, *FILTERS), method)
        user_id, namespace, thread_id, tier, where_metadata, related_threads_any_of, summarized = map(
            filters.get, FILTERS
        )
        return {
            "user_id": None if user_id is None else validation.user_id(user_id),
            "namespace": validation.optional_text("namespace", namespace),
            "thread_id": validation.optional_text("thread_id", thread_id),
            "tier": None if tier is None else validation.tier(tier, self.tiers),
            "where_metadata": validation.metadata_filter(where_metadata),
            "related_threads_any_of": None
            if related_threads_any_of is None
            else validation.thread_list("related_threads_any_of", related_threads_any_of),
            "summarized": validation.flag("summarized", summarized),
        }

    def _filter_nodes(self, checked: dict) -> list:
        """SQL conditions for validated filters (equality values may be `_slot`s)."""
        m = self.Memory
        conditions = [
            getattr(m, name) == checked[name] for name in EQUALITY_FILTERS if checked[name] is not None
        ]
        if checked["where_metadata"]:
            conditions.append(m.metadata.contains(checked["where_metadata"]))
        if checked["related_threads_any_of"] is not None:
            conditions.append(self._related_to(checked["related_threads_any_of"]))
        if checked["summarized"] is not None:
            conditions.append(m.summarized == checked["summarized"])
        return conditions

    def _related_to(self, threads: list[str]):
        if not threads:
            return peewee.SQL("1 = 0")
        m = self.Memory
        return any_of([self.dialect.in_values(m.thread_id, threads), m.related_threads.contains_any(threads)])

    def _select(self, conditions: list):
        query = self.Memory.select()
        if conditions:
            query = query.where(all_of(conditions))
        return query

    @_translate_errors
    def get_memory(self, memory_id: int) -> dict | None:
        memory_id = validation.memory_id(memory_id)
        rows = list(self.Memory.select().where(self.Memory.id == memory_id).dicts())
        return _memory_dict(rows[0]) if rows else None

    @_translate_errors
    def get_memories(self, *, limit: int | None = 50, offset: int = 0, **filters) -> list[dict]:
        """Memories matching every filter, newest first (`created_at` desc, `id` desc)."""
        checked = self._checked_filters(filters, method="get_memories", others=("limit", "offset"))
        limit = validation.count("limit", limit, allow_none=True)
        offset = validation.count("offset", offset)
        values = {**checked, "limit": limit, "offset": offset}
        window_first = self.dialect.window_first and checked["user_id"] is not None
        if limit and window_first and checked["where_metadata"]:
            page = self._from_newest_rows(checked, values)
            if len(page) == limit:
                return page
        key = ("get_memories", _filter_shape(checked), limit is None, offset > 0)
        sql, params = self._statement(key, lambda: self._newest_first(_slotted(checked), limit, offset).sql())
        return self._memory_rows(sql, _bind(params, values))

    def _from_newest_rows(self, checked: dict, values: dict) -> list[dict]:
        """The page, looked for among the user's newest WINDOW_PER_ROW × (offset + limit) rows only.

        A full page is the right answer: those rows come first in the order, so the matches among
        them come first among all matches. The rows are walked newest first and the walk stops
        when the page is full, so a common value costs a few rows where PostgreSQL's GIN index
        would collect every row holding it (15 ms for a value in 5 % of 1M rows); a rare one
        costs the window, then `get_memories` asks the index.
        """
        key = ("from_newest_rows", _filter_shape(checked), values["offset"] > 0)
        sql, params = self._statement(key, lambda: self._window_statement(checked, values["offset"] > 0))
        window = min(WINDOW_PER_ROW * (values["offset"] + values["limit"]), validation.MAX_INT)
        return self._memory_rows(sql, _bind(params, {**values, "window": window}))

    def _window_statement(self, checked: dict, offset: bool) -> tuple[str, list]:
        m = self.Memory
        newest = _slotted({**checked, "where_metadata": None})
        window = self._select(self._filter_nodes(newest)).order_by(m.created_at.desc(), m.id.desc())
        window_sql, window_params = window.limit(_slot("window")).sql()
        contained = self.dialect.contains_row_by_row(m.metadata, checked["where_metadata"])
        test_sql, test_params = self.database.get_sql_context().sql(contained).query()
        mark = self.database.param
        sql = (
            f'SELECT * FROM ({window_sql}) AS "t1" WHERE {test_sql} '
            f'ORDER BY "t1"."created_at" DESC, "t1"."id" DESC LIMIT {mark}'
        )
        params = [*window_params, *test_params, _Slot("limit")]
        if offset:
            sql, params = f"{sql} OFFSET {mark}", [*params, _Slot("offset")]
        return sql, params

    def _newest_first(self, checked: dict, limit: int | None, offset: int):
        m = self.Memory
        query = self._select(self._filter_nodes(checked)).order_by(m.created_at.desc(), m.id.desc())
        if limit is not None:
            query = query.limit(_slot("limit"))
        if offset:
            query = query.offset(_slot("offset"))
        return query

    def _statement(self, key: tuple, build: Callable) -> tuple[str, list]:
        """(sql, parameters with `_Slot`s) of a query shape, built (rendered) once per `key`."""
        cached = self._statements.get(key)
        if cached is None:
            if len(self._statements) >= STATEMENT_CACHE_SIZE:
                self._statements.clear()
            cached = self._statements[key] = build()
        return cached

    def _read(self, model, sql: str, params: list) -> list[dict]:
        """Rows of `sql` as dicts, each column converted by its field (as peewee's `.dicts()` does)."""
        cursor = self.database.execute_sql(sql, params)
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
        if not rows:
            return []
        columns = list(zip(*rows, strict=True))  # converted a column at a time: one map() each
        for index, convert in _row_converters(model, names):
            columns[index] = map(convert, columns[index])
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    def _memory_rows(self, sql: str, params: list) -> list[dict]:
        """Memory dicts of a `SELECT` of all memory columns (metadata `{}`, related_threads `[]` if empty)."""
        rows = self._read(self.Memory, sql, params)
        for row in rows:
            row["metadata"] = row["metadata"] or {}
            row["related_threads"] = row["related_threads"] or []
        return rows

    @_translate_errors
    def count_memories(self, **filters) -> int:
        """How many memories match every filter (the filters of `get_memories`)."""
        checked = self._checked_filters(filters, method="count_memories")
        return self._select(self._filter_nodes(checked)).count()

    @_translate_errors
    def link_threads_by_topic(self, user_id: str, topic) -> list[str]:
        """Sorted thread ids of `user_id` holding a memory whose `metadata.topic == topic`."""
        m = self.Memory
        conditions = self._conditions(user_id=user_id, where_metadata={"topic": topic})
        query = (
            m.select(m.thread_id)
            .where(all_of([*conditions, m.thread_id.is_null(False)]))
            .distinct()
            .order_by(m.thread_id)
        )
        return [row.thread_id for row in query]

    @_translate_errors
    def distinct_threads(self, *, user_id=None, tier=None, limit: int | None = 1000) -> list[str]:
        limit = validation.count("limit", limit, allow_none=True)
        m = self.Memory
        conditions = self._conditions(user_id=user_id, tier=tier) + [m.thread_id.is_null(False)]
        query = m.select(m.thread_id).where(all_of(conditions))
        query = query.distinct().order_by(m.thread_id)
        if limit is not None:
            query = query.limit(limit)
        return [row.thread_id for row in query]

    @_translate_errors
    def count_by_tier(self, *, user_id=None) -> dict[str, int]:
        """Memories per tier: every configured tier (0 when empty), then any other tier found."""
        m = self.Memory
        query = self._select(self._conditions(user_id=user_id))
        query = query.select(m.tier, peewee.fn.COUNT(m.id).alias("n")).group_by(m.tier).order_by(m.tier)
        counts = dict.fromkeys(self.tiers, 0)
        counts.update({row["tier"]: row["n"] for row in query.dicts()})
        return counts

    @_translate_errors
    def find_older_than(self, *, days, from_tier=None, user_id=None, limit: int | None = 1000) -> list[dict]:
        """Memories not updated for `days` days, oldest first."""
        cutoff = validation.cutoff(self.clock(), validation.days(days))
        limit = validation.count("limit", limit, allow_none=True)
        checked = self._checked_filters({"user_id": user_id, "tier": from_tier})
        key = ("find_older_than", _filter_shape(checked), limit is None)
        sql, params = self._statement(key, lambda: self._oldest_first(_slotted(checked), limit).sql())
        values = {**checked, "cutoff": self.Memory.updated_at.db_value(cutoff), "limit": limit}
        return self._memory_rows(sql, _bind(params, values))

    def _oldest_first(self, checked: dict, limit: int | None):
        m = self.Memory
        conditions = [*self._filter_nodes(checked), m.updated_at < _slot("cutoff")]
        query = self._select(conditions).order_by(m.updated_at, m.id)
        if limit is not None:
            query = query.limit(_slot("limit"))
        return query

    # --- updating memories --------------------------------------------------------------

    def _update(self, memory_ids: list[int], **values) -> int:
        m = self.Memory
        values["updated_at"] = self.clock()
        changed = 0
        with self.database.atomic():
            for chunk in _chunks(memory_ids, ID_CHUNK_SIZE):
                changed += m.update(**values).where(m.id.in_(chunk)).execute()
        return changed

    @_translate_errors
    def update_tier(self, *, memory_ids, new_tier) -> int:
        ids = validation.memory_ids(memory_ids)
        return self._update(ids, tier=validation.tier(new_tier, self.tiers))

    @_translate_errors
    def mark_summarized(self, *, memory_ids) -> int:
        return self._update(validation.memory_ids(memory_ids), summarized=True)

    @_translate_errors
    def update_content(self, *, memory_id, new_content) -> int:
        memory_id = validation.memory_id(memory_id)
        return self._update([memory_id], content=validation.content(new_content, "new_content"))

    @_translate_errors
    def update_metadata(self, *, memory_id, new_metadata) -> int:
        memory_id = validation.memory_id(memory_id)
        return self._update([memory_id], metadata=validation.metadata(new_metadata, "new_metadata"))

    @_translate_errors
    def set_related_threads(self, *, memory_id, related_threads) -> int:
        memory_id = validation.memory_id(memory_id)
        threads = validation.thread_list("related_threads", related_threads)
        return self._update([memory_id], related_threads=threads)

    @_translate_errors
    def delete_memories(self, *, memory_ids=None, user_id=None) -> int:
        """Delete the memories of `memory_ids`, only those of `user_id` if given (all of theirs
        when `memory_ids` is None); rows deleted."""
        if memory_ids is None and user_id is None:
            raise validation.ValidationError("delete_memories needs memory_ids, user_id or both")
        m = self.Memory
        owner = [] if user_id is None else [m.user_id == validation.user_id(user_id)]
        if memory_ids is None:
            return m.delete().where(*owner).execute()
        ids = validation.memory_ids(memory_ids)
        deleted = 0
        with self.database.atomic():
            for chunk in _chunks(ids, ID_CHUNK_SIZE):
                deleted += m.delete().where(m.id.in_(chunk), *owner).execute()
        return deleted

    # --- clusters -----------------------------------------------------------------------

    @_translate_errors
    def upsert_cluster(self, *, user_id, topic, category, memory_ids, summary: str = "") -> int:
        """Create or replace the cluster of (user, topic, category) in one statement; its id."""
        cluster = {"topic": topic, "category": category, "memory_ids": memory_ids, "summary": summary}
        row = self._upserted_cluster_row(validation.user_id(user_id), cluster, self.clock())
        query = self._replacing_cluster(self.MemoryCluster.insert(row))
        with self.database.atomic():
            return next(iter(query.returning(self.MemoryCluster.cluster_id).tuples().execute()))[0]

    def _replacing_cluster(self, insert: peewee.Insert) -> peewee.Insert:
        """`insert` that, on a (user, topic, category) already there, replaces that cluster's contents."""
        c = self.MemoryCluster
        replaced = [c.memory_ids, c.memory_count, c.summary, c.updated_at, c.last_built_at]
        return insert.on_conflict(conflict_target=[c.user_id, c.topic, c.category], preserve=replaced)

    @_translate_errors
    def get_clusters(self, *, user_id=None, topic=None, category=None, limit: int | None = 100) -> list[dict]:
        """Clusters matching every filter, largest first (then by id)."""
        limit = validation.count("limit", limit, allow_none=True)
        checked = {
            "user_id": None if user_id is None else validation.user_id(user_id),
            "topic": validation.optional_text("topic", topic, max_length=validation.MAX_CLUSTER_KEY_LENGTH),
            "category": validation.optional_text(
                "category", category, max_length=validation.MAX_CLUSTER_KEY_LENGTH
            ),
        }
        key = ("get_clusters", *(value is not None for value in checked.values()), limit is None)
        sql, params = self._statement(key, lambda: self._largest_first(checked, limit).sql())
        return self._read(self.MemoryCluster, sql, _bind(params, {**checked, "limit": limit}))

    def _largest_first(self, checked: dict, limit: int | None):
        c = self.MemoryCluster
        conditions = [getattr(c, name) == _slot(name) for name, value in checked.items() if value is not None]
        query = c.select().order_by(c.memory_count.desc(), c.cluster_id)
        if conditions:
            query = query.where(all_of(conditions))
        if limit is not None:
            query = query.limit(_slot("limit"))
        return query

    def _exported_cluster_row(self, row: dict, where: str) -> dict:
        expected = {"cluster_id", "user_id", "topic", "category", "memory_ids", "memory_count", "summary"}
        stamps = {"created_at", "updated_at", "last_built_at"}
        unknown = set(row) - expected - stamps
        if unknown or not expected <= set(row):
            problem = (
                f"unexpected fields {validation.shown(sorted(unknown, key=repr))}"
                if unknown
                else f"missing {sorted(expected - set(row))}"
            )
            raise validation.ValidationError(f"{where}{problem}")
        now = self.clock()
        try:
            ids = _ascending_ids(validation.memory_ids(row["memory_ids"]))
            checked = {
                "cluster_id": validation.stored_id(row["cluster_id"], "cluster_id"),
                "user_id": validation.user_id(row["user_id"]),
                "topic": validation.cluster_key("topic", row["topic"]),
                "category": validation.cluster_key("category", row["category"]),
                "memory_ids": ids,
                "memory_count": validation.count(
                    "memory_count", row["memory_count"], maximum=validation.MAX_STORED_ID
                ),
                "summary": row["summary"]
                if row["summary"] == ""
                else validation.clean_text("summary", row["summary"]),
            }
            checked.update({key: validation.timestamp(key, row.get(key)) or now for key in sorted(stamps)})
            if checked["memory_count"] != len(ids):
                raise validation.ValidationError(
                    f"memory_count {checked['memory_count']} is not the number of memory_ids ({len(ids)})"
                )
        except validation.ValidationError as exc:
            raise validation.ValidationError(f"{where}{exc}") from None
        return checked

    # --- whole rows, ids kept: export, import, copy ------------------------------------------

    def _table(self, kind: str) -> tuple[type[peewee.Model], str]:
        """The model and id column of a kind of exported row ("memory" or "cluster")."""
        return (self.Memory, "id") if kind == "memory" else (self.MemoryCluster, "cluster_id")

    def whole_row(self, kind: str, record: dict) -> dict:
        """The row `record` (a memory or a cluster, id included) is written as: validated, defaults
        filled in (timestamps left out are now). ValidationError as `insert_memories` would raise."""
        if kind == "memory":
            return self._memory_row(record)
        return self._exported_cluster_row(record, where="")

    @contextlib.contextmanager
    def snapshot(self):
        """Every read inside the block sees the database at one point in time.

        PostgreSQL: one REPEATABLE READ, read-only transaction. SQLite: one read transaction
        (WAL keeps what it saw at its first read). Writers elsewhere are not held up.
        """
        try:
            with self.dialect.snapshot(self.database):
                yield
        except (peewee.PeeweeException, peewee.DatabaseError) as exc:
            raise MemoricError(_failure_message(self, "snapshot", exc)) from exc

    @_translate_errors
    def reserve_ids(
        self,
        claims: dict[str, tuple[int, int]],
        *,
        check: Callable[[], None],
        holding_rows: Callable[[dict[str, int]], dict[str, dict]],
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Reserve ids for rows about to be written, then run `check` while they stay reserved.

        `claims` maps a kind to (above, count): no new row of anyone else may get an id up to
        max(above, top + count), top being the highest id used so far. Where the table keeps an id
        counter it is raised under a short lock (never lowered) and `check` runs after. Where it
        has none (SQLite without AUTOINCREMENT picks max(rowid) + 1), the row with the highest id,
        `holding_rows(tops)[kind]`, is written instead: inside one write transaction with
        `check`, so a refused import writes nothing. Returns the top and the rows written per kind.
        """
        for kind, (above, count) in claims.items():
            validation.integer(f"claims[{kind!r}] above", above, minimum=0, maximum=validation.MAX_STORED_ID)
            validation.count(f"claims[{kind!r}] count", count, maximum=validation.MAX_STORED_ID)
        uncounted = [
            kind
            for kind in claims
            if not self.dialect.has_id_counter(self.database, self._table(kind)[0]._meta.table_name)
        ]
        if not uncounted:
            tops = self._raise_id_counters(claims)
            check()
            return tops, {}
        with self.database.atomic():  # on SQLite a write lock: no other writer until COMMIT
            tops = self._raise_id_counters(claims)
            check()
            rows = holding_rows(tops)
            written = {
                kind: self._insert_rows(self._table(kind)[0], [rows[kind]], skip_existing=True)
                for kind in uncounted
            }
        return tops, written

    def _raise_id_counters(self, claims: dict[str, tuple[int, int]]) -> dict[str, int]:
        """`reserve_ids` of the dialect for every claim (one short transaction each); the tops."""
        tops = {}
        for kind, (above, count) in claims.items():
            model, column = self._table(kind)
            tops[kind] = self.dialect.reserve_ids(
                self.database, model._meta.table_name, column, above=above, count=count
            )
        return tops

    @_translate_errors
    def insert_whole_rows(self, kind: str, rows: list[dict]) -> int:
        """Insert rows returned by `whole_row`, skipping those whose id (or, for a cluster, whose
        user/topic/category) is taken; the number inserted. The caller compares the skipped ones."""
        model = self._table(kind)[0]
        with self.database.atomic():
            return sum(self._insert_rows(model, same_keys, True) for same_keys in _group_by_keys(rows))

    @_translate_errors
    def has_ids(self, kind: str, low: int, high: int) -> bool:
        """Whether any memory (or cluster) has an id from `low` to `high`."""
        low, high = validation.memory_id(low, "low"), validation.memory_id(high, "high")
        model, column = self._table(kind)
        return model.select().where(getattr(model, column).between(low, high)).exists()

    @_translate_errors
    def delete_id_range(self, kind: str, low: int, high: int) -> int:
        """Delete the memories or clusters with ids from `low` to `high`; how many there were."""
        low, high = validation.memory_id(low, "low"), validation.memory_id(high, "high")
        model, column = self._table(kind)
        field = getattr(model, column)
        return model.delete().where(field.between(low, high)).execute()

    @_translate_errors
    def stored_rows(self, kind: str, ids: Iterable[int]) -> dict[int, dict]:
        """The stored memories or clusters with these ids, by id (absent ids left out)."""
        ids = [validation.memory_id(value, f"ids[{index}]") for index, value in enumerate(ids)]
        model, column = self._table(kind)
        found = {}
        for chunk in _chunks(sorted(set(ids)), ID_CHUNK_SIZE):
            for row in model.select().where(getattr(model, column).in_(chunk)).dicts():
                found[row[column]] = _memory_dict(row) if kind == "memory" else row
        return found

    @_translate_errors
    def memory_owners(self, ids: Iterable[int]) -> dict[int, str]:
        """The user_id of each stored memory among `ids`, by id (absent ids left out)."""
        ids = [validation.memory_id(value, f"ids[{index}]") for index, value in enumerate(ids)]
        m = self.Memory
        found = {}
        for chunk in _chunks(sorted(set(ids)), ID_CHUNK_SIZE):
            found.update(m.select(m.id, m.user_id).where(m.id.in_(chunk)).tuples())
        return found

    @_translate_errors
    def cluster_ids_by_key(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
        """The stored cluster id of each (user_id, topic, category) that has one."""
        c = self.MemoryCluster
        found = {}
        for chunk in _chunks(sorted(set(keys)), self.CLUSTER_CHUNK_SIZE):
            key = peewee.Tuple(c.user_id, c.topic, c.category)
            query = c.select(c.cluster_id, c.user_id, c.topic, c.category).where(key.in_(chunk))
            for cluster_id, *stored_key in query.tuples():
                found[tuple(stored_key)] = cluster_id
        return found

    def iter_memories(self, *, user_id=None, batch_size: int = INSERT_BATCH_SIZE) -> Iterator[dict]:
        """Every memory (of one user, or all) in id order, read page by page: constant memory.

        Pages are separate queries: inside `snapshot` they all see one point in time.
        """
        validation.integer("batch_size", batch_size, minimum=1)
        after_id = 0
        while page := self.memories_after(after_id, user_id=user_id, limit=batch_size):
            yield from page
            after_id = page[-1]["id"]

    def iter_clusters(self, *, user_id=None, batch_size: int = INSERT_BATCH_SIZE) -> Iterator[dict]:
        """Every cluster (of one user, or all) in id order, read page by page like `iter_memories`."""
        validation.integer("batch_size", batch_size, minimum=1)
        after_id = 0
        while page := self.clusters_after(after_id, user_id=user_id, limit=batch_size):
            yield from page
            after_id = page[-1]["cluster_id"]

    @_translate_errors
    def memories_after(self, after_id: int, *, user_id=None, limit: int = INSERT_BATCH_SIZE) -> list[dict]:
        """Up to `limit` memories with an id above `after_id`, in id order (keyset paging)."""
        m = self.Memory
        conditions = self._conditions(user_id=user_id) + [m.id > validation.memory_id(after_id, "after_id")]
        query = self._select(conditions).order_by(m.id).limit(validation.count("limit", limit))
        return [_memory_dict(row) for row in query.dicts()]

    @_translate_errors
    def clusters_after(self, after_id: int, *, user_id=None, limit: int = INSERT_BATCH_SIZE) -> list[dict]:
        """Up to `limit` clusters with an id above `after_id`, in id order (keyset paging)."""
        c = self.MemoryCluster
        query = c.select().where(c.cluster_id > validation.memory_id(after_id, "after_id"))
        if user_id is not None:
            query = query.where(c.user_id == validation.user_id(user_id))
        return list(query.order_by(c.cluster_id).limit(validation.count("limit", limit)).dicts())

    def all_clusters(self, *, user_id=None) -> list[dict]:
        """Every cluster (of one user, or all) in id order."""
        return list(self.iter_clusters(user_id=user_id))

    @_translate_errors
    def delete_cluster(self, *, cluster_id) -> int:
        cluster_id = validation.memory_id(cluster_id, "cluster_id")
        c = self.MemoryCluster
        return c.delete().where(c.cluster_id == cluster_id).execute()

    # --- engine queries: recall, tier policies, clusters, stats ---------------------------
    # Slices select memories by tier and age: `(tier, updated_before, updated_since)`, either
    # bound None for "any"; a list of slices means any of them.

    CLUSTER_CHUNK_SIZE = 500  # rows per INSERT of upsert_clusters (9 parameters each)

    @contextlib.contextmanager
    def atomic(self):
        """One transaction (a savepoint when nested) around a group of store calls.

        A failure to begin or commit it is a MemoricError like any driver error.
        """
        with self._driver_errors("atomic"), self.database.atomic():
            yield

    def _namespace_is(self, namespace):
        """`namespace = ?`, or `namespace IS NULL` for None (memories saved without one)."""
        m = self.Memory
        if namespace is None:
            return m.namespace.is_null()
        return m.namespace == validation.optional_text("namespace", namespace)

    def _in_slices(self, slices) -> peewee.Node:
        m = self.Memory
        alternatives = []
        for tier, updated_before, updated_since in slices:
            condition = [m.tier == validation.tier(tier, self.tiers)]
            if updated_before is not None:
                condition.append(m.updated_at < updated_before)
            if updated_since is not None:
                condition.append(m.updated_at >= updated_since)
            alternatives.append(all_of(condition))
        return any_of(alternatives)

    def _lacks_metadata(self, pattern: dict) -> peewee.Node:
        """True where metadata does not contain `pattern` (never NULL, unlike NOT of the test)."""
        contained = self.Memory.metadata.contains(validation.metadata(pattern))
        return peewee.Case(None, [(contained, 1)], 0) == 0

    def _topic_threads(self, user_id: str, namespace, topic) -> list[str]:
        m = self.Memory
        conditions = [
            m.user_id == user_id,
            self._namespace_is(namespace),
            m.metadata.contains(validation.metadata({"topic": topic})),
            m.thread_id.is_null(False),
        ]
        query = m.select(m.thread_id).where(all_of(conditions)).distinct()
        return sorted(row.thread_id for row in query)

    def _score_expression(self, formula, now: dt.datetime, bonus_thread_id):
        """The score of `memoric.scoring.ScoreFormula` as SQL: integer arithmetic only."""
        m = self.Memory
        decay = formula.decay_seconds
        age = self.dialect.age_seconds(m.updated_at, now)
        # Plain comparisons settle the rows outside the decay window without date arithmetic.
        window = dt.timedelta(seconds=decay)
        decayed_since = now - window if now - validation.EARLIEST > window else validation.EARLIEST
        fully_decayed = m.updated_at <= decayed_since
        decaying = decay - self.dialect.clamp(age, 0, decay)
        remaining = peewee.Case(None, [(fully_decayed, 0), (m.updated_at >= now, decay)], decaying)
        same_thread = peewee.Value(0)
        if bonus_thread_id is not None:
            same_thread = peewee.Case(None, [(m.thread_id == bonus_thread_id, 1)], 0)
        numerator = (
            m.score.cast("BIGINT") * formula.importance_factor
            + remaining * formula.recency_factor
            + same_thread * formula.thread_factor
        )
        return (numerator * 2 + formula.denominator) / (2 * formula.denominator)

    @_translate_errors
    def ranked_memories(
        self,
        *,
        user_id,
        formula,
        namespace=None,
        thread_id=None,
        topic=None,
        where_metadata=None,
        bonus_thread_id=None,
        include_summarized: bool = False,
        limit: int = 10,
        now: dt.datetime | None = None,
    ) -> list[dict]:
        """One user's memories in one namespace (None: without one), best score first, ties newest first.

        `thread_id` keeps one thread; `topic` keeps the threads of the user holding a memory with
        that `metadata.topic` (and memories with that topic anywhere); `bonus_thread_id` is the
        thread that earns the thread weight. Each dict carries its `_score`.
        """
        user_id = validation.user_id(user_id)
        limit = validation.count("limit", limit)
        validation.flag("include_summarized", include_summarized)
        now = self.clock() if now is None else now
        m = self.Memory
        conditions = [m.user_id == user_id, self._namespace_is(namespace)]
        conditions += self._conditions(thread_id=thread_id, where_metadata=where_metadata)
        if topic is not None:
            threads = self._topic_threads(user_id, namespace, topic)
            has_topic = m.metadata.contains(validation.metadata({"topic": topic}))
            conditions.append(self._related_to(threads) | has_topic)
        if not include_summarized:
            conditions.append(m.summarized == False)  # noqa: E712 (SQL comparison)
        if bonus_thread_id is not None:
            bonus_thread_id = validation.optional_text("thread_id", bonus_thread_id)
        score = self._score_expression(formula, now, bonus_thread_id).alias("_score")
        query = (
            m.select(m, score)
            .where(all_of(conditions))
            .order_by(peewee.SQL('"_score"').desc(), m.created_at.desc(), m.id.desc())
            .limit(limit)
        )
        return [{**_memory_dict(row), "_score": int(row["_score"])} for row in query.dicts()]

    @_translate_errors
    def count_in_slices(self, *, slices, user_id=None, longer_than: int | None = None) -> int:
        """Memories in any of `slices`, optionally only those with content longer than `longer_than`."""
        m = self.Memory
        conditions = [self._in_slices(slices), *self._conditions(user_id=user_id)]
        if longer_than is not None:
            conditions.append(peewee.fn.LENGTH(m.content) > validation.count("longer_than", longer_than))
        return self._select(conditions).count()

    def _batched_update(self, conditions: list, values: dict, batch_size: int, on_batch) -> int:
        """UPDATE the rows matching `conditions` in batches of consecutive ids, one transaction each.

        A batch ends at the `batch_size`-th matching id after the previous batch (found in SQL,
        no ids travel to Python), so it touches neighbouring pages and uses the primary key.
        `on_batch(n)` is called after each batch.
        """
        batch_size = max(1, validation.count("batch_size", batch_size))
        m = self.Memory
        changed = last_id = 0
        while True:
            after = [*conditions, m.id > last_id]
            boundary = (
                self._select(after).select(m.id).order_by(m.id).offset(batch_size - 1).limit(1).scalar()
            )
            bounded = after if boundary is None else [*after, m.id <= boundary]
            with self.database.atomic():
                done = m.update(**values).where(all_of(bounded)).execute()
            changed += done
            if on_batch is not None and done:
                on_batch(done)
            if boundary is None:
                return changed
            last_id = boundary

    @_translate_errors
    def move_expired(
        self, *, from_tier, to_tier, updated_before, user_id=None, batch_size: int = 10000, on_batch=None
    ) -> int:
        """Move memories of `from_tier` not updated since `updated_before` to `to_tier`.

        Set-based and batched (`_batched_update`; the candidates come from the (tier, updated_at)
        index or the primary key); moving sets `updated_at` to now.
        """
        to_tier = validation.tier(to_tier, self.tiers)
        conditions = [
            self._in_slices([(from_tier, updated_before, None)]),
            *self._conditions(user_id=user_id),
        ]
        values = {"tier": to_tier, "updated_at": self.clock()}
        return self._batched_update(conditions, values, batch_size, on_batch)

    @_translate_errors
    def trim_content(
        self, *, tier, max_chars: int, user_id=None, batch_size: int = 10000, on_batch=None
    ) -> int:
        """Cut content longer than `max_chars` in `tier` to `max_chars` characters ending in "…".

        Batched like `move_expired`; `updated_at` is left alone (trimming is not new information).
        """
        max_chars = validation.count("max_chars", max_chars)
        if max_chars < 2:
            raise validation.ValidationError(f"max_chars must be at least 2, got {max_chars}")
        # No text on either dialect is longer than MAX_STORED_ID characters (PostgreSQL: 1 GB,
        # SQLite: 1e9 bytes), and PostgreSQL's SUBSTR takes no larger length.
        max_chars = min(max_chars, validation.MAX_STORED_ID)
        m = self.Memory
        conditions = [
            self._in_slices([(tier, None, None)]),
            *self._conditions(user_id=user_id),
            peewee.fn.LENGTH(m.content) > max_chars,
        ]
        cut = peewee.fn.SUBSTR(m.content, 1, max_chars - 1).concat("…")
        return self._batched_update(conditions, {"content": cut}, batch_size, on_batch)

    @_translate_errors
    def summary_groups(self, *, slices, min_records: int, exclude_metadata: dict, user_id=None) -> list[dict]:
        """(user_id, namespace, thread_id, count) of threads with ≥ `min_records` unsummarized memories.

        Only memories in `slices`, with a thread, and whose metadata lacks `exclude_metadata`
        (the summaries themselves) count. Sorted by user, namespace (None first), thread.
        """
        min_records = validation.count("min_records", min_records)
        m = self.Memory
        conditions = [
            self._in_slices(slices),
            *self._conditions(user_id=user_id),
            m.summarized == False,  # noqa: E712 (SQL comparison)
            m.thread_id.is_null(False),
            self._lacks_metadata(exclude_metadata),
        ]
        n = peewee.fn.COUNT(m.id)
        query = (
            m.select(m.user_id, m.namespace, m.thread_id, n.alias("count"))
            .where(all_of(conditions))
            .group_by(m.user_id, m.namespace, m.thread_id)
            .having(n >= min_records)
        )
        groups = list(query.dicts())
        return sorted(
            groups,
            key=lambda g: (g["user_id"], g["namespace"] is not None, g["namespace"] or "", g["thread_id"]),
        )

    @_translate_errors
    def summary_sources(self, *, user_ids, tier, exclude_metadata: dict) -> list[dict]:
        """The unsummarized memories with a thread of these users in `tier`, oldest first.

        Memories whose metadata contains `exclude_metadata` (the summaries) are left out.
        """
        users = [validation.user_id(user) for user in user_ids]
        if not users:
            return []
        m = self.Memory
        conditions = [
            m.user_id.in_(users),
            self._in_slices([(tier, None, None)]),
            m.summarized == False,  # noqa: E712 (SQL comparison)
            m.thread_id.is_null(False),
            self._lacks_metadata(exclude_metadata),
        ]
        query = self._select(conditions).order_by(m.created_at, m.id)
        return [_memory_dict(row) for row in query.dicts()]

    @_translate_errors
    def write_summaries(self, items: Iterable[tuple[dict, list[int]]]) -> tuple[int, int]:
        """Insert the summary rows and mark their sources summarized, all in one transaction.

        Returns (summaries written, sources marked). Sources already summarized are left alone.
        """
        checked = [(self._memory_row(row), validation.memory_ids(ids)) for row, ids in items]
        if not checked:
            return 0, 0
        m = self.Memory
        sources = [memory_id for _, ids in checked for memory_id in ids]
        marked = 0
        with self.database.atomic():
            for rows in _group_by_keys([row for row, _ in checked]):
                m.insert_many(rows).execute()
            for chunk in _chunks(sources, ID_CHUNK_SIZE):
                query = m.update(summarized=True, updated_at=self.clock())
                marked += query.where(m.id.in_(chunk) & (m.summarized == False)).execute()  # noqa: E712
        return len(checked), marked

    @_translate_errors
    def cluster_rows(self, *, exclude_metadata: dict, user_id=None) -> list[tuple]:
        """(id, user_id, thread_id, topic, category) of every memory lacking `exclude_metadata`.

        topic and category are the metadata values when they are JSON strings, else None; only
        these columns are read, so a rebuild over many rows stays cheap.
        """
        m = self.Memory
        topic, category = m.metadata.string_at("topic"), m.metadata.string_at("category")
        conditions = [*self._conditions(user_id=user_id), self._lacks_metadata(exclude_metadata)]
        query = self._select(conditions).select(m.id, m.user_id, m.thread_id, topic, category)
        return self.database.execute(query).fetchall()

    @_translate_errors
    def upsert_clusters(self, *, user_id, clusters: Iterable[dict]) -> int:
        """`upsert_cluster` for many clusters of one user: one INSERT ... ON CONFLICT per chunk.

        Each dict has topic, category, memory_ids and summary, checked by the same rules; one
        row per (user, topic, category) as with `upsert_cluster`, written in key order so that
        concurrent rebuilds lock rows in the same order. Returns the number written.
        """
        user_id = validation.user_id(user_id)
        now = self.clock()
        rows = sorted(
            (self._upserted_cluster_row(user_id, cluster, now) for cluster in clusters),
            key=lambda row: (row["topic"], row["category"]),
        )
        with self.database.atomic():
            for chunk in _chunks(rows, self.CLUSTER_CHUNK_SIZE):
                self._replacing_cluster(self.MemoryCluster.insert_many(chunk)).execute()
        return len(rows)

    @staticmethod
    def _upserted_cluster_row(user_id: str, cluster: dict, now: dt.datetime) -> dict:
        if not isinstance(cluster, dict):
            raise validation.ValidationError(f"a cluster must be a dict, got {type(cluster).__name__}")
        _known_keywords("cluster field", cluster, CLUSTER_FIELDS)
        for name in CLUSTER_FIELDS[:-1]:
            if name not in cluster:
                raise validation.ValidationError(f"missing cluster field {name}")
        ids = sorted(set(validation.memory_ids(cluster["memory_ids"])))
        summary = cluster.get("summary", "")
        if not isinstance(summary, str):
            raise validation.ValidationError(f"summary must be a string, got {type(summary).__name__}")
        if summary:
            validation.clean_text("summary", summary)
        return {
            "user_id": user_id,
            "topic": validation.cluster_key("topic", cluster["topic"]),
            "category": validation.cluster_key("category", cluster["category"]),
            "memory_ids": ids,
            "memory_count": len(ids),
            "summary": summary,
            "created_at": now,
            "updated_at": now,
            "last_built_at": now,
        }

    @_translate_errors
    def cluster_keys(self, *, user_id=None) -> list[tuple]:
        """(cluster_id, user_id, topic, category) of every cluster (of one user), by id."""
        c = self.MemoryCluster
        query = c.select(c.cluster_id, c.user_id, c.topic, c.category).order_by(c.cluster_id)
        if user_id is not None:
            query = query.where(c.user_id == validation.user_id(user_id))
        return list(query.tuples())

    @_translate_errors
    def memory_stats(self, *, user_id=None) -> dict:
        """total, by_tier, summarized, users, threads (distinct user/thread pairs) and clusters."""
        m, c = self.Memory, self.MemoryCluster
        conditions = self._conditions(user_id=user_id)
        # Separate queries, each served by an index of its own (one GROUP BY reading every row
        # for `summarized` as well was several times slower on SQLite).
        per_tier = self._select(conditions).select(m.tier, peewee.fn.COUNT(m.id).alias("n")).group_by(m.tier)
        by_tier = dict.fromkeys(self.tiers, 0)
        by_tier.update({row["tier"]: row["n"] for row in per_tier.dicts()})
        summarized_total = self._select([*conditions, m.summarized == True]).count()  # noqa: E712
        users = self._select(conditions).select(m.user_id).distinct().count()
        thread_conditions = [*conditions, m.thread_id.is_null(False)]
        threads = self._select(thread_conditions).select(m.user_id, m.thread_id).distinct().count()
        clusters = c.select()
        if user_id is not None:
            clusters = clusters.where(c.user_id == validation.user_id(user_id))
        return {
            "total": sum(by_tier.values()),
            "by_tier": by_tier,
            "summarized": summarized_total,
            "users": users,
            "threads": threads,
            "clusters": clusters.count(),
        }


class _Slot:
    """A named parameter of a cached statement: `_bind` puts each call's value in its place."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _slot(name: str) -> peewee.Value:
    return peewee.Value(_Slot(name), converter=False)


def _slotted(checked: dict) -> dict:
    """Validated filters with each equality filter's value replaced by its slot."""
    return {
        name: _slot(name) if name in EQUALITY_FILTERS and value is not None else value
        for name, value in checked.items()
    }


def _filter_shape(checked: dict) -> tuple:
    """All the SQL of validated filters depends on: which equality filters are set, the other values."""
    shape = []
    for name, value in checked.items():
        if name in EQUALITY_FILTERS:
            shape.append(value is not None)
        elif name == "where_metadata":
            shape.append(None if value is None else dump_json(value))
        elif name == "related_threads_any_of":
            shape.append(None if value is None else tuple(value))
        else:
            shape.append(value)
    return tuple(shape)


def _bind(params: list, values: dict) -> list:
    """A cached statement's parameters with each slot replaced by this call's value."""
    return [values[param.name] if type(param) is _Slot else param for param in params]


@functools.lru_cache(maxsize=256)
def _converters_for(model, names: tuple[str, ...]) -> list[tuple[int, Callable]]:
    columns = model._meta.columns
    return [
        (index, columns[name].python_value)
        for index, name in enumerate(names)
        if isinstance(columns.get(name), CONVERTED_FIELDS)
    ]


def _row_converters(model, names: list[str]) -> list[tuple[int, Callable]]:
    """(column index, converter) of the columns whose database value needs one to become Python."""
    return _converters_for(model, tuple(names))


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


def _driver_row(model, row: dict) -> tuple[list[str], tuple]:
    """The columns and driver values of one row dict."""
    columns, convert = _driver_converter(model, tuple(row))
    return columns, convert(row)


def _memory_dict(row: dict) -> dict:
    """A memory as the API returns it (metadata `{}` and related_threads `[]` when empty)."""
    row["metadata"] = row.get("metadata") or {}
    row["related_threads"] = row.get("related_threads") or []
    row["summarized"] = bool(row["summarized"])
    return {column: row[column] for column in MEMORY_COLUMNS}


def _known_keywords(kind: str, given: dict, accepted: tuple[str, ...], method: str = "") -> None:
    """ValidationError naming the first of `given`'s keys not in `accepted`, and the accepted ones."""
    unknown = next((name for name in given if name not in accepted), None)
    if unknown is None:
        return
    where = f"{method} got an " if method else ""
    raise validation.ValidationError(
        f"{where}unexpected {kind} {validation.shown(unknown)} (accepted: {', '.join(accepted)})"
    )


def _dict_rows(rows: Iterable[dict]) -> Iterator[tuple[int, dict]]:
    """(index, row) for an iterable of dicts; ValidationError naming the first row that is not one."""
    if isinstance(rows, dict):
        raise validation.ValidationError("rows must be an iterable of dicts, got one dict")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise validation.ValidationError(f"rows[{index}] must be a dict, got {type(row).__name__}")
        yield index, row


def _group_by_keys(rows: list[dict]) -> list[list[dict]]:
    """Split rows into runs with the same keys (insert_many needs one column list per statement)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())
