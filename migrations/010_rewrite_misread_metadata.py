"""010: SQLite only: metadata SQLite's JSON functions would read unlike memoric, written again.

Another writer than memoric (the `sqlite3` shell, Python's `json.dumps` with its default
`ensure_ascii=True`) could store a member name with an escape where none is needed
(`"caf\\u00e9"`, `"a\\/b"`), which SQLite's JSON paths do not match, or name a member twice in one
object, where SQLite reads the first and memoric and PostgreSQL the last: SQLite's filters, topics
and clusters then disagreed with what memoric returns for that memory. From 010 on the triggers
of the metadata keys refuse such writes; this upgrade writes the metadata of the memories already
stored so as memoric reads it (its reader, then its writer), pages of BUILD_BATCH in id order,
in the migration's one transaction. A memory memoric reads the same way is not touched.

The rollback changes nothing: the text written is what memoric read from the text before (which
is not kept), and a memoric of any version reads it the same. PostgreSQL needs nothing: JSONB
keeps the last of a member named twice and no escapes.
"""

import peewee as pw

from memoric.db.dialects.sqlite_keys import member_twice, needless_escape
from memoric.db.jsoncodec import dump_json, load_json

BUILD_BATCH = 1000  # memories read per page


def _misread(database, after: int) -> list[tuple[int, str]]:
    """The next page of (id, metadata) of the memories whose metadata SQLite misreads."""
    misread = f"{needless_escape('metadata')} OR {member_twice('metadata')}"
    return database.execute_sql(
        'SELECT "id", "metadata" FROM "memories" WHERE "id" > ? '
        f'AND ({misread}) ORDER BY "id" LIMIT {BUILD_BATCH}',
        (after,),
    ).fetchall()


def _refuse_unreadable(database) -> None:
    """ValueError naming the memories whose metadata SQLite's JSON functions cannot read at all."""
    found = database.execute_sql(
        'SELECT "id" FROM "memories" WHERE NOT json_valid("metadata") ORDER BY "id" LIMIT 5'
    ).fetchall()
    if found:
        raise ValueError(
            f"memories {', '.join(str(memory_id) for (memory_id,) in found)} hold metadata SQLite does "
            "not read as JSON (written outside memoric?): correct those rows, then upgrade"
        )


def _as_memoric_reads_it(memory_id: int, text: str) -> str:
    """The metadata `text` written again by memoric's writer from what its reader makes of it
    (checked to be UTF-8, which a lone surrogate escape such as \\ud800 decodes to none of)."""
    try:
        rewritten = dump_json(load_json(text))
        rewritten.encode("utf-8")
        return rewritten
    except (ValueError, UnicodeError) as exc:
        raise ValueError(
            f"memory {memory_id}'s metadata cannot be written again as memoric reads it ({exc}; "
            "written outside memoric?): correct that row, then upgrade"
        ) from None


def _rewrite_all(database) -> None:
    _refuse_unreadable(database)
    after = 0
    while page := _misread(database, after):
        for memory_id, text in page:
            database.execute_sql(
                'UPDATE "memories" SET "metadata" = ? WHERE "id" = ?',
                (_as_memoric_reads_it(memory_id, text), memory_id),
            )
        after = page[-1][0]


def migrate(migrator, database, *, fake=False):
    """SQLite: the misread metadata written again as memoric reads it."""
    if isinstance(database, pw.SqliteDatabase):
        migrator.run(_rewrite_all, database)


def rollback(migrator, database, *, fake=False):
    """Nothing: memoric of any version reads the text written as it read the text before."""
