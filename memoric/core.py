"""Memoric: the facade agent scripts use (save, retrieve, policies, clusters, stats, migrate).

`Memoric()` resolves its database (argument > $MEMORIC_DATABASE_URL > config > the embedded
SQLite file `~/.memoric/memoric.db`) and its application's migration chain, if any (argument >
$MEMORIC_APP_MIGRATIONS > config `migrations.app_dir`). Before its first data operation it makes
sure the schema is there: an empty database is built through memoric's chain then the
application's; one behind head on either chain raises `MigrationError` unless `auto_migrate=True`.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import threading
from collections.abc import Callable

from memoric import arguments, clustering, forking, json_input, policies, validation
from memoric.config import (
    ENV_DATABASE_URL,
    from_environment,
    load_config,
    resolve_app_dir,
    resolve_dsn,
    tier_names,
)
from memoric.db import recall_queries
from memoric.db.masking import mask_url
from memoric.db.store import MemoryStore, utc_now
from memoric.errors import ConfigError, MigrationError, ValidationError
from memoric.migrate import NOT_CREATED, Migrations
from memoric.scoring import Relevance, ScoreFormula

SCOPES = ("thread", "topic", "user")
Enricher = Callable[[str, dict], dict | None]


def _topic_needed(pattern: dict) -> str:
    """Why a filter does not give scope "topic" its topic: none, or one that is not a string."""
    if "topic" not in pattern:
        return 'scope "topic" needs metadata_filter={"topic": ...}'
    return f'scope "topic" needs a string topic in metadata_filter, got {validation.shown(pattern["topic"])}'


class Memoric:
    """One memory store for an agent: `Memoric().save(...)` works with no setup.

    Options beyond the store's: `app_dir` is the application's own migrations directory;
    `create=False` refuses a database not there or empty instead of building one (a script or
    command that only reads, where a mistyped path must not become a new database);
    `summarizer(memories, max_chars) -> str` replaces the default extractive thread summary;
    `enricher(content, metadata) -> dict` may add metadata keys on save (never overwrite the
    caller's); `clock() -> datetime` is the time source (tests, replays).
    """

    def __init__(
        self,
        dsn: str | None = None,
        config_path: str | os.PathLike | None = None,
        config: dict | None = None,
        auto_migrate: bool = False,
        *,
        app_dir: str | os.PathLike | None = None,
        create: bool = True,
        summarizer: policies.Summarizer | None = None,
        enricher: Enricher | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        arguments.summarizer(summarizer)
        app_dir = arguments.directory("app_dir", app_dir)
        validation.boolean("auto_migrate", auto_migrate)
        validation.boolean("create", create)
        arguments.function("enricher", enricher, "(content, metadata) -> dict", 2)
        self.config = load_config(config_path, config)
        url = resolve_dsn(dsn, self.config, make_directory=create)
        try:
            warn = self.config["database"]["sqlite_warning"]
            self.store = MemoryStore(url, tiers=tier_names(self.config), clock=clock, warn_sqlite=warn)
        except ConfigError as exc:
            if from_environment(dsn, url):
                raise ConfigError(f"{exc} (the URL of ${ENV_DATABASE_URL})") from exc.__cause__
            raise
        self.auto_migrate = auto_migrate
        self.create = create
        self.summarizer = summarizer
        self.enricher = enricher
        self.formula = ScoreFormula.from_config(self.config["scoring"])
        self.relevance = Relevance.from_config(self.config["scoring"])
        self.migrations = Migrations(self.store, app_dir=resolve_app_dir(app_dir, self.config))
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        forking.register(self)

    def __repr__(self) -> str:
        return f"Memoric({self.store!r})"

    def after_fork_in_child(self) -> None:
        """A schema check another thread of the parent was running did not come along, and the
        lock it held would never be released here."""
        self._schema_lock = threading.Lock()

    def __enter__(self) -> Memoric:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close this thread's database connection."""
        self.store.close()

    @property
    def db(self) -> MemoryStore:
        """The store, its schema checked (an empty database built through the chain) on first use.

        `store` is the same object without that check, for code that must look before building.
        """
        self._ready()
        return self.store

    # --- schema -------------------------------------------------------------------------

    def _ready(self) -> None:
        """Check (or build) the schema once, before the first data operation."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                if not self.create:
                    self._refuse_nothing_to_read()
                self.migrations.ensure_schema(self.auto_migrate, create=self.create)
                self._schema_ready = True

    def _refuse_nothing_to_read(self) -> None:
        """ConfigError for a SQLite file not there, MigrationError for a database without any of
        memoric's tables, found before the store's connection could change the file (WAL)."""
        store = self.store
        if not store.exists():
            raise ConfigError(f"there is no database at {mask_url(store.dsn)}: {NOT_CREATED}")
        if not store.dialect.may_hold_memoric(store.dsn):
            raise MigrationError(f"{mask_url(store.dsn)} holds no memoric schema: {NOT_CREATED}")

    def ensure_schema(self) -> None:
        """Check (or build) the schema now, not at the first data operation (e.g. before using `db`)."""
        self._ready()

    def init_db(self) -> None:
        """Create the schema from the models and record it as being at the latest migration."""
        self.migrations.init_db()
        self._schema_ready = True

    def migrate(self, target: str = "head") -> list[str]:
        """Apply the migrations up to `target`; the names applied."""
        applied = self.migrations.upgrade(target)
        self._schema_ready = False
        return applied

    # --- memories -----------------------------------------------------------------------

    def save(
        self,
        user_id: str,
        content: str,
        *,
        thread_id: str | None = None,
        metadata: dict | None = None,
        namespace: str | None = None,
        tier: str | None = None,
        score: int | None = None,
    ) -> int:
        """Store one memory; its id. `tier` defaults to the first tier, `score` to 50."""
        self._ready()
        validation.user_id(user_id)
        validation.clean_text("content", content)
        metadata = copy.deepcopy(json_input.metadata(metadata))
        if self.enricher is not None:
            metadata = {**self._enrichment(content, metadata), **metadata}
        return self.store.insert_memory(
            user_id=user_id,
            content=content,
            thread_id=thread_id,
            metadata=metadata,
            namespace=namespace,
            tier=tier,
            score=score,
        )

    def _enrichment(self, content: str, metadata: dict) -> dict:
        extra = self.enricher(content, copy.deepcopy(metadata))
        if extra is None:
            return {}
        if not isinstance(extra, dict):
            raise ValidationError(f"the enricher must return a dict or None, got {type(extra).__name__}")
        return json_input.metadata(extra, "enricher metadata")

    def retrieve(
        self,
        user_id: str,
        *,
        thread_id: str | None = None,
        metadata_filter: dict | None = None,
        scope: str = "thread",
        namespace: str | None = None,
        top_k: int = 10,
        include_summarized: bool = False,
        query: str | None = None,
    ) -> list[dict]:
        """The `top_k` best memories of one user in one namespace, by the recall score (`scoring.py`).

        scope `thread`: that thread (every thread of the user when none is given); `topic`: the
        user's threads holding a memory with `metadata_filter["topic"]` (the other filter keys
        still apply); `user`: all the user's memories. Ties go to the newest. Each dict has `_score`.
        With `query`, only memories sharing a term with it (memoric's tokenizer, `memoric.text`),
        ranked by BM25 relevance blended with the score (`scoring.Relevance`); each dict also has
        `_relevance` (its BM25 value) and `_rank`.
        """
        self._ready()
        scope = validation.one_of("scope", scope, SCOPES)
        validation.count("top_k", top_k)
        pattern = dict(json_input.metadata_filter(metadata_filter, "metadata_filter") or {})
        scoped = {"where_metadata": pattern}
        if scope == "thread":
            scoped["thread_id"] = thread_id
        elif scope == "topic":
            if type(pattern.get("topic")) is not str:  # a topic: no filter by a null or a number
                raise ValidationError(_topic_needed(pattern))
            scoped["topic"] = pattern.pop("topic")
        return recall_queries.ranked_memories(
            self.store,
            user_id=user_id,
            formula=self.formula,
            namespace=namespace,
            bonus_thread_id=thread_id,
            include_summarized=include_summarized,
            limit=top_k,
            query=query,
            relevance=self.relevance,
            **scoped,
        )

    def forget(self, user_id: str, memory_ids: list[int] | None = None) -> int:
        """Delete one user's memories (those of `memory_ids`, or all); how many were deleted.

        Ids of other users' memories are left alone. In one transaction, the forgotten memories
        leave the user's clusters (a cluster left with none is deleted), so no reader (an
        export) sees a cluster listing one. A forgotten summary or summarized memory also
        deletes its thread's summaries (counted) and brings their sources back.
        """
        user_id = validation.user_id(user_id)  # None would let the ids reach every user's memories
        self._ready()
        return self.store.delete_memories(user_id=user_id, memory_ids=memory_ids)

    # --- policies, clusters, stats ------------------------------------------------------

    def run_policies(
        self,
        *,
        user_id: str | None = None,
        dry_run: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict:
        """Tier migration, trimming and thread summaries, as configured; the counts."""
        self._ready()
        if user_id is not None:
            validation.user_id(user_id)
        return policies.run_policies(
            self.store,
            self.config,
            user_id=user_id,
            dry_run=dry_run,
            summarizer=self.summarizer,
            on_progress=on_progress,
        )

    def rebuild_clusters(
        self, user_id: str | None = None, *, on_progress: Callable[[int], None] | None = None
    ) -> int:
        """Rebuild the topic clusters of one user (None: all); how many clusters they now have."""
        self._ready()
        if user_id is not None:
            validation.user_id(user_id)
        min_size = self.config["clustering"]["min_size"]
        return clustering.rebuild_clusters(
            self.store, min_size=min_size, user_id=user_id, on_progress=on_progress
        )

    def get_clusters(
        self,
        user_id: str | None = None,
        *,
        topic: str | None = None,
        category: str | None = None,
        limit: int | None = 100,
    ) -> list[dict]:
        """Clusters matching every filter, largest first."""
        self._ready()
        return self.store.get_clusters(user_id=user_id, topic=topic, category=category, limit=limit)

    def stats(self, user_id: str | None = None) -> dict:
        """Counts of memories (total, per tier, summarized), users, threads and clusters."""
        self._ready()
        counts = recall_queries.memory_stats(self.store, user_id=user_id)
        return {**counts, "dialect": self.store.dialect.name, "schema_version": self.migrations.current()}
