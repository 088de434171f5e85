"""The check pass of an import or a copy: every record validated, a source that contradicts itself
refused, and the plan the writing passes follow."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from memoric.db import cluster_members, transfer_queries
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.transfer.records import (
    COUNT_KEYS,
    ID_COLUMNS,
    DatabaseRows,
    ExportLines,
    Record,
)
from memoric.transfer.scratch import ClusterKeys, KeptClusters, MemoryOwners, Scratch, SeenRows


@dataclass
class ImportPlan:
    """What the check of an export (or of a copy's source) found, for the passes that write."""

    source: ExportLines | DatabaseRows
    new_ids: bool
    # False: the source's clusters are checked like any record but not written, nor compared
    # with the target's (a restore into a database whose clusters were rebuilt since).
    write_clusters: bool = True
    # True: a memory the target holds under its id for the same user is kept as it is there
    # (a resumed import whose rows changed since, a backup restored after edits).
    keep_existing: bool = False
    # with keep_existing: the threads of memories kept as the target has them though the file's
    # differ, whose summaries (the target's, or the file's written now) are released after the import
    changed_threads: set = field(default_factory=set)
    records: int = 0  # records in the source (identical duplicates included)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ID_COLUMNS, 0))
    highest: dict[str, Record] = field(default_factory=dict)
    lowest_memory_id: int | None = None
    scratch: Scratch = field(default_factory=Scratch)  # on disk: what follows, whatever the rows
    # a file's rows by kind: the line and digest of each id, to find lines that contradict each
    # other and a file changed between the passes (None for a database source)
    seen: dict[str, SeenRows] | None = None
    ranks: dict = field(default_factory=dict)  # with new_ids: each kind's id -> its rank in the file
    owners: MemoryOwners = field(init=False)  # the user_id of each of the source's memories
    kept_clusters: KeptClusters = field(init=False)  # for the passes that check them again

    def __post_init__(self) -> None:
        self.owners = MemoryOwners(self.scratch)
        self.kept_clusters = KeptClusters(self.scratch)
        if self.source.is_file:
            self.seen = {kind: SeenRows(self.scratch, kind) for kind in ID_COLUMNS}

    def clusters(self, store: MemoryStore) -> Iterator[Record]:
        """The source's clusters in its order, as the check validated them."""
        for line, kept in self.kept_clusters:
            yield Record.from_kept(store, "cluster", line, kept)

    def writes(self, kind: str) -> bool:
        """Whether records of `kind` are written (memories always; clusters unless left out)."""
        return kind == "memory" or self.write_clusters

    def confirm(self, record: Record) -> None:
        """ValidationError unless `record` is the row the check saw under its id."""
        if self.seen is None:
            return
        earlier = self.seen[record.kind].get(record.id)
        if earlier is None or earlier[1] != record.digest:
            raise ValidationError(
                f"{record.where} changed after the file was checked: import it again once nothing "
                "writes to it"
            )

    def final_row(self, record: Record, tops: dict[str, int]) -> dict:
        """The row as written: with `new_ids`, its id and memory_ids moved into the reserved blocks."""
        if not self.new_ids:
            return record.row
        row = {**record.row, ID_COLUMNS[record.kind]: self._new_id(record.kind, record.id, tops)}
        if record.kind == "cluster":
            row["memory_ids"] = [self._new_id("memory", old, tops) for old in row["memory_ids"]]
        return row

    def _new_id(self, kind: str, old: int, tops: dict[str, int]) -> int:
        """`old`'s place among the file's ids of `kind`, counted from the top of the reserved block."""
        return tops[kind] + self.ranks[kind](old)


def survey(
    store: MemoryStore,
    source: ExportLines | DatabaseRows,
    *,
    new_ids: bool,
    clusters: bool = True,
    keep_existing: bool = False,
) -> ImportPlan:
    """Pass 1: every record validated; contradictions inside the source refused; the plan (which
    writes the clusters too unless `clusters` is false or `keep_existing` true)."""
    if new_ids and keep_existing:
        raise ValidationError("new ids and keeping existing memories exclude each other: no id is existing")
    plan = ImportPlan(source, new_ids, clusters and not keep_existing, keep_existing)
    keys = ClusterKeys(plan.scratch)
    for record in source.records(store):
        record.row  # noqa: B018 (validated now, on this pass)
        plan.records += 1
        if plan.seen is None or _first_sight(plan.seen[record.kind], record):
            plan.counts[record.kind] += 1
            if record.kind == "memory":
                plan.owners.add(record.id, record.row["user_id"])
        if record.kind == "cluster":
            other_id, other_where = keys.claim(record.key, record.id, record.where)
            if other_id != record.id:
                raise ValidationError(
                    f"{other_where} and {record.where} are two clusters (ids {other_id} and {record.id}) "
                    f"for the same user_id, topic and category {list(record.key)}: the export "
                    "contradicts itself; nothing was written"
                )
        highest = plan.highest.get(record.kind)
        if highest is None or record.id > highest.id:
            plan.highest[record.kind] = record
        if record.kind == "cluster":
            plan.kept_clusters.add(record.line, record.kept())
        elif plan.lowest_memory_id is None or record.id < plan.lowest_memory_id:
            plan.lowest_memory_id = record.id
    _check_distinct(plan, source.ended)
    if new_ids:
        if plan.seen is None:
            raise ValidationError("new ids are given only when importing an export")
        plan.ranks = {kind: seen.ranks() for kind, seen in plan.seen.items()}
    for cluster in plan.clusters(store):
        _check_members(plan, cluster)
    return plan


def _check_distinct(plan: ImportPlan, ended: dict[str, int] | None) -> None:
    """ValidationError unless an export's end line counts its distinct records: every line of a
    whole export is a record of its own, so a repeated line stands in place of a lost one."""
    if ended is None or plan.seen is None:
        return
    distinct = {COUNT_KEYS[kind]: plan.counts[kind] for kind in COUNT_KEYS}
    if distinct != ended:
        raise ValidationError(
            f"the end line counts {ended['memories']} memories and {ended['clusters']} clusters, the "
            f"file holds {distinct['memories']} and {distinct['clusters']} different ones: a line is "
            "repeated in place of another; nothing was written"
        )


def _check_members(plan: ImportPlan, cluster: Record) -> None:
    """ValidationError for a memory the cluster lists that the source holds for another user_id,
    or (with new ids, which only the source's memories get) that the source lacks."""
    user_id = cluster.row["user_id"]
    for memory_id in cluster.row["memory_ids"]:
        owner = plan.owners.get(memory_id)
        if owner is None and plan.new_ids:
            raise ValidationError(
                f"{cluster.where}: cluster {cluster.id} lists memory {memory_id}, which is not in this "
                "export, so it cannot be given a new id; nothing was written"
            )
        if owner is not None and owner != user_id:
            raise ValidationError(
                f"{cluster.where}: cluster {cluster.id} of user_id {user_id!r} lists memory {memory_id}, "
                f"which {cluster.source} holds for another user_id; nothing was written"
            )


def refuse_strangers(store: MemoryStore | None, plan: ImportPlan, clusters: list[Record]) -> None:
    """ValidationError for a memory a cluster lists that is neither in the source nor, in the
    target (None: one without memoric's schema, holding nothing), a memory of the cluster's user_id."""
    outside = {i for cluster in clusters for i in cluster.row["memory_ids"] if plan.owners.get(i) is None}
    found = transfer_queries.stored_rows(store, "memory", outside) if store is not None and outside else {}
    stored = {i: row["user_id"] for i, row in found.items()}
    for cluster in clusters:
        user_id = cluster.row["user_id"]
        for memory_id in cluster.row["memory_ids"]:
            if memory_id in outside and stored.get(memory_id) != user_id:
                raise ValidationError(
                    f"{cluster.where}: cluster {cluster.id} of user_id {user_id!r} lists memory "
                    f"{memory_id}, which is neither in {cluster.source} nor a memory of that user_id in "
                    "the target; nothing was written"
                )


def _first_sight(seen: SeenRows, record: Record) -> bool:
    """Remember `record` under its id; False for the same row seen before; ValidationError for another."""
    earlier = seen.remember(record.id, record.line, record.digest)
    if earlier is None or earlier == (record.line, record.digest):
        return True
    earlier_line, earlier_digest = earlier
    if earlier_digest == record.digest:
        return False
    raise ValidationError(
        f"line {earlier_line} and line {record.line} are two different "
        f"{COUNT_KEYS[record.kind]} with {ID_COLUMNS[record.kind]} {record.id}: the export "
        "contradicts itself; nothing was written"
    )


def hold_listed_memories(
    store: MemoryStore, records: list[Record], rows: dict[int, dict], outcome: str
) -> None:
    """Hold the memories a batch's clusters list until the batch commits (a delete waits);
    ValidationError for a cluster listing one another writer deleted since the file was checked."""
    by_user: dict[str, list[Record]] = {}
    for record in records:
        by_user.setdefault(rows[record.id]["user_id"], []).append(record)
    for user_id, theirs in by_user.items():
        listed = (memory_id for record in theirs for memory_id in rows[record.id]["memory_ids"])
        found = cluster_members.held(store, user_id, listed)
        for record in theirs:
            row = rows[record.id]
            if gone := sorted(set(row["memory_ids"]) - found):
                raise ValidationError(
                    f"{record.where}: cluster {row['cluster_id']} lists memory {gone[0]}, which another "
                    f"writer deleted meanwhile; {outcome} (run the import again)"
                )
