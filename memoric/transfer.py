"""Export, import and copy: whole databases as JSON Lines, between any two dialects.

An export is one header line (format, format version, schema version), then one line per
memory, then one per cluster. Import reads it in batches, one transaction each, keeps ids,
timestamps and metadata types exactly, and skips rows whose id already exists, so importing
the same file twice changes nothing. `copy_database` streams one store into another the same way.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TextIO

from memoric.db.models import UTC, dump_json
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError

FORMAT = "memoric-export"
FORMAT_VERSION = 1
BATCH_SIZE = 1000
TIMESTAMPS = ("created_at", "updated_at", "last_built_at")

Progress = Callable[[int], None]


def export_jsonl(
    store: MemoryStore, out: TextIO, *, user_id: str | None = None, schema_version: str | None = None
) -> dict[str, int]:
    """Write the header, every memory and every cluster (of one user, or all) to `out`."""
    header = {
        "type": "header",
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": schema_version,
        "exported_at": dt.datetime.now(UTC).isoformat(),
        "source_dialect": store.dialect,
        "user_id": user_id,
    }
    out.write(dump_json(header) + "\n")
    counts = {"memories": 0, "clusters": 0}
    for memory in store.iter_memories(user_id=user_id):
        out.write(dump_json({"type": "memory", **_encode(memory)}) + "\n")
        counts["memories"] += 1
    for cluster in store.all_clusters(user_id=user_id):
        out.write(dump_json({"type": "cluster", **_encode(cluster)}) + "\n")
        counts["clusters"] += 1
    return counts


def import_jsonl(
    store: MemoryStore,
    lines: Iterable[str],
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Load an export into `store`; counts of rows inserted and skipped (already there)."""
    records = _records(lines)
    _check_header(next(records, None))
    return _load(store, (record for _, record in records), batch_size, progress)


def copy_database(
    source: MemoryStore,
    target: MemoryStore,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Copy every memory and cluster of `source` into `target` (any dialects), ids kept."""
    memories = ({"type": "memory", **m} for m in source.iter_memories(batch_size=batch_size))
    clusters = ({"type": "cluster", **c} for c in source.all_clusters())
    return _load(target, _chain(memories, clusters), batch_size, progress, encoded=False)


def _chain(*iterables: Iterable) -> Iterator:
    for iterable in iterables:
        yield from iterable


def _load(
    store, records: Iterable[dict], batch_size: int, progress, *, encoded: bool = True
) -> dict[str, int]:
    counts = {"memories": 0, "clusters": 0, "skipped": 0}
    records = iter(records)
    while batch := list(islice(records, batch_size)):
        rows = {"memory": [], "cluster": []}
        for record in batch:
            kind = record.pop("type", None)
            if kind not in rows:
                raise ValidationError(f"unknown record type {kind!r} (expected memory or cluster)")
            rows[kind].append(_decode(record) if encoded else record)
        with store.database.atomic():
            inserted_memories = store.insert_memories(rows["memory"], skip_existing=True)
            inserted_clusters = store.insert_clusters(rows["cluster"]) if rows["cluster"] else 0
        counts["memories"] += inserted_memories
        counts["clusters"] += inserted_clusters
        counts["skipped"] += len(batch) - inserted_memories - inserted_clusters
        if progress is not None:
            progress(len(batch))
    return counts


def _records(lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
    """(line number, parsed object) for every non-blank line; ValidationError names a bad line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"line {number} is not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise ValidationError(f"line {number} is not a JSON object")
        yield number, record


def _check_header(first: tuple[int, dict] | None) -> None:
    if first is None:
        raise ValidationError("the export is empty: no header line")
    _, header = first
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise ValidationError(f"not a memoric export: the first line must be a {FORMAT!r} header")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValidationError(
            f"export format version {version!r} is newer than this memoric reads ({FORMAT_VERSION}); "
            "upgrade memoric to import it"
        )


def _encode(row: dict) -> dict:
    return {key: value.isoformat() if key in TIMESTAMPS else value for key, value in row.items()}


def _decode(record: dict) -> dict:
    decoded = dict(record)
    for key in TIMESTAMPS:
        if isinstance(decoded.get(key), str):
            try:
                decoded[key] = dt.datetime.fromisoformat(decoded[key])
            except ValueError:
                raise ValidationError(f"{key} {decoded[key]!r} is not an ISO 8601 timestamp") from None
    return decoded
