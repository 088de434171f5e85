"""006: text postings for keyword recall: `memory_terms` and `memory_documents`, built for every memory.

`memory_terms` holds one row per memory and term (how often the term occurs, the memory's length
in terms) and `memory_documents` one row per memory (its length); both carry the memory's user
and namespace, so a recall reads only its own user's postings for the query's terms. The terms
come from memoric's tokenizer (`memoric.text`), by its rule of this version (009 changed it
for text that is not ASCII), which neither database can run, so the upgrade
reads the memories in pages of BUILD_BATCH in id order and writes their postings, all in the
migration's one transaction (a failure leaves neither tables nor postings), while writers of
memories wait. Every later write of
memoric keeps them in step (`memoric.db.postings`).
The rollback drops both tables: they hold nothing that is not derived from the memories, so it
needs no confirmation.
"""

import peewee as pw

from memoric.db.postings import DOCUMENT_COLUMNS, TERM_COLUMNS, posting_rows
from memoric.text import term_counts_before_009

BUILD_BATCH = 1000  # memories read per page while building
INSERT_CHUNK = 500  # posting rows per INSERT statement (6 parameters each, under SQLite's limit)


class MemoryTerm(pw.Model):
    memory_id = pw.BigIntegerField()
    user_id = pw.CharField(max_length=128)
    namespace = pw.CharField(max_length=128, null=True)
    term = pw.CharField(max_length=64)
    tf = pw.IntegerField()
    dl = pw.IntegerField()

    class Meta:
        table_name = "memory_terms"
        primary_key = pw.CompositeKey("memory_id", "term")


class MemoryDocument(pw.Model):
    memory_id = pw.BigIntegerField(primary_key=True)
    user_id = pw.CharField(max_length=128)
    namespace = pw.CharField(max_length=128, null=True)
    length = pw.IntegerField()

    class Meta:
        table_name = "memory_documents"


MemoryTerm.add_index(
    MemoryTerm.user_id,
    MemoryTerm.namespace,
    MemoryTerm.term,
    MemoryTerm.memory_id,
    MemoryTerm.tf,
    MemoryTerm.dl,
    name="idx_memory_terms_lookup",
)
MemoryDocument.add_index(
    MemoryDocument.user_id, MemoryDocument.namespace, MemoryDocument.length, name="idx_memory_documents_scope"
)


def _insert(database, table: str, columns: list[str], rows: list[tuple]) -> None:
    """INSERT `rows` into `table` in statements of INSERT_CHUNK rows."""
    target = pw.Table(table, columns)
    for chunk in pw.chunked(rows, INSERT_CHUNK):
        database.execute(target.insert(chunk, columns=[getattr(target, column) for column in columns]))


def _build(database) -> None:
    """Write the postings of every memory, a page of BUILD_BATCH memories at a time (anew where
    the tables were there already, built from the models).

    On PostgreSQL the memories' writers wait from here to the commit (SQLite's do anyway): a
    memory saved meanwhile would be missed by these reads, and saved without postings by a writer
    that found no tables (memoric decides that under the lock every write takes).
    """
    if isinstance(database, pw.PostgresqlDatabase):
        database.execute_sql('LOCK TABLE "memories" IN SHARE MODE')
    database.execute_sql('DELETE FROM "memory_terms"')
    database.execute_sql('DELETE FROM "memory_documents"')
    after = 0
    while True:
        page = database.execute_sql(
            'SELECT "id", "user_id", "namespace", "content" FROM "memories" WHERE "id" > '
            + ("%s" if isinstance(database, pw.PostgresqlDatabase) else "?")
            + ' ORDER BY "id" LIMIT '
            + str(BUILD_BATCH),
            (after,),
        ).fetchall()
        if not page:
            return
        memories = [dict(zip(("id", "user_id", "namespace", "content"), row, strict=True)) for row in page]
        terms, documents = posting_rows(memories, term_counts_before_009)
        _insert(database, "memory_documents", DOCUMENT_COLUMNS, documents)
        _insert(database, "memory_terms", TERM_COLUMNS, terms)
        after = page[-1][0]


def migrate(migrator, database, *, fake=False):
    """Create both tables and their indexes, then build the postings of the memories there are."""
    migrator.create_model(MemoryTerm)
    migrator.create_model(MemoryDocument)
    migrator.run(_build, database)


def rollback(migrator, database, *, fake=False):
    """Drop both tables (derived from the memories: nothing is lost)."""
    migrator.remove_model("memory_documents")
    migrator.remove_model("memory_terms")
