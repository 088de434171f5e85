"""MemoryStore: memories and clusters in one SQLite file or PostgreSQL database.

A store owns one peewee Database (SQLite file or PostgreSQL server), its own bound copies of the
models and its `Dialect` for the few places where the SQL differs: the connection, locks and
schema, and the memory reads and writes the documentation lists. The queries with one caller
each live beside it: `recall_queries` (the facade's ranked recall and stats), `policy_queries`,
`cluster_queries` and `transfer_queries`, built on `filters` and `rows`. Every public method
validates its input first (`ValidationError`, nothing written), and wraps driver errors in
`MemoricError` with the cause chained.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator

import peewee

from memoric import json_input, validation
from memoric.db import bulk, cluster_members, cluster_queries, locks, newest_rows, postings, summaries
from memoric.db.chunks import chunks
from memoric.db.connection import dialect_of, open_database
from memoric.db.deadlocks import retried
from memoric.db.dialects import Dialect, dialect_for
from memoric.db.driver_errors import DriverErrors, store_call_failed, translate_errors
from memoric.db.filters import (
    checked_filters,
    filter_conditions,
    filter_nodes,
    filter_shape,
    keyed,
    newest_first,
    oldest_first,
    select_memories,
    slot_values,
    slotted,
    thread_ids,
)
from memoric.db.masking import mask_url
from memoric.db.models import bind_models
from memoric.db.rows import (
    ID_CHUNK_SIZE,
    Statements,
    bind,
    memory_dict,
    memory_row,
    memory_rows,
)
from memoric.errors import MemoricError
from memoric.validation import utc_now

DEFAULT_TIERS = ("short_term", "mid_term", "long_term")
BULK_BATCH_SIZE = 5000  # rows per transaction of insert_memories: fewer commits, WAL checkpoints
# SQLite: the most memories a filter's rarest key may be held by, per row asked for, for the
# filter to read them rather than walk the newest rows: reading them costs at most 4 times the
# fewest rows a page could need, while walking can cost every row in scope (measured at 100k:
# a key held by 500 of a user's 1,000 memories read in 4.5 ms, walked in 0.5).
KEY_ROWS_PER_ROW = 4


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
        validation.boolean("warn_sqlite", warn_sqlite)
        self.dsn: str = dsn
        self.tiers: tuple[str, ...] = validation.tier_names(tiers)
        self.clock = clock
        self.database: peewee.Database = open_database(
            dsn, warn_sqlite=warn_sqlite, prepare=self.dialect.prepare
        )
        models = bind_models(self.database)
        self.Memory = models.Memory
        self.MemoryCluster = models.MemoryCluster
        self.MemoryTerm = models.MemoryTerm
        self.MemoryDocument = models.MemoryDocument
        self.postings_ready = False  # whether the text postings tables exist (see `postings.enabled`)
        self.statements = Statements()

    @property
    def clock(self) -> Callable[[], dt.datetime]:
        """The time source, each reading checked like a timestamp argument (`validation.checked_clock`)."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], dt.datetime]) -> None:
        self._clock = validation.checked_clock(clock)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect.name == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    @property
    def database_file(self) -> str | None:
        """The file holding the database (SQLite), None when a server holds it (PostgreSQL)."""
        return self.dialect.database_file(self.dsn)

    def exists(self) -> bool:
        """False for a SQLite file not there yet (asking does not create it); True otherwise."""
        path = self.database_file
        return path is None or os.path.isfile(path)

    @contextlib.contextmanager
    def stand_in(self) -> Iterator[MemoryStore]:
        """An empty SQLite store in a temporary directory, deleted after the block: what a preview
        of migrations runs against in place of a SQLite file not there yet (never created by it)."""
        with tempfile.TemporaryDirectory(prefix="memoric-preview-") as directory:
            url = f"sqlite:///{os.path.join(directory, 'preview.db')}"
            stand_in = MemoryStore(url, tiers=self.tiers, warn_sqlite=False)
            try:
                yield stand_in
            finally:
                stand_in.close()

    def __repr__(self) -> str:
        return f"MemoryStore({mask_url(self.dsn)!r})"

    @translate_errors
    def close(self) -> None:
        """Close this thread's connection (the next call opens a new one); refused inside a
        `lock()` block of this thread, as peewee refuses it inside a transaction."""
        if locks.held_here(self):
            raise MemoricError(
                "close() inside a lock() block (a policy run's summarizer, say) would let go of the "
                "connection a PostgreSQL lock lives on, and so of the lock: close after the block"
            )
        if locks.let_orphans_go(self):  # locks left on this connection: end it, not back to a pool
            self.database.end_session()
        elif not self.database.is_closed():
            self.database.close()

    def driver_errors(self, what: str) -> DriverErrors:
        """A block whose driver errors become MemoricError, worded as a failed `what`."""
        return DriverErrors(functools.partial(store_call_failed, self, what))

    def lock(
        self, name: str, *, timeout: float | None = None, on_wait: Callable[[], None] | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the named cross-process lock for the block (PostgreSQL advisory lock, SQLite file lock).

        Waits while another process or thread holds it, calling `on_wait` once when it starts to
        wait; raises LockTimeout after `timeout` seconds (None waits forever), and MemoricError at
        once when this thread holds it already (`locks`). A PostgreSQL lock belongs to the
        connection that took it: when that connection is lost during the block, so is the lock,
        and a block that did not fail otherwise raises MemoricError saying so.
        """
        return locks.hold(self, name, timeout, on_wait)

    # --- schema -------------------------------------------------------------------------

    @translate_errors
    def has_schema(self) -> bool:
        """Whether the memories table exists (an empty database has none yet)."""
        return self.database.table_exists(self.Memory._meta.table_name)

    @translate_errors
    def create_schema(self) -> None:
        """Create the tables and indexes straight from the models (tests; `init_db`)."""
        self.dialect.refuse_a_temporary_schema(self.database)
        with self.database.atomic():
            self.database.create_tables(self.models(), safe=True)
            self.dialect.create_extra_indexes(self.database)
            self.dialect.distribute(self.database)
        self.dialect.schema_changed(self.database)

    @translate_errors
    def drop_schema(self) -> None:
        """Drop the tables (and their indexes, the dialect's own included)."""
        with self.database.atomic():
            self.dialect.drop_extra_tables(self.database)
            self.database.drop_tables(self.models(), safe=True)
        self.postings_ready = False
        self.dialect.schema_changed(self.database)

    def models(self) -> list[type[peewee.Model]]:
        """Every table's model: the memories, the clusters, the text postings."""
        return [self.Memory, self.MemoryCluster, self.MemoryTerm, self.MemoryDocument]

    @translate_errors
    def truncate(self) -> None:
        """Delete every memory (and its postings) and cluster and restart the ids.

        The postings tables are asked for once `memories` is truncated, under the TRUNCATE's
        lock (006 has committed, or has not begun): a weaker lock taken before it made two
        truncates deadlock, each waiting to upgrade its lock while holding the other's back.
        """
        memories, clusters, *posted = [model._meta.table_name for model in self.models()]
        with self.database.atomic():
            self.dialect.truncate(self.database, [memories, clusters])
            if postings.enabled(self):
                self.dialect.truncate(self.database, posted)

    @contextlib.contextmanager
    def atomic(self):
        """One transaction (a savepoint when nested) around a group of store calls.

        A failure to begin or commit it is a MemoricError like any driver error.
        """
        with self.driver_errors("atomic"), self.database.atomic():
            yield

    # --- memories -----------------------------------------------------------------------

    @translate_errors
    def insert_memory(self, **fields) -> int:
        """Store one memory and return its id (the memory fields, plus optional timestamps and id;
        the id counter is moved past a given id first, as `insert_memories` does)."""
        row = memory_row(self, fields)
        if "id" in row:
            bulk.counter_moved_past(self, row["id"])
        return postings.insert_memory(self, row)

    @translate_errors
    def insert_memories(self, rows: Iterable[dict], *, batch_size: int = BULK_BATCH_SIZE) -> int:
        """Validate every row, then insert them in batches, one transaction per batch (`bulk`)."""
        return bulk.insert_memories(self, rows, batch_size)

    @translate_errors
    def get_memory(self, memory_id: int) -> dict | None:
        memory_id = validation.memory_id(memory_id)
        rows = list(self.Memory.select().where(self.Memory.id == memory_id).dicts())
        return memory_dict(rows[0]) if rows else None

    @translate_errors
    def get_memories(self, *, limit: int | None = 50, offset: int = 0, **filters) -> list[dict]:
        """Memories matching every filter, newest first (`created_at` desc, `id` desc)."""
        checked = checked_filters(self, filters, method="get_memories", others=("limit", "offset"))
        limit = validation.count("limit", limit, allow_none=True)
        offset = validation.count("offset", offset)
        checked = keyed(self, checked, enough=KEY_ROWS_PER_ROW * (offset + limit) if limit else None)
        values = {**slot_values(checked), "limit": limit, "offset": offset}
        window_first = self.dialect.window_first and checked["user_id"] is not None
        if limit and window_first and checked["where_metadata"]:
            return newest_rows.page(self, checked, values)
        key = ("get_memories", filter_shape(checked), limit is None, offset > 0)
        sql, params = self.statements.get(
            key, lambda: newest_first(self, slotted(checked), limit, offset).sql()
        )
        return memory_rows(self, sql, bind(params, values))

    @translate_errors
    def count_memories(self, **filters) -> int:
        """How many memories match every filter (the filters of `get_memories`)."""
        checked = keyed(self, checked_filters(self, filters, method="count_memories"))
        return select_memories(self, filter_nodes(self, checked), checked["metadata_key"]).count()

    @translate_errors
    def link_threads_by_topic(self, user_id: str, topic) -> list[str]:
        """Sorted thread ids of `user_id` holding a memory whose `metadata.topic == topic`."""
        return thread_ids(self, filter_conditions(self, user_id=user_id, where_metadata={"topic": topic}))

    @translate_errors
    def distinct_threads(self, *, user_id=None, tier=None, limit: int | None = 1000) -> list[str]:
        """Sorted thread ids of the memories of `user_id` in `tier` (either None for any)."""
        limit = validation.count("limit", limit, allow_none=True)
        return thread_ids(self, filter_conditions(self, user_id=user_id, tier=tier), limit)

    @translate_errors
    def count_by_tier(self, *, user_id=None) -> dict[str, int]:
        """Memories per tier: every configured tier (0 when empty), then any other tier found."""
        m = self.Memory
        query = select_memories(self, filter_conditions(self, user_id=user_id))
        query = query.select(m.tier, peewee.fn.COUNT(m.id).alias("n")).group_by(m.tier)
        query = query.order_by(self.dialect.by_code_point(m.tier))
        counts = dict.fromkeys(self.tiers, 0)
        counts.update({row["tier"]: row["n"] for row in query.dicts()})
        return counts

    @translate_errors
    def find_older_than(self, *, days, from_tier=None, user_id=None, limit: int | None = 1000) -> list[dict]:
        """Memories not updated for `days` days, oldest first."""
        cutoff = validation.cutoff(self.clock(), validation.days(days))
        limit = validation.count("limit", limit, allow_none=True)
        checked = checked_filters(self, {"user_id": user_id, "tier": from_tier})
        key = ("find_older_than", filter_shape(checked), limit is None)
        sql, params = self.statements.get(key, lambda: oldest_first(self, slotted(checked), limit).sql())
        values = {**checked, "cutoff": self.Memory.updated_at.db_value(cutoff), "limit": limit}
        return memory_rows(self, sql, bind(params, values))

    @retried
    def _update(self, memory_ids: list[int], **values) -> int:
        m = self.Memory
        values["updated_at"] = self.clock()
        edits_sources = bool(values.keys() & summaries.SOURCE_EDITS)
        changed, threads = 0, set()
        id_chunks = list(chunks(memory_ids, ID_CHUNK_SIZE))
        with self.database.atomic():
            if edits_sources:
                chosen = [[m.id.in_(chunk)] for chunk in id_chunks]
                summaries.lock_threads(self, chosen, summaries.is_summarized(self))
            for chunk in id_chunks:
                query = m.update(**values).where(m.id.in_(chunk))
                if not edits_sources:
                    changed += query.execute()
                    continue
                # As updated: a row a policy run marked meanwhile is seen marked once it commits.
                updated = list(query.returning(*postings.posted_fields(m), m.thread_id, m.summarized).dicts())
                if "content" in values:
                    postings.reindex(self, updated)
                threads |= summaries.released_threads(
                    (row["user_id"], row["namespace"], row["thread_id"], row["summarized"]) for row in updated
                )
                changed += len(updated)
            summaries.release(self, threads, kept=memory_ids)
        return changed

    @translate_errors
    def update_tier(self, *, memory_ids, new_tier) -> int:
        ids = validation.memory_ids(memory_ids)
        return self._update(ids, tier=validation.tier(new_tier, self.tiers))

    @translate_errors
    def mark_summarized(self, *, memory_ids) -> int:
        return self._update(validation.memory_ids(memory_ids), summarized=True)

    @translate_errors
    def update_content(self, *, memory_id, new_content) -> int:
        memory_id = validation.memory_id(memory_id)
        return self._update([memory_id], content=validation.content(new_content, "new_content"))

    @translate_errors
    def update_metadata(self, *, memory_id, new_metadata) -> int:
        memory_id = validation.memory_id(memory_id)
        return self._update([memory_id], metadata=json_input.metadata(new_metadata, "new_metadata"))

    @translate_errors
    def set_related_threads(self, *, memory_id, related_threads) -> int:
        memory_id = validation.memory_id(memory_id)
        threads = validation.thread_list("related_threads", related_threads)
        return self._update([memory_id], related_threads=threads)

    @translate_errors
    @retried
    def delete_memories(self, *, memory_ids=None, user_id=None) -> int:
        """Delete the memories of `memory_ids`, only those of `user_id` if given (all of theirs
        when `memory_ids` is None); rows deleted."""
        if memory_ids is None and user_id is None:
            raise validation.ValidationError("delete_memories needs memory_ids, user_id or both")
        m = self.Memory
        owner = [] if user_id is None else [m.user_id == validation.user_id(user_id)]
        with self.database.atomic():
            if memory_ids is None:
                rows = postings.delete_memories(self, owner)
                cluster_members.forget(self, rows)
                return len(rows)
            deleted, threads = [], set()
            ids = chunks(validation.memory_ids(memory_ids), ID_CHUNK_SIZE)
            selections = [[m.id.in_(chunk), *owner] for chunk in ids]
            summaries.lock_threads(self, selections, summaries.involved(self))
            for chosen in selections:
                rows = postings.delete_memories(self, chosen, *summaries.thread_fields(self))
                threads |= summaries.released_threads(row[1:] for row in rows)
                deleted += rows
            return len(deleted) + summaries.release(self, threads, deleted=deleted)

    # --- clusters: the documented calls, their queries in `cluster_queries` ------------------

    def upsert_cluster(self, *, user_id, topic, category, memory_ids, summary: str = "") -> int:
        """Create or replace the cluster of (user, topic, category) in one statement; its id."""
        cluster = {"topic": topic, "category": category, "memory_ids": memory_ids, "summary": summary}
        return cluster_queries.upsert_cluster(self, user_id=user_id, **cluster)

    def upsert_clusters(self, *, user_id, clusters: Iterable[dict]) -> int:
        """`upsert_cluster` for many clusters of one user; the number written."""
        return cluster_queries.upsert_clusters(self, user_id=user_id, clusters=clusters)

    def get_clusters(self, *, user_id=None, topic=None, category=None, limit: int | None = 100) -> list[dict]:
        """Clusters matching every filter, largest first (then by id)."""
        return cluster_queries.get_clusters(
            self, user_id=user_id, topic=topic, category=category, limit=limit
        )

    def delete_cluster(self, *, cluster_id) -> int:
        """Delete the cluster with that id; rows deleted."""
        return cluster_queries.delete_cluster(self, cluster_id=cluster_id)
