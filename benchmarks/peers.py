"""LangGraph's stores as a peer: memoric's workload and read queries in LangGraph's own terms.

`langgraph.store.sqlite.SqliteStore` and `langgraph.store.postgres.PostgresStore` (the `bench`
extra installs them) get the same memories as memoric, mapped the natural way: one item per
memory, namespace `(user_id, thread_id)`, key the memory's id, value the memory's fields with its
metadata keys beside them (LangGraph filters on top-level keys of the value). A query about one
user searches the namespace prefix `(user_id,)`, one about all users the empty prefix, and a
metadata filter is LangGraph's `filter` (equality per key).

What LangGraph cannot ask is left out: list containment (`{"tags": [...]}`), clusters and recall.
LangGraph orders a search by its own write time, not by the memory's `created_at` or `updated_at`,
so where memoric returns the newest (or, for the tier query, the oldest) matches, LangGraph returns
as many matches, in its order. Each store is opened as LangGraph's `from_conn_string` opens it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import time
from collections.abc import Callable, Iterator

from benchmarks import queries as q
from benchmarks import workload as w

NAME = "langgraph"
LABEL = "LangGraph"
INSTALL_HINT = "pip install '.[bench]'"
DISTRIBUTIONS = {"sqlite": "langgraph-checkpoint-sqlite", "postgresql": "langgraph-checkpoint-postgres"}
# One `batch` of this many puts is one INSERT with 5 bound values per row on SQLite: 5,000 rows stay
# under the 32,766 variables a stock SQLite build allows.
CHUNK = 5_000


def missing() -> str | None:
    """Why LangGraph's stores cannot be imported here, or None when they can."""
    try:
        for module in ("langgraph.store.sqlite", "langgraph.store.postgres"):
            importlib.import_module(module)
    except ImportError as exc:
        return f"{LABEL} is not installed ({exc}); to compare memoric with it: {INSTALL_HINT}"
    return None


def label(dialect: str) -> str:
    """The peer's name and version on `dialect`, e.g. `LangGraph SqliteStore 3.1.2`."""
    store = "SqliteStore" if dialect == "sqlite" else "PostgresStore"
    return f"{LABEL} {store} {importlib.metadata.version(DISTRIBUTIONS[dialect])}"


@contextlib.contextmanager
def open_store(dsn: str) -> Iterator:
    """LangGraph's store on memoric's benchmark URL `dsn`, its tables set up."""
    if dsn.startswith("sqlite:///"):
        from langgraph.store.sqlite import SqliteStore

        opened = SqliteStore.from_conn_string(dsn.removeprefix("sqlite:///"))
    else:
        from langgraph.store.postgres import PostgresStore

        opened = PostgresStore.from_conn_string(dsn)
    with opened as store:
        store.setup()
        yield store


def is_sqlite(store) -> bool:
    """Whether `store` is LangGraph's SQLite store (filters and settings differ per backend)."""
    from langgraph.store.sqlite import SqliteStore

    return isinstance(store, SqliteStore)


def scalar(store, sql: str):
    """The one value `sql` returns, on either store's connection (psycopg's rows are dicts there)."""
    row = store.conn.execute(sql).fetchone()
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


# --- loading ------------------------------------------------------------------------------


def _timestamp(moment) -> str:
    """ISO 8601 with microseconds always written, so the texts sort as the times do."""
    return moment.isoformat(timespec="microseconds")


def value_of(row: dict) -> dict:
    """The item value of one workload memory: its fields, its metadata keys beside them."""
    return {
        "content": row["content"],
        "tier": row["tier"],
        "score": row["score"],
        "created_at": _timestamp(row["created_at"]),
        "updated_at": _timestamp(row["updated_at"]),
        **row["metadata"],
    }


def namespace_of(row: dict) -> tuple[str, str]:
    """Where a memory's item lives: (user_id, thread_id), so one user's items share a prefix."""
    return row["user_id"], row["thread_id"]


def put_ops(rows: list[dict], first_key: int) -> list:
    """One PutOp per row, keys `first_key`, `first_key + 1`, ... (memoric's ids for the same rows)."""
    from langgraph.store.base import PutOp

    return [PutOp(namespace_of(row), str(first_key + n), value_of(row)) for n, row in enumerate(rows)]


def load(store, rows: int, seed: int) -> dict:
    """Put the workload through `batch` in chunks of CHUNK; time only the `batch` calls."""
    spent = 0.0
    done = 0
    for chunk in w.generate(rows, seed, CHUNK):
        ops = put_ops(chunk, done + 1)
        start = time.perf_counter()
        store.batch(ops)
        spent += time.perf_counter() - start
        done += len(chunk)
    stored = scalar(store, "SELECT COUNT(*) FROM store")
    if stored != rows:
        raise RuntimeError(f"expected {rows} items in a fresh {LABEL} store, it holds {stored}")
    return {"rows": rows, "seconds": spent, "rows_per_s": rows / spent}


def is_loaded(store, rows: int) -> bool:
    """Whether a reused database already holds the whole workload."""
    return scalar(store, "SELECT COUNT(*) FROM store") == rows


def analyze(store) -> None:
    """Refresh PostgreSQL's planner statistics after the load, as memoric's database gets."""
    if not is_sqlite(store):
        store.conn.execute("ANALYZE store")


def settings_note(store) -> str | None:
    """The SQLite durability settings the store runs with, which single-row puts depend on (None on PG)."""
    if not is_sqlite(store):
        return None
    journal, synchronous = scalar(store, "PRAGMA journal_mode"), scalar(store, "PRAGMA synchronous")
    level = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(synchronous, synchronous)
    return (
        f"the store runs with SQLite's journal_mode={journal}, synchronous={level}, as from_conn_string "
        "leaves them (memoric: WAL, synchronous=NORMAL); each put is a transaction of its own"
    )


def single_insert_rate(store, count: int, seed: int) -> dict:
    """Rows per second of `put`, one call per row; the items are removed after."""
    from langgraph.store.base import PutOp

    rows = next(w.generate(count, seed, count))
    keys = [f"single-{n}" for n in range(count)]
    start = time.perf_counter()
    for key, row in zip(keys, rows, strict=True):
        store.put(namespace_of(row), key, value_of(row))
    spent = time.perf_counter() - start
    store.batch([PutOp(namespace_of(row), key, None) for key, row in zip(keys, rows, strict=True)])
    return {"rows": count, "seconds": spent, "rows_per_s": count / spent}


# --- queries ------------------------------------------------------------------------------


def _everyone(store, pattern: dict, limit: int = q.LIMIT):
    """Items of all users matching `pattern` (the empty namespace prefix)."""
    return store.search((), filter=pattern, limit=limit)


def _one_user(store, i: int, pattern: dict):
    """Items of iteration `i`'s user matching `pattern` (the namespace prefix `(user_id,)`)."""
    return store.search((q.user_for(i),), filter=pattern, limit=q.LIMIT)


def nested_filter(store, i: int) -> dict:
    """`customer.tier` equal to the query's tier.

    SQLite's store reads a dotted key as a JSON path; PostgreSQL's looks the dotted key up as one
    top-level key (and matches nothing), so there the whole `customer` object is compared (`$eq`),
    which is the same question for this workload, whose `customer` holds only `tier`.
    """
    if is_sqlite(store):
        return {"customer.tier": q.customer_tier(i)}
    return {"customer": {"$eq": {"tier": q.customer_tier(i)}}}


def tier_updated(store, i: int):
    """Items of the tier written before the cutoff: a range filter on the value's `updated_at` text."""
    pattern = {"tier": q.older_tier(i), "updated_at": {"$lt": _timestamp(q.older_than_cutoff())}}
    return _everyone(store, pattern, q.OLDER_THAN_LIMIT)


QUERIES: dict[str, Callable] = {
    "filter_user": lambda store, i: _one_user(store, i, {"topic": q.topic_for(i)}),
    "filter_all_2keys": lambda store, i: _everyone(store, q.two_keys(i)),
    "filter_nested": lambda store, i: _one_user(store, i, nested_filter(store, i)),
    "filter_no_match": lambda store, i: _everyone(store, {"topic": q.no_such_topic(i)}),
    "filter_no_match_user": lambda store, i: _one_user(store, i, {"topic": q.no_such_topic(i)}),
    "user_thread": lambda store, i: store.search((q.user_for(i), q.thread_for(i)), limit=q.LIMIT),
    "tier_updated": tier_updated,
}


def result_ids(items: list) -> list[int]:
    """The memory ids of a search's items (the keys the load gave them)."""
    return [int(item.key) for item in items]
