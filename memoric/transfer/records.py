"""The rows of an export or of a copy's source: records validated when first needed, the end line
checked, and the JSON forms of their values."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from memoric import validation
from memoric.db import transfer_queries
from memoric.db.models import to_utc
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.transfer.lines import check_header, is_rereadable, parsed, position, rewind

# The last line of an export since format version 2: how many memories and clusters it holds, so
# that a file cut short (a copy or download that stopped, a full disk) is never taken for whole.
END = "end"
ENDED_SINCE = 2
BATCH_SIZE = 1000
TIMESTAMPS = ("created_at", "updated_at", "last_built_at")
ID_COLUMNS = {"memory": "id", "cluster": "cluster_id"}
COUNT_KEYS = {"memory": "memories", "cluster": "clusters"}
# A fraction of a second with a non-zero digit past the sixth: Python reads it, cut to microseconds.
BELOW_A_MICROSECOND = re.compile(r"[.,]\d{6}0*[1-9]")
# A UTC offset with seconds: not ISO 8601, and Python 3.11 drops a fraction of such an offset.
OFFSET_WITH_SECONDS = re.compile(r"[+-]\d\d:?\d\d:?\d\d(?:[.,]\d+)?$")

Progress = Callable[[int], None]


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
            row = transfer_queries.whole_row(self._store, self.kind, decode(self.fields))
        except ValidationError as exc:
            raise ValidationError(f"{self.where}: {exc}{self._tier_hint()}") from None
        for key in TIMESTAMPS:
            if key in row:
                row[key] = to_utc(row[key])
        return row

    def _tier_hint(self) -> str:
        """What to do about a memory's tier the configuration here does not name: the likely
        cause is a database written with other tiers, opened without its configuration."""
        tier = self.fields.get("tier")
        if self.kind != "memory" or tier is None or tier in self._store.tiers:
            return ""
        return " (the tiers configured here: pass the configuration they were written with, `--config`)"

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

    def kept(self) -> str:
        """What a later pass needs of the record, as text to keep on disk: its row and the
        timestamps it gives (revalidating would cost more, and stamp left-out times anew)."""
        return json.dumps([encode(self.row), sorted(self.stated)])

    @classmethod
    def from_kept(cls, store: MemoryStore, kind: str, line: int | None, kept: str) -> Record:
        """The record `kept` was made of (its fields now its row as exported)."""
        fields, stated = json.loads(kept)
        record = cls(store, kind, fields, line)
        # Not `decode`: these timestamps are memoric's own isoformat, and skipping its checks took
        # reading a kept cluster back from 51 to 37 µs (profiled over 20,000 clusters).
        record.row = {
            key: to_utc(dt.datetime.fromisoformat(value)) if key in TIMESTAMPS and value else value
            for key, value in fields.items()
        }
        record.stated = frozenset(stated)
        return record

    @property
    def key(self) -> tuple[str, str, str]:
        """A cluster's (user_id, topic, category), unique in a database."""
        return self.row["user_id"], self.row["topic"], self.row["category"]


def same_json(a, b) -> bool:
    """Equal values of the same types all the way down: true is not 1, 1 is not 1.0, {} is not []."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same_json(value, b[key]) for key, value in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(map(same_json, a, b))
    return a == b


class ExportLines:
    """The lines of an export, read once per pass: a seekable file is rewound, a list reread."""

    is_file = True

    def __init__(self, lines: Iterable[str | bytes]) -> None:
        self.ended: dict[str, int] | None = None  # the end line's counts, once read (format 2)
        self._lines = lines
        self._start = position(lines)
        self._passes = 0

    def records(self, store: MemoryStore) -> Iterator[Record]:
        """The export's records, each validated against `store`'s rules (header checked first)."""
        self._passes += 1
        if self._passes > 1 and not is_rereadable(self._lines):
            raise ValidationError("an export given as a one-pass iterator can be checked, not imported")
        rewind(self._lines, self._start)
        objects = parsed(self._lines)
        version = check_header(next(objects, None))
        held = dict.fromkeys(COUNT_KEYS.values(), 0)
        end, number = None, 1
        for number, fields in objects:
            kind = fields.pop("type", None)
            if end is not None:
                raise ValidationError(f"line {number}: a record after the end line (line {end})")
            if kind == END:
                _check_end(number, fields, held)
                end, self.ended = number, held
                continue
            if not isinstance(kind, str) or kind not in ID_COLUMNS:  # a list is no key to look up
                raise ValidationError(
                    f"line {number}: unknown record type {kind!r} (expected memory, cluster or end)"
                )
            held[COUNT_KEYS[kind]] += 1
            yield Record(store, kind, fields, number)
        if end is None and version >= ENDED_SINCE:
            raise ValidationError(
                f"the export stops at line {number} without its end line: it was cut short (a copy "
                "or download that stopped, a full disk?) and is refused whole"
            )


class DatabaseRows:
    """Every memory, then every cluster, of a database (read inside the caller's snapshot)."""

    is_file = False
    ended = None  # no end line: a database's rows are whole

    def __init__(self, store: MemoryStore, batch_size: int) -> None:
        self._store, self._batch_size = store, batch_size

    def records(self, store: MemoryStore) -> Iterator[Record]:
        """The source's rows as records validated against `store`'s rules (the target's)."""
        for memory in transfer_queries.iter_memories(self._store, batch_size=self._batch_size):
            yield Record(store, "memory", memory, None)
        for cluster in transfer_queries.iter_clusters(self._store, batch_size=self._batch_size):
            yield Record(store, "cluster", cluster, None)


def batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Lists of up to `size` records, in order."""
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def by_kind(records: list[Record]) -> dict[str, list[Record]]:
    """The records of a batch by kind, memories first (a cluster refers to memories)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.kind, []).append(record)
    return {kind: groups[kind] for kind in ID_COLUMNS if kind in groups}


def _check_end(number: int, fields: dict, held: dict[str, int]) -> None:
    """ValidationError unless the end line on line `number` counts the records `held` before it."""
    counted = {key: fields.get(key) for key in held}
    if set(fields) != set(held) or any(type(count) is not int for count in counted.values()):
        raise ValidationError(
            f"line {number}: an end line holds the number of memories and of clusters, "
            f"got {validation.shown(fields)}"
        )
    if counted != held:
        raise ValidationError(
            f"line {number}: the end line counts {counted['memories']} memories and "
            f"{counted['clusters']} clusters, the file holds {held['memories']} and {held['clusters']}: "
            "lines were lost or added"
        )


def encode(row: dict) -> dict:
    return {key: value.isoformat() if key in TIMESTAMPS else value for key, value in row.items()}


def decode(record: dict) -> dict:
    """An exported record with its timestamps parsed; ValidationError for one memoric cannot keep exactly."""
    decoded = dict(record)
    for key in TIMESTAMPS:
        if isinstance(decoded.get(key), str):
            try:
                decoded[key] = dt.datetime.fromisoformat(decoded[key])
            except ValueError:
                raise ValidationError(f"{key} {decoded[key]!r} is not an ISO 8601 timestamp") from None
            if BELOW_A_MICROSECOND.search(record[key]):
                raise ValidationError(
                    f"{key} {record[key]!r} is more precise than a microsecond, the finest time "
                    "memoric stores: it would be cut"
                )
            if OFFSET_WITH_SECONDS.search(record[key]):
                raise ValidationError(
                    f"{key} {record[key]!r} has a UTC offset with seconds; an ISO 8601 offset is "
                    "hours and minutes (+HH:MM)"
                )
    return decoded
