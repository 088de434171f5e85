"""Where the benchmark's databases live, how big they are, and what plans their queries get.

This is benchmark tooling, so it may speak each dialect's catalogue directly: SQLite's `dbstat`
table and `EXPLAIN QUERY PLAN`, PostgreSQL's `pg_table_size` and `EXPLAIN ANALYZE`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

from memoric.db.catalogue import METADATA_KEYS_TABLE
from memoric.testing import admin_sql, create_database, database_url, drop_database, postgres_server
from memoric.testing_citus import citus_cluster

PEEWEE_LOGGER = logging.getLogger("peewee")


class Server:
    """Hands out fresh databases of one dialect; `close()` removes what it created."""

    def __init__(self, dialect: str, workdir: str | None = None, postgres_url: str | None = None) -> None:
        self.dialect = dialect
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="memoric-bench-")
        self.workdir = workdir or self._tmp.name
        os.makedirs(self.workdir, exist_ok=True)
        self._server = contextlib.ExitStack()
        self.postgres_url = postgres_url
        self.cluster = None
        if dialect == "postgresql" and not postgres_url:
            pgdata = os.path.join(self.workdir, "pgdata")
            self.postgres_url = self._server.enter_context(postgres_server(pgdata))
        if dialect == "citus":  # a coordinator and two workers; databases made on every node
            self.cluster = self._server.enter_context(
                citus_cluster(os.path.join(self.workdir, "citus"), durable=True)
            )
            self.postgres_url = self.cluster.url

    def name(self, label: str) -> str:
        """A database name for `label`: stable in a work directory, unique to this process otherwise."""
        return f"memoric_bench_{label}" if self._tmp is None else f"memoric_bench_{os.getpid()}_{label}"

    def dsn(self, name: str, *, fresh: bool = True) -> str:
        """The URL of database `name` (recreated empty when `fresh`)."""
        if self.dialect == "sqlite":
            path = os.path.join(self.workdir, f"{name}.db")
            if fresh:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path + suffix)
            return f"sqlite:///{path}"
        create, drop = (
            (self.cluster.create_database, self.cluster.drop_database)
            if self.cluster
            else (create_database, drop_database)
        )
        if fresh:
            drop(self.postgres_url, name)
        elif admin_sql(self.postgres_url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            return database_url(self.postgres_url, name)
        return create(self.postgres_url, name)

    def drop(self, name: str) -> None:
        """Remove database `name` (kept when a work directory was given)."""
        if self._tmp is None:
            return
        if self.cluster:
            self.cluster.drop_database(self.postgres_url, name)
        elif self.dialect == "postgresql":
            drop_database(self.postgres_url, name)

    def close(self) -> None:
        self._server.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def server_version(store) -> str:
    """The database engine's version string."""
    if store.is_sqlite:
        return store.database.execute_sql("SELECT sqlite_version()").fetchone()[0]
    return store.database.execute_sql("SHOW server_version").fetchone()[0]


# --- sizes --------------------------------------------------------------------------------


def sizes(store) -> dict:
    """Bytes of the `memories` table and of each of its secondary indexes (SQLite's metadata keys
    table counted as one)."""
    measure = _sqlite_sizes if store.is_sqlite else _postgres_sizes
    table, indexes = measure(store.database)
    total = sum(indexes.values())
    return {
        "table_bytes": table,
        "index_bytes": total,
        "with_indexes_bytes": table + total,
        "index_overhead_pct": round(100.0 * total / table, 1) if table else None,
        "indexes": indexes,
    }


POSTING_TABLES = ("memory_terms", "memory_documents")


def posting_sizes(store) -> dict:
    """Bytes of each text postings table with its indexes (keyword recall), {} before they exist."""
    database = store.database
    present = [table for table in POSTING_TABLES if database.table_exists(table)]
    if store.is_postgres:
        return {
            t: database.execute_sql("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0] for t in present
        }
    pages = dict(database.execute_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    found = {}
    for table in present:
        names = database.execute_sql("SELECT name FROM sqlite_master WHERE tbl_name = ?", (table,)).fetchall()
        found[table] = sum(pages.get(name, 0) for (name,) in names)
    return found


def _sqlite_sizes(database) -> tuple[int, dict]:
    pages = dict(database.execute_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    names = database.execute_sql(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'memories'"
    ).fetchall()
    indexes = {name: pages.get(name, 0) for (name,) in names}
    if METADATA_KEYS_TABLE in pages:  # SQLite's metadata index is a table of its own
        indexes[METADATA_KEYS_TABLE] = pages[METADATA_KEYS_TABLE]
    return pages["memories"], indexes


def _postgres_sizes(database) -> tuple[int, dict]:
    if _distributed(database):  # the shards' sizes, summed over the workers
        table = database.execute_sql("SELECT citus_table_size('memories')").fetchone()[0]
        total = database.execute_sql("SELECT citus_total_relation_size('memories')").fetchone()[0]
        return table, {"all indexes, every shard": total - table}
    table = database.execute_sql("SELECT pg_table_size('memories')").fetchone()[0]
    rows = database.execute_sql(
        "SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = 'memories'::regclass AND NOT x.indisprimary ORDER BY i.relname"
    ).fetchall()
    return table, dict(rows)


def _distributed(database) -> bool:
    """Whether `memories` is a Citus distributed table (its rows on the workers' shards)."""
    if not database.execute_sql("SELECT to_regclass('pg_dist_partition') IS NOT NULL").fetchone()[0]:
        return False
    return database.execute_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'memories'::regclass)"
    ).fetchone()[0]


def primary_key_bytes(store) -> int:
    """PostgreSQL's primary-key index size (SQLite keeps the rowid inside the table; counted with
    the other indexes on Citus)."""
    if store.is_sqlite or _distributed(store.database):
        return 0
    return store.database.execute_sql(
        "SELECT COALESCE(SUM(pg_relation_size(indexrelid)), 0) FROM pg_index "
        "WHERE indrelid = 'memories'::regclass AND indisprimary"
    ).fetchone()[0]


def analyze(store) -> None:
    """Refresh the planner statistics, as PostgreSQL's autovacuum does after a bulk load."""
    if store.is_postgres:
        store.database.execute_sql("ANALYZE memories")
        store.database.execute_sql("ANALYZE memory_clusters")


# --- plans --------------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, tuple]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            self.statements.append(record.msg)


@contextlib.contextmanager
def captured_sql():
    """Collect the (sql, params) peewee runs inside the block."""
    handler = _Capture()
    level = PEEWEE_LOGGER.level
    PEEWEE_LOGGER.addHandler(handler)
    PEEWEE_LOGGER.setLevel(logging.DEBUG)
    try:
        yield handler.statements
    finally:
        PEEWEE_LOGGER.removeHandler(handler)
        PEEWEE_LOGGER.setLevel(level)


QUERY_WORDS = ("SELECT", "WITH")


def explain(store, call) -> dict:
    """The SQL `call()` runs (its last query: on SQLite the metadata keys are counted first) and
    the plan the database picks for it."""
    with captured_sql() as statements:
        call()
    queries = [(sql, params) for sql, params in statements if sql.lstrip().upper().startswith(QUERY_WORDS)]
    if not queries:
        return {"sql": None, "plan": []}
    sql, params = queries[-1][0], queries[-1][1] or ()
    prefix = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "
    rows = store.database.execute_sql(prefix + sql, params).fetchall()
    plan = [row[-1] for row in rows]
    return {"sql": sql, "params": [str(p) for p in params], "plan": plan}
