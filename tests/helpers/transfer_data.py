"""Transfer: a database full of awkward values, snapshots compared type for type, export lines."""

from __future__ import annotations

import datetime as dt
import io
import json

from memoric.db import transfer_queries
from memoric.db.models import UTC
from memoric.db.store import MemoryStore

T0 = dt.datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


TRICKY_METADATA = {"int": 1, "float": 1.0, "big": 2**62, "neg": -0.5, "bool": False, "none": None,
                   "list": [1, "1", 1.5, [True]], "nested": {"a.b": {"%s": "'; DROP TABLE memories; --"}},
                   "unicode": "żółw 🐢", "huge_float": 1e16, "tiny_float": -1.5e-300,
                   "floats": [2.5e300, 123456789012345678.0], "e+": "1e+16"}  # fmt: skip


def fill(store: MemoryStore) -> None:
    store.insert_memories(
        [
            {
                "user_id": f"user{i % 3}",
                "thread_id": f"t{i % 4}" if i % 5 else None,
                "namespace": "ns" if i % 7 == 0 else None,
                "tier": store.tiers[i % 3],
                "score": i % 101,
                "content": f"memory {i} — with ünïcode",
                "metadata": {**TRICKY_METADATA, "i": i},
                "related_threads": [f"t{(i + 1) % 4}"] if i % 2 else [],
                "summarized": i % 9 == 0,
                "created_at": T0 - dt.timedelta(hours=i),
                "updated_at": T0 - dt.timedelta(minutes=i),
            }
            for i in range(2500)
        ]
    )
    store.delete_memories(memory_ids=[5, 6, 7])  # ids with holes must survive
    store.upsert_cluster(user_id="user1", topic="a", category="general", memory_ids=[2, 8], summary="two")
    store.upsert_cluster(user_id="user2", topic="b", category="x", memory_ids=[3])


def snapshot(store: MemoryStore) -> list[list]:
    """Every memory and every cluster, in id order."""
    return [list(transfer_queries.iter_memories(store)), transfer_queries.all_clusters(store)]


def same_types(a, b) -> bool:
    """Whether two equal values have the same types all the way down (true is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(same_types(value, b[key]) for key, value in a.items())
    if isinstance(a, list):
        return all(map(same_types, a, b))
    return True


def assert_identical(got, expected) -> None:
    """Equal, and of the same JSON types all the way down."""
    assert got == expected
    assert same_types(got, expected), "equal values of different types"


HEADER = {"type": "header", "format": "memoric-export", "format_version": 1}
HEADER_LINE = json.dumps(HEADER) + "\n"


def dump_lines(records: list[dict], header: dict = HEADER) -> str:
    """The text of an export holding `header` and then these records, one JSON line each."""
    return "".join(json.dumps(record) + "\n" for record in (header, *records))


def export_of(*records: dict, header: dict = HEADER) -> io.StringIO:
    """An export file holding `header` and then these records."""
    return io.StringIO(dump_lines(list(records), header))


def memory_line(memory_id: int, **fields) -> dict:
    return {"type": "memory", "id": memory_id, "user_id": "ada", "content": f"memory {memory_id}",
            "created_at": T0.isoformat(), **fields}  # fmt: skip


def cluster_line(cluster_id: int, **fields) -> dict:
    stamps = dict.fromkeys(("created_at", "updated_at", "last_built_at"), T0.isoformat())
    return {"type": "cluster", "cluster_id": cluster_id, "user_id": "ada", "topic": "t",
            "category": "general", "memory_ids": [1], "summary": "", **stamps,
            "memory_count": len(fields.get("memory_ids", [1])), **fields}  # fmt: skip
