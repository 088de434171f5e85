"""The pass of an import or a copy that compares the rows with the target before anything is
written: a row the target holds under the same id must hold the same data, type-exactly, and a
cluster's key must not be another cluster's."""

from __future__ import annotations

from memoric.db import transfer_queries
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.transfer.plan import ImportPlan, refuse_strangers
from memoric.transfer.records import BATCH_SIZE, ID_COLUMNS, TIMESTAMPS, Record, batches, same_json

# Clusters are built from the memories: a restore whose clusters differ from the target's leaves
# the file's out and rebuilds them.
REBUILD_INSTEAD = (
    "to restore the memories, import without the file's clusters (`--no-clusters`, "
    "`clusters=False`), then rebuild them (`memoric clusters --rebuild`)"
)
# A memory the target holds with other data, the same memory (`IDENTITY`): in a backup of the same
# database (or an import of it cut short), one changed since; another: another database's memory.
CHANGED_SINCE = (
    "a backup of this database, or an import of it cut short: that memory changed since, and "
    "`--keep-existing` (in Python, keep_existing=True) keeps it as it is now; an export of another "
    "database: to add it beside what is there, import it with new ids"
)
ANOTHER_MEMORY = (
    "another memory (another user, thread or creation time) holds that id here: to add the file's "
    "beside it, import it with new ids"
)
IDENTITY = ("user_id", "namespace", "thread_id", "created_at")  # what no edit of a memory changes


def compare_with_target(store: MemoryStore, plan: ImportPlan) -> None:
    """Pass 2: ValidationError for any row the target holds with other data, a cluster whose key
    it holds under another id, or a cluster listing a memory that is neither in the source nor,
    in the target, its user_id's. Nothing is written.

    A target without memoric's schema counts as empty (a SQLite file not there yet is not
    created). The memories are read again only when the target holds any id in their range (an
    import into a database without them, the common case, costs one query); the clusters were kept
    by the check.
    """
    if not built(store):
        for batch in batches(plan.clusters(store), BATCH_SIZE):
            refuse_strangers(None, plan, batch)
        return
    memories = plan.highest.get("memory")
    if (
        memories is not None
        and not plan.new_ids
        and transfer_queries.has_ids(store, "memory", plan.lowest_memory_id, memories.id)
    ):
        for batch in batches(plan.source.records(store), BATCH_SIZE):
            records = [record for record in batch if record.kind == "memory"]
            for record in records:
                plan.confirm(record)
            plan.changed_threads |= _refuse_differences(store, "memory", records, plan.keep_existing)
    for batch in batches(plan.clusters(store), BATCH_SIZE):
        if not plan.new_ids and plan.writes("cluster"):
            _refuse_differences(store, "cluster", batch)
        if not plan.new_ids:
            refuse_strangers(store, plan, batch)
        if plan.writes("cluster"):
            _refuse_taken_keys(store, plan, batch)


def built(store: MemoryStore) -> bool:
    """Whether the target has memoric's schema (asking does not create a SQLite file)."""
    return store.exists() and store.has_schema()


def _refuse_differences(store: MemoryStore, kind: str, records: list[Record], keep: bool = False) -> set:
    """ValidationError for the first of `records` the target holds under its id with other data
    (with `keep`, another user's only); the threads of those kept though they differ."""
    stored = transfer_queries.stored_rows(store, kind, [record.id for record in records])
    changed = set()
    for record in records:
        if record.id in stored and refuse_difference(
            record, record.row, stored[record.id], "nothing was written", keep=keep
        ):
            changed.add(thread_of(record.row))
    return changed


def thread_of(row: dict) -> tuple:
    """A memory's (user_id, namespace, thread_id): what a thread summary covers."""
    return row["user_id"], row["namespace"], row["thread_id"]


def _refuse_taken_keys(store: MemoryStore, plan: ImportPlan, records: list[Record]) -> None:
    """ValidationError for a cluster whose (user_id, topic, category) is another cluster's in the target."""
    taken = transfer_queries.cluster_ids_by_key(store, (record.key for record in records))
    for record in records:
        holder = taken.get(record.key)
        if holder is not None and (plan.new_ids or holder != record.id):
            raise ValidationError(
                f"{record.where}: cluster {record.id} is for user_id, topic and category "
                f"{list(record.key)}, which the target holds as cluster {holder}: nothing was written "
                f"({REBUILD_INSTEAD})"
            )


def differences(record: Record, row: dict, stored: dict) -> list[str]:
    """The fields where `row` (of `record`) and the stored row differ (timestamps the file left
    out are not compared)."""
    return [
        key
        for key, value in row.items()
        if (key in record.stated or key not in TIMESTAMPS) and not same_json(value, stored.get(key))
    ]


def _same_memory(record: Record, row: dict, stored: dict) -> bool:
    """Whether the target's row under the file's id is that memory, changed since: the same user,
    namespace, thread and creation time, which no edit changes (another memory that took the
    id, a summary a policy run wrote, differs in them)."""
    if "created_at" not in record.stated:
        return False
    return all(row[key] == stored.get(key) for key in IDENTITY)


def refuse_difference(
    record: Record, row: dict, stored: dict, outcome: str, *, suggest_new_ids: bool = True, keep: bool = False
) -> None:
    """ValidationError naming the fields where `row` (of `record`) and the stored row differ, if
    any; with `keep`, a memory of the same user is kept as stored instead: whether it differs."""
    differing = differences(record, row, stored)
    if keep and _same_memory(record, row, stored):
        return bool(differing)
    if differing:
        hint = ""
        if record.line and record.kind == "cluster":
            hint = f" ({REBUILD_INSTEAD})"
        elif record.line and suggest_new_ids:
            hint = f" ({CHANGED_SINCE if _same_memory(record, row, stored) else ANOTHER_MEMORY})"
        raise ValidationError(
            f"{record.where}: {record.kind} id {row[ID_COLUMNS[record.kind]]} is already in the target "
            f"with other data (differing: {', '.join(differing)}): the target is not a copy of this "
            f"source; {outcome}{hint}"
        )
    return False
