"""Export: the header, then every memory and every cluster, read page by page in one snapshot."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, TextIO

from memoric import validation
from memoric.db import transfer_queries
from memoric.db.models import UTC, dump_json
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.transfer.records import FORMAT, FORMAT_VERSION, ID_COLUMNS, encode

if TYPE_CHECKING:
    from memoric.core import Memoric


def export_jsonl(
    store: MemoryStore, out: TextIO, *, user_id: str | None = None, schema_version: str | None = None
) -> dict[str, int]:
    """Write the header, every memory and every cluster (of one user, or all) to `out`.

    All rows come from one snapshot of the database, read a page at a time.
    """
    if user_id is not None:
        validation.user_id(user_id)
    counts = {"memories": 0, "clusters": 0}
    with transfer_queries.snapshot(store):
        header = {
            "type": "header",
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": schema_version,
            "exported_at": dt.datetime.now(UTC).isoformat(),
            "source_dialect": store.dialect.name,
            "user_id": user_id,
        }
        out.write(dump_json(header) + "\n")
        for memory in transfer_queries.iter_memories(store, user_id=user_id):
            out.write(dump_json({"type": "memory", **encode(restorable(store, "memory", memory))}) + "\n")
            counts["memories"] += 1
        for cluster in transfer_queries.iter_clusters(store, user_id=user_id):
            out.write(dump_json({"type": "cluster", **encode(restorable(store, "cluster", cluster))}) + "\n")
            counts["clusters"] += 1
    return counts


def restorable(store: MemoryStore, kind: str, row: dict) -> dict:
    """`row`, once checked as `memoric import` will check it: a row written outside memoric that
    an import would refuse stops the export (a backup that cannot be restored is none)."""
    try:
        transfer_queries.whole_row(store, kind, row)
    except ValidationError as exc:
        raise ValidationError(
            f"{kind} {row[ID_COLUMNS[kind]]}: {exc}; an import would refuse it, so nothing was "
            "exported: correct or delete that row"
        ) from None
    return row


def export_memoric(memoric: Memoric, out: TextIO, *, user_id: str | None = None) -> dict[str, int]:
    """`export_jsonl` of a Memoric's database (schema checked first, its version in the header)."""
    memoric.ensure_schema()
    return export_jsonl(memoric.db, out, user_id=user_id, schema_version=memoric.migrations.current())
