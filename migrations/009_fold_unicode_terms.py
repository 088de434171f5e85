"""009: the postings of every memory whose text is not ASCII, posted again by the folding of 009.

From 009 on, memoric's tokenizer removes the characters Unicode calls default-ignorable (soft
hyphens, zero-width joiners, variation selectors) and folds the Turkish dotted capital I to i
(`memoric.text`). This file is ASCII: peewee-migrate reads it in the locale's encoding.
The terms of a memory whose content is not all ASCII may differ from those posted before, so
the upgrade reads every memory in pages of BUILD_BATCH in id order and posts those again, all in
the migration's one transaction, while writers of memories wait (as in 006). An ASCII memory's
terms are the same under both rules and are not touched.

The rollback posts the same memories again by the rule before 009 (NFKC and case folding
alone), so a memoric of that time finds its own terms. The schema does not change.
"""

import peewee as pw

from memoric.db.postings import DOCUMENT_COLUMNS, TERM_COLUMNS, posting_rows
from memoric.text import term_counts, term_counts_before_009

BUILD_BATCH = 1000  # memories read per page
INSERT_CHUNK = 500  # posting rows per INSERT statement (6 parameters each, under SQLite's limit)


def _mark(database) -> str:
    return "%s" if isinstance(database, pw.PostgresqlDatabase) else "?"


def _not_ascii(database, after: int) -> tuple[int | None, list[dict]]:
    """The last id of the page of memories after `after`, and those of them with non-ASCII content."""
    page = database.execute_sql(
        f'SELECT "id", "user_id", "namespace", "content" FROM "memories" WHERE "id" > {_mark(database)} '
        f'ORDER BY "id" LIMIT {BUILD_BATCH}',
        (after,),
    ).fetchall()
    columns = ("id", "user_id", "namespace", "content")
    chosen = [dict(zip(columns, row, strict=True)) for row in page if not row[3].isascii()]
    return (page[-1][0] if page else None), chosen


def _repost(database, memories: list[dict], counted) -> None:
    """Replace the postings of `memories` by those `counted` finds."""
    marks = ", ".join([_mark(database)] * len(memories))
    ids = [memory["id"] for memory in memories]
    for table in ("memory_terms", "memory_documents"):
        database.execute_sql(f'DELETE FROM "{table}" WHERE "memory_id" IN ({marks})', ids)
    terms, documents = posting_rows(memories, counted)
    _insert(database, "memory_documents", DOCUMENT_COLUMNS, documents)
    _insert(database, "memory_terms", TERM_COLUMNS, terms)


def _insert(database, table: str, columns: list[str], rows: list[tuple]) -> None:
    """INSERT `rows` in statements of INSERT_CHUNK rows, rendered here: peewee's query builder
    took four fifths of the upgrade's time (measured on SQLite, 3,000 memories posted)."""
    names = ", ".join(f'"{column}"' for column in columns)
    row_marks = "(" + ", ".join([_mark(database)] * len(columns)) + ")"
    for chunk in pw.chunked(rows, INSERT_CHUNK):
        values = ", ".join([row_marks] * len(chunk))
        params = [value for row in chunk for value in row]
        database.execute_sql(f'INSERT INTO "{table}" ({names}) VALUES {values}', params)


def _repost_all(database, counted) -> None:
    """Post every non-ASCII memory again by `counted`, writers of memories waiting (PostgreSQL;
    SQLite's wait anyway): an update of content committed between a page's read and this commit
    would keep the postings written here for the content read."""
    if isinstance(database, pw.PostgresqlDatabase):
        database.execute_sql('LOCK TABLE "memories" IN SHARE MODE')
    after = 0
    while True:
        after, memories = _not_ascii(database, after)
        if after is None:
            return
        if memories:
            _repost(database, memories, counted)


def migrate(migrator, database, *, fake=False):
    """The non-ASCII memories posted again by the tokenizer of 009."""
    migrator.run(_repost_all, database, term_counts)


def rollback(migrator, database, *, fake=False):
    """The non-ASCII memories posted again by the rule before 009."""
    migrator.run(_repost_all, database, term_counts_before_009)
