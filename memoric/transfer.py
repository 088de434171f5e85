"""Export, import and copy: whole databases as JSON Lines, between any two dialects.

An export is one header line (format, format version, schema version), then one line per
memory, then one per cluster. Import reads it in batches, one transaction each, keeps ids,
timestamps and metadata types exactly, and skips memories already there (same id, same data),
so importing the same file twice changes nothing; an id taken by a different memory is refused
(ValidationError, that batch unwritten), never silently dropped. `copy_database` streams one
store into another the same way. `check_jsonl` validates a whole export without writing, so a
file can be refused before its first batch lands. The `*_memoric` functions work through the
facade: schemas checked or built through the migration chain first, the schema version recorded
in the header.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, TextIO

from memoric import validation
from memoric.db.connection import database_exists
from memoric.db.models import UTC, dump_json
from memoric.db.store import MemoryStore
from memoric.db.urls import mask_url
from memoric.errors import ConfigError, MigrationError, ValidationError

if TYPE_CHECKING:
    from memoric.core import Memoric

FORMAT = "memoric-export"
FORMAT_VERSION = 1
BATCH_SIZE = 1000
TIMESTAMPS = ("created_at", "updated_at", "last_built_at")

Progress = Callable[[int], None]


def export_jsonl(
    store: MemoryStore, out: TextIO, *, user_id: str | None = None, schema_version: str | None = None
) -> dict[str, int]:
    """Write the header, every memory and every cluster (of one user, or all) to `out`."""
    if user_id is not None:
        validation.user_id(user_id)
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


def check_jsonl(store: MemoryStore, lines: Iterable[str | bytes]) -> dict[str, int]:
    """Validate a whole export as `import_jsonl` would, writing nothing; the rows it holds.

    ValidationError names the first bad line. A database without a schema yet needs no check
    for ids taken by other memories, and gets none (so a refused file leaves it unbuilt).
    """
    has_rows = store.has_schema()
    records = _records(lines)
    _check_header(next(records, None))
    counts = {"memories": 0, "clusters": 0}
    checks = {"memory": store.check_memory_row, "cluster": store.check_cluster_row}
    memories: list[dict] = []
    for number, record in records:
        fields = dict(record)
        kind = fields.pop("type", None)
        if kind not in checks:
            raise ValidationError(f"line {number}: unknown record type {kind!r} (expected memory or cluster)")
        try:
            row = _decode(fields)
            checks[kind](row)
        except ValidationError as exc:
            raise ValidationError(f"line {number}: {exc}") from None
        counts["memories" if kind == "memory" else "clusters"] += 1
        if kind == "memory" and has_rows:
            memories.append(row)
        if len(memories) == BATCH_SIZE:
            _refuse_conflicts(store, memories)
            memories = []
    _refuse_conflicts(store, memories)
    return counts


# --- through the facade ------------------------------------------------------------------


def export_memoric(memoric: Memoric, out: TextIO, *, user_id: str | None = None) -> dict[str, int]:
    """`export_jsonl` of a Memoric's database (schema checked first, its version in the header)."""
    memoric.ensure_schema()
    return export_jsonl(memoric.db, out, user_id=user_id, schema_version=memoric.migrations.current())


def open_copy(source_dsn: str, target_dsn: str, *, config_path=None, app_dir=None) -> tuple[Memoric, Memoric]:
    """The two ends of a copy: a source at head (nothing is written to it), a target built or at head.

    `app_dir` is the application's migration chain, for both ends (default: as `Memoric` resolves it).
    """
    from memoric.core import Memoric

    if source_dsn == target_dsn:
        raise ValidationError("the source and the target are the same database")
    if not database_exists(source_dsn):
        raise ConfigError(f"the source database {mask_url(source_dsn)} does not exist")
    source = Memoric(source_dsn, config_path, app_dir=app_dir)
    pending = source.migrations.pending()
    if pending and source.migrations.current() is None:
        raise MigrationError(f"the source {mask_url(source_dsn)} holds no memoric schema")
    if pending:
        raise MigrationError(
            f"the source {mask_url(source_dsn)} is behind head ({', '.join(pending)} pending): "
            "run `memoric --dsn SOURCE migrate upgrade` first"
        )
    target = Memoric(target_dsn, config_path, app_dir=app_dir)
    target.ensure_schema()
    return source, target


def copy_size(memoric: Memoric) -> int:
    """How many rows (memories and clusters) a copy of this database moves: the progress total."""
    stats = memoric.db.memory_stats()
    return stats["total"] + stats["clusters"]


def copy_memoric(
    source: Memoric, target: Memoric, *, batch_size: int = BATCH_SIZE, progress: Progress | None = None
) -> dict[str, int]:
    """`copy_database` between two Memorics opened with `open_copy`."""
    return copy_database(source.db, target.db, batch_size=batch_size, progress=progress)


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
        with store.atomic():
            _refuse_conflicts(store, rows["memory"])
            inserted_memories = store.insert_memories(rows["memory"], skip_existing=True)
            inserted_clusters = store.insert_clusters(rows["cluster"]) if rows["cluster"] else 0
        counts["memories"] += inserted_memories
        counts["clusters"] += inserted_clusters
        counts["skipped"] += len(batch) - inserted_memories - inserted_clusters
        if progress is not None:
            progress(len(batch))
    return counts


def _refuse_conflicts(store: MemoryStore, memories: list[dict]) -> None:
    """ValidationError when an id of `memories` is taken in `store` by a different memory."""
    ids = {row["id"] for row in memories if type(row.get("id")) is int}
    if not ids:
        return
    low, high = min(ids), max(ids)
    existing = store.memories_after(low - 1, limit=high - low + 1)
    present = {memory["id"]: memory for memory in existing if memory["id"] in ids}
    for row in memories:
        current = present.get(row.get("id"))
        differing = [key for key in current or () if key != "id" and key in row and row[key] != current[key]]
        if differing:
            raise ValidationError(
                f"memory id {row['id']} is already in the target with other data (differing: "
                f"{', '.join(differing)}): the target is not a copy of this source; nothing of this "
                "batch was written (import into an empty database)"
            )


def _records(lines: Iterable[str | bytes]) -> Iterator[tuple[int, dict]]:
    """(line number, parsed object) for every non-blank line; ValidationError names a bad line."""
    for number, line in _numbered(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"line {number} is not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise ValidationError(f"line {number} is not a JSON object")
        yield number, record


def _numbered(lines: Iterable[str | bytes]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line (str, or bytes decoded as UTF-8); bad UTF-8 is a ValidationError."""
    number = 0
    iterator = iter(lines)
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"the export is not UTF-8 text after line {number} ({exc.reason})"
            ) from None
        number += 1
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValidationError(f"line {number} is not UTF-8 text ({exc.reason})") from None
        yield number, line


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
