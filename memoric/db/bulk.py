"""Bulk inserts: every row checked before any is written, then one transaction per batch.

A bad row anywhere writes nothing, so the checked rows must wait somewhere until the last one
is checked. A call that fits in one batch keeps them in memory. A longer one pickles each full
batch to an unlinked temporary file (owner-only) and reads them back one at a time, so its
memory holds two batches whatever the number of rows: pickling a whole batch costs about 7 µs a
row here, a pickle per row cost 34. A batch pickle cannot take (a value of a class defined inside
a function) stays in memory, in its place.
"""

from __future__ import annotations

import array
import itertools
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

from memoric import validation
from memoric.db import postings
from memoric.db.driver_errors import store_call_failed
from memoric.db.rows import dict_rows, memory_row
from memoric.errors import MemoricError, PartlyInserted

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore


def insert_memories(store: MemoryStore, rows: Iterable[dict], batch_size: int) -> int:
    """Check every row, then insert them `batch_size` at a time; rows inserted.

    Rows may carry an explicit `id`; the id counter is first moved past the highest one (never
    back), so no memory saved meanwhile takes one of them (where the table keeps no counter,
    SQLite's max(rowid) + 1, that row goes in the first batch). An id already taken fails its
    batch. A batch that fails after others were committed raises PartlyInserted.
    """
    validation.count("batch_size", batch_size)
    with CheckedBatches(max(batch_size, 1)) as checked:
        highest = None  # (index, row) of the row with the highest explicit id
        given = ExplicitIds()
        for index, row in dict_rows(rows):
            row = memory_row(store, row, where=f"rows[{index}]: ")
            checked.add(row)
            if "id" in row:
                given.add(index, row["id"])
                if highest is None or row["id"] > highest[1]["id"]:
                    highest = (index, row)
        given.refuse_repeats()
        moved = None if highest is None or counter_moved_past(store, highest[1]["id"]) else highest[0]
        batches = iter(checked) if moved is None else moved_first(checked, moved, highest[1])
        return _write_batches(store, batches, moved)


def _write_batches(store: MemoryStore, batches: Iterator[list[dict]], moved: int | None) -> int:
    """Insert each batch in a transaction of its own; rows inserted. A failure after a batch was
    committed is PartlyInserted (not inside the caller's transaction, where each batch is a
    savepoint the failure undoes); a Ctrl-C is left as it is, with a note of the rows saved."""
    committing = not store.database.in_transaction()
    inserted = at_commit = 0  # at_commit: the rows of a batch whose COMMIT was under way
    try:
        for batch in batches:
            with store.database.atomic():
                written = postings.insert_memories(store, batch)
                at_commit = written
            inserted, at_commit = inserted + written, 0  # counted once its COMMIT went through
    except Exception as exc:
        in_doubt = at_commit if store.database.connection_lost(probe=True) else 0
        if committing and (inserted or in_doubt):
            saved = _saved(inserted, moved)
            raise PartlyInserted(_reason(store, exc), inserted, saved, in_doubt=in_doubt) from exc
        raise
    except BaseException as exc:
        if inserted and committing:
            exc.add_note(f"insert_memories: {_saved(inserted, moved)} had been saved")
        raise
    return inserted


def _reason(store: MemoryStore, exc: Exception) -> str:
    """What failed, as every store call says it (a driver's error) or as memoric said it."""
    return str(exc) if isinstance(exc, MemoricError) else store_call_failed(store, "insert_memories", exc)


def _saved(inserted: int, moved: int | None) -> str:
    """Which rows the committed batches hold: the first `inserted` given, or (when the row at
    index `moved`, the highest explicit id, went first) the first ones and that row."""
    if not inserted:
        return "no row"
    if moved is None or moved < inserted:
        return f"rows[0:{inserted}], the first {inserted} rows given,"
    return f"rows[0:{inserted - 1}] and rows[{moved}], {inserted} rows,"


def counter_moved_past(store: MemoryStore, memory_id: int) -> bool:
    """Move the id counter past `memory_id` (never back), so that no memory saved later draws it;
    False where the table keeps no counter (SQLite without AUTOINCREMENT: max(rowid) + 1)."""
    table = store.Memory._meta.table_name
    if not store.dialect.has_id_counter(store.database, table):
        return False
    store.dialect.reserve_ids(store.database, table, "id", above=memory_id, count=0)
    return True


class ExplicitIds:
    """The explicit ids of one call's rows, 16 bytes each, to find one given twice before any
    batch is written (the second would fail its batch after the first was committed)."""

    def __init__(self) -> None:
        self._ids = array.array("q")
        self._indexes = array.array("q")

    def add(self, index: int, memory_id: int) -> None:
        self._ids.append(memory_id)
        self._indexes.append(index)

    def refuse_repeats(self) -> None:
        """ValidationError naming the first repeated id (by value) and the two rows giving it."""
        ordered = sorted(self._ids)
        repeated = next((a for a, b in itertools.pairwise(ordered) if a == b), None)
        if repeated is None:
            return
        first, second = [self._indexes[i] for i, found in enumerate(self._ids) if found == repeated][:2]
        raise validation.ValidationError(
            f"rows[{second}]: id {repeated} is given twice in one call (rows[{first}] too)"
        )


class CheckedBatches:
    """Checked rows in batches of `size`, in the order they were added; use as a context manager."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._current: list[dict] = []
        self._file: IO[bytes] | None = None
        self._order: list[list[dict] | None] = []  # each batch set aside: itself, or None: in the file

    def __enter__(self) -> CheckedBatches:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._file is not None:
            self._file.close()

    def add(self, row: dict) -> None:
        """Keep `row`; a full batch is set aside once a row comes after it."""
        if len(self._current) == self.size:
            self._set_aside(self._current)
            self._current = []
        self._current.append(row)

    def __iter__(self) -> Iterator[list[dict]]:
        """The batches in order, those in the file read back one at a time."""
        if self._file is not None:
            self._file.seek(0)
        for batch in self._order:
            yield pickle.load(self._file) if batch is None else batch
        if self._current:
            yield self._current

    def _set_aside(self, batch: list[dict]) -> None:
        """Write `batch` to the file, or keep it in memory when pickle cannot take it."""
        try:
            data = pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            self._order.append(batch)
            return
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by __exit__)
            self._file.write(data)
        except OSError as exc:
            raise MemoricError(
                f"could not set checked rows aside in a temporary file ({exc}): nothing was written"
            ) from exc
        self._order.append(None)


def moved_first(checked: CheckedBatches, index: int, row: dict) -> Iterator[list[dict]]:
    """The batches of `checked` with `row`, added at `index`, taken out of its batch and put at
    the head of the first one."""
    for number, batch in enumerate(checked):
        place = index - number * checked.size
        if 0 <= place < len(batch):
            batch = batch[:place] + batch[place + 1 :]
        if number == 0:
            batch = [row, *batch]
        if batch:
            yield batch
