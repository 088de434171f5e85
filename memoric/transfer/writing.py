"""The writing passes of an import or a copy: ids reserved, rows compared with the target, then
written in batches; an import with new ids takes back what it wrote when it stops."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from memoric import arguments, validation
from memoric.core import Memoric
from memoric.db import summaries, transfer_queries
from memoric.db.driver_errors import first_line
from memoric.db.store import MemoryStore
from memoric.errors import MemoricError, ValidationError
from memoric.transfer.comparing import (
    REBUILD_INSTEAD,
    built,
    compare_with_target,
    differences,
    refuse_difference,
    thread_of,
)
from memoric.transfer.leftovers import refuse_leaving_behind
from memoric.transfer.lines import rereadable
from memoric.transfer.plan import ImportPlan, hold_listed_memories, survey
from memoric.transfer.records import (
    BATCH_SIZE,
    COUNT_KEYS,
    ID_COLUMNS,
    DatabaseRows,
    ExportLines,
    Progress,
    Record,
    batches,
    by_kind,
)

# What a refused batch leaves behind: an import keeps the batches before it; one with new ids
# takes them back (`_take_back`).
STOPPED = "this batch was not written, the ones before it were"
STOPPED_WITH_NEW_IDS = "the import stopped here and took back what it had written"
TAKE_BACK_CHUNK = 1000  # rows compared and deleted at a time when an import takes back what it wrote


def import_jsonl(
    store: MemoryStore,
    lines: Iterable[str | bytes],
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    new_ids: bool = False,
    clusters: bool = True,
    keep_existing: bool = False,
) -> dict[str, int]:
    """Load an export into `store`: checked whole first, then written; counts inserted and skipped.

    `lines` is read more than once: a seekable file is rewound, a list reread, anything else
    spooled to a temporary file first. `clusters=False` leaves the file's clusters out (checked,
    not written): to restore memories into a database whose clusters were rebuilt since.
    `keep_existing=True` keeps a memory the target holds under the file's id for the same user
    as it is there, skipped like an identical one, and leaves the clusters out too.
    """
    _check_source(store, lines, new_ids, clusters, keep_existing)
    _check_options(batch_size, progress)
    with rereadable(lines) as reread:
        plan = check_jsonl(store, reread, new_ids=new_ids, clusters=clusters, keep_existing=keep_existing)
        return import_checked(store, plan, batch_size=batch_size, progress=progress)


def check_jsonl(
    store: MemoryStore,
    lines: Iterable[str | bytes],
    *,
    new_ids: bool = False,
    clusters: bool = True,
    keep_existing: bool = False,
) -> ImportPlan:
    """Check a whole export as `import_jsonl` would, writing nothing; the plan that imports it.

    ValidationError names the first bad line (both lines of a contradiction). Rows are compared
    with the target when it is imported (`import_checked`), or first by `compare_with_target`.
    """
    _check_source(store, lines, new_ids, clusters, keep_existing)
    return survey(store, ExportLines(lines), new_ids=new_ids, clusters=clusters, keep_existing=keep_existing)


def import_memoric(
    memoric: Memoric, plan: ImportPlan, *, batch_size: int = BATCH_SIZE, progress: Progress | None = None
) -> dict[str, int]:
    """`import_checked` into a Memoric's database, whose schema is built only for a file it takes.

    An empty database (a SQLite file not there yet included) is compared with as empty before it
    is built, so a file refused for what the database holds leaves it as it was: unbuilt. A
    built one is compared by `import_checked`, after its schema is checked.
    """
    arguments.instance("memoric", memoric, Memoric)
    arguments.instance("plan", plan, ImportPlan)
    if not built(memoric.store):
        compare_with_target(memoric.store, plan)
    memoric.ensure_schema()
    return import_checked(memoric.db, plan, batch_size=batch_size, progress=progress)


def import_checked(
    store: MemoryStore, plan: ImportPlan, *, batch_size: int = BATCH_SIZE, progress: Progress | None = None
) -> dict[str, int]:
    """Write what `check_jsonl` checked: compare with the target, reserve the ids, compare again
    (rows written meanwhile), write in batches. A refusal before writing leaves every id counter
    as it was, unless it comes from rows written between the two comparisons."""
    arguments.instance("store", store, MemoryStore)
    arguments.instance("plan", plan, ImportPlan)
    _check_options(batch_size, progress)
    compare_with_target(store, plan)
    highest = {kind: record for kind, record in plan.highest.items() if plan.writes(kind)}
    claims = {kind: (0, plan.counts[kind]) if plan.new_ids else (highest[kind].id, 0) for kind in highest}
    tops, written = transfer_queries.reserve_ids(
        store,
        claims,
        check=lambda: compare_with_target(store, plan),
        holding_rows=lambda tops: {kind: plan.final_row(highest[kind], tops) for kind in highest},
    )
    counts = {COUNT_KEYS[kind]: written.get(kind, 0) for kind in ID_COLUMNS}
    # Records of each kind in transactions begun, counted before each begins (a stop may come
    # between its COMMIT and the next line), and in transactions known to have committed.
    begun, committed = dict.fromkeys(ID_COLUMNS, 0), dict.fromkeys(ID_COLUMNS, 0)
    left_out = 0
    try:
        for batch in batches(plan.source.records(store), max(batch_size, 1)):
            for kind, records in by_kind(batch).items():
                if not plan.writes(kind):
                    left_out += len(records)
                    continue
                begun[kind] += len(records)
                counts[COUNT_KEYS[kind]] += _write(store, plan, kind, records, tops)
                committed[kind] = begun[kind]
            if progress is not None:
                progress(len(batch))
    except BaseException as exc:
        if plan.new_ids:
            _take_back(store, plan, tops, exc, begun=begun, committed=committed)
        raise
    counts["skipped"] = plan.records - left_out - counts["memories"] - counts["clusters"]
    if plan.keep_existing:
        counts["summaries_released"] = _release_changed(store, plan)
    return counts


class NotTakenBack(MemoricError):
    """An import with new ids stopped, and what it wrote could not be taken back: the message
    names the id blocks to delete by hand before importing again."""


def _take_back(
    store: MemoryStore,
    plan: ImportPlan,
    tops: dict[str, int],
    stopped: BaseException,
    *,
    begun: dict[str, int],
    committed: dict[str, int],
) -> None:
    """Delete what an import with new ids wrote before it stopped (a rerun would otherwise add it
    twice): the rows of the transactions it began, each only where it is there and still as
    written (the last may have committed just before the stop, or rolled back: then it wrote none).
    A row of a committed transaction that no longer holds what the import wrote stays: another
    writer changed it since, or holds its id (after a truncate restarted the counters);
    NotTakenBack then names it, since a rerun would add the file's version again."""
    changed: dict[str, list[int]] = {}
    try:
        for kind, written in _written_rows(store, plan, tops, begun):
            column = ID_COLUMNS[kind]
            stored = transfer_queries.stored_rows(store, kind, [row[column] for _, _, row in written])
            ours, others = [], []
            for ordinal, record, row in written:
                if row[column] not in stored:
                    continue  # rolled back, or deleted since: nothing to take back
                if not differences(record, row, stored[row[column]]):
                    ours.append(row[column])
                elif ordinal < committed[kind]:
                    others.append(row[column])
            changed.setdefault(kind, []).extend(others)
            transfer_queries.delete_ids(store, kind, ours)
    except BaseException as exc:  # a second Ctrl-C too: what to delete must not be lost with it
        blocks = ", ".join(
            f"{COUNT_KEYS[kind]} {tops[kind] + 1}-{tops[kind] + plan.counts[kind]}" for kind in tops
        )
        raise NotTakenBack(
            f"the import stopped ({first_line(stopped)}) and what it wrote could not be taken back "
            f"({exc}): delete the rows it wrote (ids among {blocks}) before importing again"
        ) from stopped
    if any(changed.values()):
        raise _changed_since(stopped, changed) from stopped


def _changed_since(stopped: BaseException, changed: dict[str, list[int]]) -> NotTakenBack:
    """The refusal of a take-back that kept rows no longer as the import wrote them (by kind)."""
    kept = "; ".join(f"{COUNT_KEYS[kind]} {validation.shown(ids)}" for kind, ids in changed.items() if ids)
    return NotTakenBack(
        f"the import stopped ({first_line(stopped)}) and took back what it wrote, except rows that "
        f"no longer hold what it wrote (another writer changed them, or holds their ids): {kept}; "
        "they stay, and importing the file again would add its version of them a second time"
    )


def _written_rows(
    store: MemoryStore, plan: ImportPlan, tops: dict[str, int], begun: dict[str, int]
) -> Iterator[tuple[str, list[tuple[int, Record, dict]]]]:
    """(kind, [(ordinal among its kind, record, row as written)]) for the first `begun[kind]`
    records of each kind, read from the source again, TAKE_BACK_CHUNK at a time (memory does not
    grow with the file)."""
    chunks: dict[str, list[tuple[int, Record, dict]]] = {kind: [] for kind in begun}
    seen = dict.fromkeys(begun, 0)
    for record in plan.source.records(store):
        if seen == begun:
            break
        if seen[record.kind] == begun[record.kind]:
            continue
        chunks[record.kind].append((seen[record.kind], record, plan.final_row(record, tops)))
        seen[record.kind] += 1
        if len(chunks[record.kind]) == TAKE_BACK_CHUNK:
            yield record.kind, chunks[record.kind]
            chunks[record.kind] = []
    yield from ((kind, rows) for kind, rows in chunks.items() if rows)


def copy_database(
    source: MemoryStore,
    target: MemoryStore,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    memoric_only: bool = False,
) -> dict[str, int]:
    """Copy every memory and cluster of `source` into `target` (any dialects), ids kept.

    The source is read inside one snapshot; the target is written like an import. A source
    holding the application's own data, which a copy cannot carry, is refused unless
    `memoric_only` (`leftovers`).
    """
    arguments.instance("source", source, MemoryStore)
    arguments.instance("target", target, MemoryStore)
    _check_options(batch_size, progress)
    with transfer_queries.snapshot(source):
        refuse_leaving_behind(source, "a copy", memoric_only)
        plan = survey(target, DatabaseRows(source, max(batch_size, 1)), new_ids=False)
        return import_checked(target, plan, batch_size=batch_size, progress=progress)


def _check_source(store, lines, new_ids, clusters, keep_existing) -> None:
    """ValidationError for a target that is no store, lines that are none, or an option that is
    not a bool (`new_ids="no"` would be true)."""
    arguments.instance("store", store, MemoryStore)
    arguments.lines("lines", lines)
    for name, value in [("new_ids", new_ids), ("clusters", clusters), ("keep_existing", keep_existing)]:
        validation.boolean(name, value)


def _check_options(batch_size, progress) -> None:
    """ValidationError for a batch size or progress callback that would fail after a batch was
    written."""
    validation.count("batch_size", batch_size)
    arguments.progress("progress", progress, "rows written")


def _release_changed(store: MemoryStore, plan: ImportPlan) -> int:
    """With keep_existing, the summaries of the threads whose memories were kept though the
    file's differ: deleted, their sources unmarked (summarized again by the next policy run), as
    an edit releases them; how many were deleted."""
    threads = {thread for thread in plan.changed_threads if thread[2] is not None}
    if not threads:
        return 0
    with store.atomic():
        return summaries.release(store, threads)


def _write(store: MemoryStore, plan: ImportPlan, kind: str, records: list[Record], tops: dict) -> int:
    """Pass 3: one batch of one kind in one transaction; rows skipped must equal what is stored."""
    rows: dict[int, dict] = {}
    for record in records:
        plan.confirm(record)
        rows.setdefault(record.id, plan.final_row(record, tops))
    outcome = STOPPED_WITH_NEW_IDS if plan.new_ids else STOPPED
    with store.atomic():
        if kind == "cluster":
            hold_listed_memories(store, records, rows, outcome)
        inserted = transfer_queries.insert_whole_rows(store, kind, list(rows.values()))
        if inserted < len(rows):
            column = ID_COLUMNS[kind]
            stored = transfer_queries.stored_rows(store, kind, [row[column] for row in rows.values()])
            for record in records:
                row = rows[record.id]
                written = stored.get(row[column])
                if written is None:
                    remedy = REBUILD_INSTEAD if kind == "cluster" else "run the import again"
                    raise ValidationError(
                        f"{record.where}: {kind} {row[column]} could not be written: {_gone(kind)}; "
                        f"{outcome} ({remedy})"
                    )
                if refuse_difference(
                    record, row, written, outcome, suggest_new_ids=not plan.new_ids, keep=plan.keep_existing
                ):
                    plan.changed_threads.add(thread_of(row))
    return inserted


def _gone(kind: str) -> str:
    """Why a row the target held when the batch skipped it cannot be read back in its transaction."""
    if kind == "cluster":
        return "its user_id, topic and category are another's in the target now, or it was deleted meanwhile"
    return "another writer deleted it meanwhile (its id was taken when the batch skipped it)"
