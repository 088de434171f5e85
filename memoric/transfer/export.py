"""Export: the header, every memory and every cluster, read page by page in one snapshot, then the
end line counting them."""

from __future__ import annotations

import datetime as dt
from typing import TextIO

from memoric import arguments, validation
from memoric.core import Memoric
from memoric.db import transfer_queries
from memoric.db.jsoncodec import controls_escaped
from memoric.db.models import UTC, dump_json
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.transfer.leftovers import refuse_leaving_behind
from memoric.transfer.lines import FORMAT, FORMAT_VERSION, MAX_LINE_BYTES
from memoric.transfer.records import END, ID_COLUMNS, encode
from memoric.transfer.scratch import MemoryOwners, Scratch


def export_jsonl(
    store: MemoryStore,
    out: TextIO,
    *,
    user_id: str | None = None,
    schema_version: str | None = None,
    memoric_only: bool = False,
) -> dict[str, int]:
    """Write the header, every memory and every cluster (of one user, or all), and the end line
    counting them, to `out`.

    All rows come from one snapshot of the database, read a page at a time, twice: every row is
    checked as `memoric import` will check it before the first line is written, so an export
    that fails has written nothing, even to a pipe, and one that succeeds can be imported. A
    database holding the application's own data, which an export cannot carry, is refused
    unless `memoric_only` (`leftovers`).
    """
    arguments.instance("store", store, MemoryStore)
    arguments.writable("out", out)
    validation.optional_text("schema_version", schema_version)
    if user_id is not None:
        validation.user_id(user_id)
    counts = {"memories": 0, "clusters": 0}
    with transfer_queries.snapshot(store):
        refuse_leaving_behind(store, "an export", memoric_only, user_id)
        check_restorable(store, user_id)
        header = {
            "type": "header",
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": schema_version,
            "exported_at": dt.datetime.now(UTC).isoformat(),
            "source_dialect": store.dialect.name,
            "user_id": user_id,
        }
        out.write(controls_escaped(dump_json(header)) + "\n")
        for memory in transfer_queries.iter_memories(store, user_id=user_id):
            out.write(_line("memory", memory))
            counts["memories"] += 1
        for cluster in transfer_queries.iter_clusters(store, user_id=user_id):
            out.write(_line("cluster", cluster))
            counts["clusters"] += 1
        out.write(controls_escaped(dump_json({"type": END, **counts})) + "\n")
    return counts


def check_restorable(store: MemoryStore, user_id: str | None) -> None:
    """ValidationError for the first row (of one user, or all) `memoric import` would refuse: a
    row written outside memoric, or a cluster listing a memory that is not its user's here."""
    scratch = Scratch()
    try:
        owners = MemoryOwners(scratch)
        for memory in transfer_queries.iter_memories(store, user_id=user_id):
            restorable(store, "memory", memory)
            owners.add(memory["id"], memory["user_id"])
        for cluster in transfer_queries.iter_clusters(store, user_id=user_id):
            restorable(store, "cluster", cluster)
            _within_line_length(cluster)
            for memory_id in cluster["memory_ids"]:
                if owners.get(memory_id) != cluster["user_id"]:
                    raise unrestorable(
                        "cluster",
                        cluster["cluster_id"],
                        f"it lists memory {memory_id}, which is not a memory of its user_id "
                        f"{cluster['user_id']!r} here",
                        remedy="rebuild that user's clusters (`rebuild_clusters`, or `memoric "
                        "clusters --rebuild`), or correct or delete that row",
                    )
    finally:
        scratch.close()


def _within_line_length(cluster: dict) -> None:
    """ValidationError for a cluster whose line an import would refuse as too long (only one of
    millions of memories can be; a memory's line always fits)."""
    most = 20 * len(cluster["memory_ids"]) + 6 * len(cluster["summary"] or "") + 4096  # every id 19 digits
    if most > MAX_LINE_BYTES and len(_line("cluster", cluster).encode()) > MAX_LINE_BYTES:
        raise unrestorable(
            "cluster",
            cluster["cluster_id"],
            f"its line ({len(cluster['memory_ids'])} memory ids and its summary) is longer than an "
            f"import reads ({MAX_LINE_BYTES >> 20} MiB)",
            remedy="rebuild that user's clusters with a smaller topic, or delete that cluster",
        )


def _line(kind: str, row: dict) -> str:
    """The export's line of one memory or cluster."""
    return controls_escaped(dump_json({"type": kind, **encode(row)})) + "\n"


def restorable(store: MemoryStore, kind: str, row: dict) -> None:
    """ValidationError unless `memoric import` would take `row` as it is stored."""
    if kind == "memory" and row["tier"] not in store.tiers:
        raise unrestorable(
            kind,
            row["id"],
            f"its tier {row['tier']!r} is not one of the tiers configured here {list(store.tiers)}",
            remedy="pass the configuration the database is written with (`--config`, `config=`)",
        )
    try:
        transfer_queries.whole_row(store, kind, row)
    except ValidationError as exc:
        raise unrestorable(kind, row[ID_COLUMNS[kind]], str(exc)) from None


def unrestorable(
    kind: str, row_id, problem: str, remedy: str = "correct or delete that row"
) -> ValidationError:
    return ValidationError(
        f"{kind} {row_id}: {problem}; an import would refuse it, so nothing was exported: {remedy}"
    )


def export_memoric(
    memoric: Memoric, out: TextIO, *, user_id: str | None = None, memoric_only: bool = False
) -> dict[str, int]:
    """`export_jsonl` of a Memoric's database (schema checked first, its version in the header)."""
    arguments.instance("memoric", memoric, Memoric)
    arguments.writable("out", out)
    memoric.ensure_schema()
    version = memoric.migrations.current()
    return export_jsonl(memoric.db, out, user_id=user_id, schema_version=version, memoric_only=memoric_only)
