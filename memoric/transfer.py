"""Export, import and copy: whole databases as JSON Lines, between any two dialects, beside live agents.

An export is one header line (format, format version, schema version), then one line per
memory, then one per cluster, all read page by page inside one snapshot of the database, so it
shows a single point in time however long it takes and whatever agents write meanwhile.

An import (and a copy, whose source is read inside one snapshot) goes over its rows three times:

1. check: every row is validated as the store would validate it; a file naming one id, or one
   cluster (user_id, topic, category), twice with different data is refused, naming both lines
   (a row repeated with the same JSON, key order aside, is read once); so is a cluster listing a
   memory the file holds for another user_id. Nothing is written.
2. reserve and compare: the target's id counters are raised past the file's highest ids under
   a short lock, never lowered, so a memory or cluster an agent saves meanwhile gets an id above
   them; then every row whose id (or cluster key) is already in the target is compared with it,
   field by field and type-exactly (true is not 1, 1 is not 1.0; a field the line leaves out
   counts as its default, a timestamp left out as whatever the target holds). Any difference
   refuses the import, naming the line, with no row written (the id counters may have moved:
   ids are never given twice, so a gap is harmless); so does a cluster listing a memory that is
   not in the file and not the same user_id's in the target.
3. write: batches, one transaction each; a row whose id is taken meanwhile is compared again and
   a difference rolls its batch back and stops the import, naming it. Nothing is skipped unseen.

Importing the same file twice changes nothing, and an import that was interrupted completes when
run again. With `new_ids` every memory and cluster gets a fresh id instead, from a block
reserved the same way, and each cluster's memory_ids follow its memories; such an import adds
the export again each time it runs, so one that stops takes back what it wrote.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import functools
import hashlib
import json
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, TextIO

from memoric import validation
from memoric.db import recall_queries, transfer_queries
from memoric.db.connection import database_exists, first_line
from memoric.db.identity import same_database
from memoric.db.models import UTC, dump_json, to_utc
from memoric.db.store import MemoryStore
from memoric.db.urls import mask_url
from memoric.errors import ConfigError, MemoricError, MigrationError, ValidationError

if TYPE_CHECKING:
    from memoric.core import Memoric

FORMAT = "memoric-export"
FORMAT_VERSION = 1
BATCH_SIZE = 1000
TIMESTAMPS = ("created_at", "updated_at", "last_built_at")
ID_COLUMNS = {"memory": "id", "cluster": "cluster_id"}
COUNT_KEYS = {"memory": "memories", "cluster": "clusters"}
DIGEST_BITS = 64

Progress = Callable[[int], None]


# --- export ------------------------------------------------------------------------------


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
            out.write(dump_json({"type": "memory", **_encode(memory)}) + "\n")
            counts["memories"] += 1
        for cluster in transfer_queries.iter_clusters(store, user_id=user_id):
            out.write(dump_json({"type": "cluster", **_encode(cluster)}) + "\n")
            counts["clusters"] += 1
    return counts


# --- import and copy ---------------------------------------------------------------------


class Record:
    """One memory or cluster of an export (or of a copy's source), validated when first needed."""

    def __init__(self, store: MemoryStore, kind: str, fields: dict, line: int | None) -> None:
        self.kind = kind  # "memory" or "cluster"
        self.fields = fields  # as the export (or the source) gives it
        self.line = line  # its line in an export; None when copied from a database
        self._store = store
        column = ID_COLUMNS[kind]
        self.id = fields.get(column)
        try:
            validation.stored_id(self.id, column)
        except ValidationError as exc:
            raise ValidationError(f"{self.where}: {exc}") from None

    @property
    def where(self) -> str:
        """How messages name the record: its line, or its id in the source database."""
        return f"line {self.line}" if self.line is not None else f"source {self.kind} {self.id}"

    @property
    def source(self) -> str:
        """How messages name where the record comes from."""
        return "this export" if self.line is not None else "the source database"

    @functools.cached_property
    def row(self) -> dict:
        """The row as the store writes it: validated, defaults filled in, timestamps in UTC."""
        try:
            row = transfer_queries.whole_row(self._store, self.kind, _decode(self.fields))
        except ValidationError as exc:
            raise ValidationError(f"{self.where}: {exc}") from None
        for key in TIMESTAMPS:
            if key in row:
                row[key] = to_utc(row[key])
        return row

    @functools.cached_property
    def stated(self) -> frozenset[str]:
        """The timestamps the record gives; the others are stamped with the time of writing."""
        stated = {key for key in TIMESTAMPS if self.fields.get(key) is not None}
        if self.kind == "memory" and "created_at" in stated:
            stated.add("updated_at")  # left out, it is created_at
        return frozenset(stated)

    @functools.cached_property
    def digest(self) -> int:
        """A 64-bit digest of what the record says: its JSON with keys sorted (type-exact)."""
        text = json.dumps(self.fields, sort_keys=True, ensure_ascii=False)
        return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest())

    @property
    def key(self) -> tuple[str, str, str]:
        """A cluster's (user_id, topic, category), unique in a database."""
        return self.row["user_id"], self.row["topic"], self.row["category"]


@dataclass
class ImportPlan:
    """What the check of an export (or of a copy's source) found, for the passes that write."""

    source: _ExportLines | _DatabaseRows
    new_ids: bool
    records: int = 0  # records in the source (identical duplicates included)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ID_COLUMNS, 0))
    highest: dict[str, Record] = field(default_factory=dict)
    lowest_memory_id: int | None = None
    clusters: list[Record] = field(default_factory=list)  # few: kept for the comparison pass
    # a file's rows by kind: id -> line << DIGEST_BITS | digest of the row, to find lines that
    # contradict each other and a file changed between the passes (None for a database source)
    seen: dict[str, dict[int, int]] | None = None
    old_ids: dict[str, array] = field(default_factory=dict)  # with new_ids: each kind's ids, sorted
    owners: _MemoryOwners = field(default_factory=lambda: _MemoryOwners())  # the source's memories

    def confirm(self, record: Record) -> None:
        """ValidationError unless `record` is the row the check saw under its id."""
        if self.seen is None:
            return
        mark = self.seen[record.kind].get(record.id)
        if mark is None or _digest_of(mark) != record.digest:
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
        return tops[kind] + bisect.bisect_left(self.old_ids[kind], old) + 1


def import_jsonl(
    store: MemoryStore,
    lines: Iterable[str | bytes],
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    new_ids: bool = False,
) -> dict[str, int]:
    """Load an export into `store`: checked whole first, then written; counts inserted and skipped.

    `lines` is read more than once: a seekable file is rewound, a list reread, anything else
    spooled to a temporary file first.
    """
    with _rereadable(lines) as rereadable:
        plan = check_jsonl(store, rereadable, new_ids=new_ids)
        return import_checked(store, plan, batch_size=batch_size, progress=progress)


def check_jsonl(store: MemoryStore, lines: Iterable[str | bytes], *, new_ids: bool = False) -> ImportPlan:
    """Check a whole export as `import_jsonl` would, writing nothing; the plan that imports it.

    ValidationError names the first bad line (both lines of a contradiction). Rows are compared
    with the target only when it is imported (`import_checked`), after its ids are reserved.
    """
    return _survey(store, _ExportLines(lines), new_ids=new_ids)


def import_checked(
    store: MemoryStore, plan: ImportPlan, *, batch_size: int = BATCH_SIZE, progress: Progress | None = None
) -> dict[str, int]:
    """Write what `check_jsonl` checked: reserve the ids, compare with the target, write in batches."""
    validation.count("batch_size", batch_size)
    claims = {
        kind: (0, plan.counts[kind]) if plan.new_ids else (plan.highest[kind].id, 0) for kind in plan.highest
    }
    tops, written = transfer_queries.reserve_ids(
        store,
        claims,
        check=lambda: _compare_with_target(store, plan),
        holding_rows=lambda tops: {kind: plan.final_row(plan.highest[kind], tops) for kind in plan.highest},
    )
    counts = {COUNT_KEYS[kind]: written.get(kind, 0) for kind in ID_COLUMNS}
    try:
        for batch in _batches(plan.source.records(store), max(batch_size, 1)):
            for kind, records in _by_kind(batch).items():
                counts[COUNT_KEYS[kind]] += _write(store, plan, kind, records, tops)
            if progress is not None:
                progress(len(batch))
    except BaseException as exc:
        if plan.new_ids:
            _take_back(store, plan, tops, exc)
        raise
    counts["skipped"] = plan.records - counts["memories"] - counts["clusters"]
    return counts


def _take_back(store: MemoryStore, plan: ImportPlan, tops: dict[str, int], stopped: BaseException) -> None:
    """Delete what an import with new ids wrote before it stopped: the rows of its reserved
    blocks, which no one else can hold (a rerun would otherwise add them twice)."""
    blocks = {kind: (tops[kind] + 1, tops[kind] + plan.counts[kind]) for kind in plan.highest}
    try:
        for kind, (low, high) in blocks.items():
            transfer_queries.delete_id_range(store, kind, low, high)
    except MemoricError as exc:
        held = ", ".join(f"{COUNT_KEYS[kind]} {low}-{high}" for kind, (low, high) in blocks.items())
        raise MemoricError(
            f"the import stopped ({first_line(stopped)}) and what it wrote could not be taken back "
            f"({exc}): delete the ids it holds ({held}) before importing again"
        ) from stopped


def copy_database(
    source: MemoryStore,
    target: MemoryStore,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Copy every memory and cluster of `source` into `target` (any dialects), ids kept.

    The source is read inside one snapshot; the target is written like an import.
    """
    with transfer_queries.snapshot(source):
        plan = _survey(target, _DatabaseRows(source, max(batch_size, 1)), new_ids=False)
        return import_checked(target, plan, batch_size=batch_size, progress=progress)


# --- through the facade ------------------------------------------------------------------


def export_memoric(memoric: Memoric, out: TextIO, *, user_id: str | None = None) -> dict[str, int]:
    """`export_jsonl` of a Memoric's database (schema checked first, its version in the header)."""
    memoric.ensure_schema()
    return export_jsonl(memoric.db, out, user_id=user_id, schema_version=memoric.migrations.current())


def open_copy(source_dsn: str, target_dsn: str, *, config_path=None, app_dir=None) -> tuple[Memoric, Memoric]:
    """The two ends of a copy: a source at head (nothing is written to it), a target built or at head.

    A target that is the source under another URL (another path to the file, another name of
    the server) is refused before it is opened. `app_dir` is the application's migration chain,
    for both ends (default: as `Memoric` resolves it).
    """
    from memoric.core import Memoric

    if not database_exists(source_dsn):
        raise ConfigError(f"the source database {mask_url(source_dsn)} does not exist")
    source = Memoric(source_dsn, config_path, app_dir=app_dir)
    if same_database(source.store.database, target_dsn):
        raise ValidationError("the source and the target are the same database")
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
    stats = recall_queries.memory_stats(memoric.db)
    return stats["total"] + stats["clusters"]


def copy_memoric(
    source: Memoric, target: Memoric, *, batch_size: int = BATCH_SIZE, progress: Progress | None = None
) -> dict[str, int]:
    """`copy_database` between two Memorics opened with `open_copy`."""
    return copy_database(source.db, target.db, batch_size=batch_size, progress=progress)


# --- the three passes --------------------------------------------------------------------


def _survey(store: MemoryStore, source: _ExportLines | _DatabaseRows, *, new_ids: bool) -> ImportPlan:
    """Pass 1: every record validated; contradictions inside the source refused; the plan."""
    plan = ImportPlan(source, new_ids, seen={kind: {} for kind in ID_COLUMNS} if source.is_file else None)
    keys: dict[tuple[str, str, str], tuple[int, str]] = {}  # cluster key -> (cluster id, where)
    for record in source.records(store):
        record.row  # noqa: B018 (validated now, on this pass)
        plan.records += 1
        if plan.seen is None or _first_sight(plan.seen[record.kind], record):
            plan.counts[record.kind] += 1
            if record.kind == "memory":
                plan.owners.add(record.id, record.row["user_id"])
        if record.kind == "cluster":
            other_id, other_where = keys.setdefault(record.key, (record.id, record.where))
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
            plan.clusters.append(record)
        elif plan.lowest_memory_id is None or record.id < plan.lowest_memory_id:
            plan.lowest_memory_id = record.id
    if new_ids:
        if plan.seen is None:
            raise ValidationError("new ids are given only when importing an export")
        plan.old_ids = {kind: array("q", sorted(ids)) for kind, ids in plan.seen.items()}
    for cluster in plan.clusters:
        _check_members(plan, cluster)
    return plan


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


def _refuse_strangers(store: MemoryStore, plan: ImportPlan, clusters: list[Record]) -> None:
    """ValidationError for a memory a cluster lists that is neither in the source nor, in the
    target, a memory of the cluster's user_id."""
    outside = {i for cluster in clusters for i in cluster.row["memory_ids"] if plan.owners.get(i) is None}
    stored = {i: row["user_id"] for i, row in transfer_queries.stored_rows(store, "memory", outside).items()}
    for cluster in clusters:
        user_id = cluster.row["user_id"]
        for memory_id in cluster.row["memory_ids"]:
            if memory_id in outside and stored.get(memory_id) != user_id:
                raise ValidationError(
                    f"{cluster.where}: cluster {cluster.id} of user_id {user_id!r} lists memory "
                    f"{memory_id}, which is neither in {cluster.source} nor a memory of that user_id in "
                    "the target; nothing was written"
                )


def _first_sight(seen: dict[int, int], record: Record) -> bool:
    """Remember `record` under its id; False for the same row seen before; ValidationError for another."""
    mark = record.line << DIGEST_BITS | record.digest
    earlier = seen.setdefault(record.id, mark)
    if earlier == mark:
        return True
    if _digest_of(earlier) == _digest_of(mark):
        return False
    raise ValidationError(
        f"line {earlier >> DIGEST_BITS} and line {record.line} are two different "
        f"{COUNT_KEYS[record.kind]} with {ID_COLUMNS[record.kind]} {record.id}: the export "
        "contradicts itself; nothing was written"
    )


def _compare_with_target(store: MemoryStore, plan: ImportPlan) -> None:
    """Pass 2 (ids reserved): ValidationError for any row the target holds with other data.

    The memories are read again only when the target holds any id in their range (an import into
    a database without them, the common case, costs one query); the clusters were kept.
    """
    memories = plan.highest.get("memory")
    if (
        memories is not None
        and not plan.new_ids
        and transfer_queries.has_ids(store, "memory", plan.lowest_memory_id, memories.id)
    ):
        for batch in _batches(plan.source.records(store), BATCH_SIZE):
            records = [record for record in batch if record.kind == "memory"]
            for record in records:
                plan.confirm(record)
            _refuse_differences(store, "memory", records)
    for batch in _batches(plan.clusters, BATCH_SIZE):
        if not plan.new_ids:
            _refuse_differences(store, "cluster", batch)
            _refuse_strangers(store, plan, batch)
        _refuse_taken_keys(store, plan, batch)


def _refuse_differences(store: MemoryStore, kind: str, records: list[Record]) -> None:
    """ValidationError for the first of `records` the target holds under its id with other data."""
    stored = transfer_queries.stored_rows(store, kind, [record.id for record in records])
    for record in records:
        if record.id in stored:
            _refuse_difference(record, record.row, stored[record.id], "nothing was written")


def _refuse_taken_keys(store: MemoryStore, plan: ImportPlan, records: list[Record]) -> None:
    """ValidationError for a cluster whose (user_id, topic, category) is another cluster's in the target."""
    taken = transfer_queries.cluster_ids_by_key(store, (record.key for record in records))
    for record in records:
        holder = taken.get(record.key)
        if holder is not None and (plan.new_ids or holder != record.id):
            raise ValidationError(
                f"{record.where}: cluster {record.id} is for user_id, topic and category "
                f"{list(record.key)}, which the target holds as cluster {holder}: nothing was written "
                "(delete that cluster or run `memoric clusters --rebuild` after importing without it)"
            )


def _write(store: MemoryStore, plan: ImportPlan, kind: str, records: list[Record], tops: dict) -> int:
    """Pass 3: one batch of one kind in one transaction; rows skipped must equal what is stored."""
    rows: dict[int, dict] = {}
    for record in records:
        plan.confirm(record)
        rows.setdefault(record.id, plan.final_row(record, tops))
    with store.atomic():
        inserted = transfer_queries.insert_whole_rows(store, kind, list(rows.values()))
        if inserted < len(rows):
            column = ID_COLUMNS[kind]
            stored = transfer_queries.stored_rows(store, kind, [row[column] for row in rows.values()])
            for record in records:
                row = rows[record.id]
                written = stored.get(row[column])
                if written is None:
                    taken = "its user_id, topic and category are" if kind == "cluster" else "its id is"
                    raise ValidationError(
                        f"{record.where}: {kind} {row[column]} could not be written: {taken} "
                        "another's in the target now; this batch was not written, the ones before it were"
                    )
                _refuse_difference(
                    record, row, written, "this batch was not written, the ones before it were"
                )
    return inserted


def _refuse_difference(record: Record, row: dict, stored: dict, outcome: str) -> None:
    """ValidationError naming the fields where `row` (of `record`) and the stored row differ, if any."""
    differing = [
        key
        for key, value in row.items()
        if (key in record.stated or key not in TIMESTAMPS) and not same_json(value, stored.get(key))
    ]
    if differing:
        hint = " (to add the export beside what is there, import it with new ids)" if record.line else ""
        raise ValidationError(
            f"{record.where}: {record.kind} id {row[ID_COLUMNS[record.kind]]} is already in the target "
            f"with other data (differing: {', '.join(differing)}): the target is not a copy of this "
            f"source; {outcome}{hint}"
        )


def same_json(a, b) -> bool:
    """Equal values of the same types all the way down: true is not 1, 1 is not 1.0, {} is not []."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same_json(value, b[key]) for key, value in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(map(same_json, a, b))
    return a == b


# --- sources -----------------------------------------------------------------------------


@contextlib.contextmanager
def _rereadable(lines: Iterable[str | bytes]):
    """`lines` if it can be read again (a list, a tuple, a seekable file), else a spooled copy."""
    if _is_rereadable(lines):
        yield lines
        return
    with tempfile.TemporaryFile() as spool:
        for line in lines:
            if isinstance(line, str):
                line = line.encode("utf-8", "surrogatepass")
            spool.write(line if line.endswith(b"\n") else line + b"\n")
        spool.seek(0)
        yield spool


def _is_rereadable(lines: Iterable) -> bool:
    """Whether `lines` can be read again from where it stands: a list, a tuple, a seekable file."""
    return isinstance(lines, (list, tuple)) or _is_seekable(lines)


def _is_seekable(lines: Iterable) -> bool:
    """Whether `lines` is a file that can be rewound (stdin on a pipe cannot)."""
    seekable = getattr(lines, "seekable", None)
    return seekable is not None and seekable()


class _ExportLines:
    """The lines of an export, read once per pass: a seekable file is rewound, a list reread."""

    is_file = True

    def __init__(self, lines: Iterable[str | bytes]) -> None:
        self._lines = lines
        self._start = lines.tell() if _is_seekable(lines) else None
        self._passes = 0

    def records(self, store: MemoryStore) -> Iterator[Record]:
        """The export's records, each validated against `store`'s rules (header checked first)."""
        self._passes += 1
        if self._passes > 1 and not _is_rereadable(self._lines):
            raise ValidationError("an export given as a one-pass iterator can be checked, not imported")
        if self._start is not None:
            self._lines.seek(self._start)
        parsed = _parsed(self._lines)
        _check_header(next(parsed, None))
        for number, fields in parsed:
            kind = fields.pop("type", None)
            if kind not in ID_COLUMNS:
                raise ValidationError(
                    f"line {number}: unknown record type {kind!r} (expected memory or cluster)"
                )
            yield Record(store, kind, fields, number)


class _DatabaseRows:
    """Every memory, then every cluster, of a database (read inside the caller's snapshot)."""

    is_file = False

    def __init__(self, store: MemoryStore, batch_size: int) -> None:
        self._store, self._batch_size = store, batch_size

    def records(self, store: MemoryStore) -> Iterator[Record]:
        """The source's rows as records validated against `store`'s rules (the target's)."""
        for memory in transfer_queries.iter_memories(self._store, batch_size=self._batch_size):
            yield Record(store, "memory", memory, None)
        for cluster in transfer_queries.iter_clusters(self._store, batch_size=self._batch_size):
            yield Record(store, "cluster", cluster, None)


class _MemoryOwners:
    """The user_id of each memory of a source, 12 bytes a memory: its id and its user's number."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}  # user_id -> its number
        self._users: list[str] = []  # number -> user_id
        self._ids = array("q")
        self._owners = array("i")  # the number of the user of the memory at the same place
        self._sorted = True

    def add(self, memory_id: int, user_id: str) -> None:
        """Remember that memory `memory_id` (a stored id, a signed 64-bit int) is `user_id`'s."""
        number = self._numbers.setdefault(user_id, len(self._users))
        if number == len(self._users):
            self._users.append(user_id)
        if self._ids and memory_id < self._ids[-1]:
            self._sorted = False
        self._ids.append(memory_id)
        self._owners.append(number)

    def get(self, memory_id: int) -> str | None:
        """The user_id of memory `memory_id`, or None when the source does not hold it."""
        if not self._sorted:
            order = sorted(range(len(self._ids)), key=self._ids.__getitem__)
            self._ids = array("q", (self._ids[place] for place in order))
            self._owners = array("i", (self._owners[place] for place in order))
            self._sorted = True
        place = bisect.bisect_left(self._ids, memory_id)
        if place < len(self._ids) and self._ids[place] == memory_id:
            return self._users[self._owners[place]]
        return None


def _digest_of(mark: int) -> int:
    """The digest part of a mark (line << DIGEST_BITS | digest)."""
    return mark & ((1 << DIGEST_BITS) - 1)


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Lists of up to `size` records, in order."""
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def _by_kind(records: list[Record]) -> dict[str, list[Record]]:
    """The records of a batch by kind, memories first (a cluster refers to memories)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.kind, []).append(record)
    return {kind: groups[kind] for kind in ID_COLUMNS if kind in groups}


def _parsed(lines: Iterable[str | bytes]) -> Iterator[tuple[int, dict]]:
    """(line number, parsed object) for every non-blank line; ValidationError names a bad line."""
    for number, line in _numbered(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"line {number} is not valid JSON: {exc.msg}") from None
        except RecursionError:
            raise ValidationError(f"line {number} is not valid JSON here: it is nested too deeply") from None
        except ValueError as exc:  # e.g. an integer longer than Python converts from text
            reason = str(exc).split(";")[0]
            raise ValidationError(f"line {number} is not valid JSON here: {reason}") from None
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
    """ValidationError unless the first line is a header of a format version this memoric reads."""
    if first is None:
        raise ValidationError("the export is empty: no header line")
    _, header = first
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise ValidationError(f"not a memoric export: the first line must be a {FORMAT!r} header")
    version = header.get("format_version")
    if type(version) is not int or version < 1:
        raise ValidationError(
            f"export format version {version!r} is not a positive integer: not a memoric export"
        )
    if version > FORMAT_VERSION:
        raise ValidationError(
            f"export format version {version} is newer than this memoric reads ({FORMAT_VERSION}); "
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
