"""Text postings: the terms of every memory, kept in step with its content by every write.

Keyword recall (`recall_queries`) ranks by BM25 over two tables: `memory_terms` (one row per
memory and term: how often the term occurs, the memory's length) and `memory_documents` (one
row per memory: its length), both carrying the memory's user and namespace. Neither database
can run memoric's tokenizer (`memoric.text`), so the postings are written here, by Python,
inside the same transaction as the write that changes the memories:

- `insert_memory`, `insert_memories`: every INSERT of memories (save, bulk insert, thread summaries, import,
  copy), ids drawn beforehand so that the postings can name them;
- `reindex`: after an UPDATE of content (`update_content`, trimming), from the content it returned;
- `delete_memories`: every DELETE of memories, the postings of the deleted ids with them.

The memory rows are always written before their postings, so two transactions touching the
same memory take their locks in the same order. Before migration 006 the tables do not exist
and these functions write memories only, as decided under the memories' write lock (`written`).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import peewee

from memoric.db.chunks import chunks
from memoric.db.dialects.base import DOCUMENT_COLUMNS, TERM_COLUMNS, MemoryPostings
from memoric.db.rows import ID_CHUNK_SIZE, driver_row, group_by_keys, insert_rows
from memoric.text import term_counts

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

_TERM = operator.itemgetter(3)  # a `memory_terms` row's term
# Memories whose postings one INSERT writes (about 20 terms each in the benchmark's workload).
POSTED_PER_STATEMENT = 1000


def enabled(store: MemoryStore) -> bool:
    """Whether the postings tables exist (migration 006 applied or the schema built from the models).

    Only the answer yes is remembered: a store opened before an upgrade notices the tables
    at its next write.
    """
    if not store.postings_ready:
        store.postings_ready = store.database.table_exists(store.MemoryDocument._meta.table_name)
    return store.postings_ready


def written(store: MemoryStore) -> bool:
    """`enabled`, for a write of memories, asked inside its transaction: an answer no is given
    holding the lock every write of `memories` takes (`Dialect.hold_writes`), which migration
    006 takes too before it posts the memories there. So a memory written without postings is
    one that migration reads and posts, and a write waiting for it sees the new tables."""
    if not store.postings_ready:
        store.dialect.hold_writes(store.database, store.Memory._meta.table_name)
    return enabled(store)


def posting_rows(
    memories: Iterable[dict], counted: Callable[[str], tuple[Counter, int]] = term_counts
) -> tuple[list[tuple], list[tuple]]:
    """The `memory_terms` and `memory_documents` rows of memories (dicts with id, user_id,
    namespace and content), their terms counted by `counted` (an older rule, in a migration).

    The terms come in the lookup index's order: each user and namespace's together, by term, in
    memory order within a term. A batch then visits each page of that index once, where the
    memories' own order sends every posting to a page of its own (measured into 100k rows: the
    terms' INSERT took a fifth less time on SQLite, a seventh less on PostgreSQL).
    """
    scopes: dict[tuple, list[tuple]] = {}
    documents = []
    for memory in memories:
        counts, length = counted(memory["content"])
        owner = (memory["id"], memory["user_id"], memory["namespace"])
        documents.append((*owner, length))
        scopes.setdefault(owner[1:], []).extend([(*owner, term, tf, length) for term, tf in counts.items()])
    terms = []
    for scope in scopes.values():
        scope.sort(key=_TERM)  # stable: memory order within a term
        terms += scope
    return terms, documents


def write_postings(store: MemoryStore, memories: list[dict]) -> None:
    """Insert the postings of memories that have none yet (call inside the memories' transaction).

    The memories go scope by scope (user and namespace), POSTED_PER_STATEMENT at a time: a
    batch keeps the lookup index's order across its statements, and memory holds one
    statement's rows, not the whole batch's.
    """
    in_scopes = _by_scope(memories)
    for start in range(0, len(in_scopes), POSTED_PER_STATEMENT):
        terms, documents = posting_rows(in_scopes[start : start + POSTED_PER_STATEMENT])
        for model, columns, rows in (
            (store.MemoryDocument, DOCUMENT_COLUMNS, documents),
            (store.MemoryTerm, TERM_COLUMNS, terms),
        ):
            if rows:
                store.dialect.insert_rows(store.database, model._meta.table_name, columns, rows, False)


def _by_scope(memories: list[dict]) -> list[dict]:
    """The memories each user and namespace's together, in memory order within one."""
    scopes: dict[tuple, list[dict]] = {}
    for memory in memories:
        scopes.setdefault((memory["user_id"], memory["namespace"]), []).append(memory)
    return [memory for scope in scopes.values() for memory in scope]


def forget(store: MemoryStore, owners: list[tuple[int, str]]) -> None:
    """Delete the postings of these (memory id, user id) pairs (inside the transaction that changed
    them). Where the tables are distributed by user (Citus) each statement names the users too,
    so it goes to their shards alone; elsewhere it names the ids only, as the users would lead
    SQLite to read every posting of theirs through the lookup index."""
    for model in (store.MemoryTerm, store.MemoryDocument):
        by_user = store.dialect.routes_by_user(store.database, model._meta.table_name)
        for chunk in chunks(owners, ID_CHUNK_SIZE):
            condition = model.memory_id.in_([memory_id for memory_id, _ in chunk])
            if by_user:
                condition &= model.user_id.in_(sorted({user_id for _, user_id in chunk}))
            model.delete().where(condition).execute()


def reindex(store: MemoryStore, memories: list[dict]) -> None:
    """Rebuild the postings of memories just updated (dicts with id, user_id, namespace and the
    stored content, as the UPDATE returned them), inside the write's transaction."""
    if not memories or not written(store):
        return
    memories = sorted(memories, key=lambda memory: memory["id"])
    forget(store, [(memory["id"], memory["user_id"]) for memory in memories])
    write_postings(store, memories)


def reindex_ids(store: MemoryStore, memory_ids: list[int]) -> None:
    """Rebuild the postings of these memories from what is stored (inside the write's transaction);
    ids of memories that do not exist have none.

    Their rows are read locked (`Dialect.locked_rows`): a concurrent rebuild of the same
    memories (two imports of one file) waits, then finds and replaces the postings this one
    wrote, where its DELETE would have missed them and its INSERT collided with them.
    """
    m = store.Memory
    for chunk in chunks(sorted(set(memory_ids)), ID_CHUNK_SIZE):
        query = m.select(*posted_fields(m)).where(m.id.in_(chunk)).order_by(m.id)
        reindex(store, store.dialect.locked_rows(store.database, query))


def posted_fields(memory: type[peewee.Model]) -> tuple:
    """The columns of a memory its postings are built from (what an UPDATE returns for `reindex`)."""
    return (memory.id, memory.user_id, memory.namespace, memory.content)


def insert_memory(store: MemoryStore, row: dict) -> int:
    """INSERT one validated memory row and its postings in one transaction; its id."""
    columns, values = driver_row(store.Memory, row)
    table = store.Memory._meta.table_name
    if not store.postings_ready:  # asked in a transaction of its own (one statement needs none)
        with store.database.atomic():
            if not written(store):
                return store.dialect.insert_one(store.database, table, columns, values)
    counts, length = term_counts(row["content"])
    postings = MemoryPostings(
        documents_table=store.MemoryDocument._meta.table_name,
        terms_table=store.MemoryTerm._meta.table_name,
        user_id=row["user_id"],
        namespace=row["namespace"],
        length=length,
        counts=sorted(counts.items()),
    )
    return store.dialect.insert_one_with_postings(store.database, table, columns, values, postings)


def insert_memories(store: MemoryStore, rows: list[dict], *, skip_existing: bool = False) -> int:
    """INSERT validated memory rows and their postings (inside one transaction); rows inserted.

    Rows without an id get one drawn from the table's id counter first. With `skip_existing`,
    rows whose id is taken are left out (an import) and the postings of every id given are
    rebuilt from what is stored, whichever row won.
    """
    m = store.Memory
    if not written(store):
        return sum(insert_rows(store, m, same_keys, skip_existing) for same_keys in group_by_keys(rows))
    ids_given = any("id" in row for row in rows)
    rows = with_ids(store, rows)
    inserted = sum(
        insert_rows(store, m, same_keys, skip_existing, ids_given) for same_keys in group_by_keys(rows)
    )
    if skip_existing:
        reindex_ids(store, [row["id"] for row in rows])
    else:
        write_postings(store, rows)
    return inserted


def with_ids(store: MemoryStore, rows: list[dict]) -> list[dict]:
    """`rows`, each without an id given the next one the id counter hands out (in row order)."""
    missing = sum(1 for row in rows if "id" not in row)
    if not missing:
        return rows
    table = store.Memory._meta.table_name
    drawn = iter(store.dialect.new_ids(store.database, table, "id", missing))
    return [row if "id" in row else {**row, "id": next(drawn)} for row in rows]


def delete_memories(store: MemoryStore, conditions: list, *returned) -> list[tuple]:
    """DELETE the memories matching every condition and their postings (inside one transaction);
    the (id, user_id, *returned) of each memory deleted, as it was when deleted."""
    m = store.Memory
    posted = written(store)
    deleted = list(m.delete().where(*conditions).returning(m.id, m.user_id, *returned).tuples().execute())
    if posted:
        forget(store, [row[:2] for row in deleted])
    return deleted
