"""The `--sql` preview: the exact statements of a run, learnt by running it and rolling it back.

Because it really runs, a preview needs the live database and holds the migrations lock while it
runs; on PostgreSQL the DDL also takes table locks that last until the rollback.
"""

from __future__ import annotations

import re

from memoric.errors import MigrationError
from memoric.migrate.runner import Run
from memoric.migrate.targets import Step
from memoric.migrate.transactions import TransactionEnded, intercepted

READ_ONLY_SQL = re.compile(r"^\s*(SELECT|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|END)\b", re.IGNORECASE)
PRAGMA_READ = re.compile(r"^\s*PRAGMA\b[^=]*$", re.IGNORECASE)
PREVIEW_ENDED = (
    "This was a preview, run in one transaction to be rolled back: the migration ended it, so "
    "what ran before in the preview, the migrations listed as completed included, was committed "
    "too (or undone, by a ROLLBACK)"
)


def rolled_back_statements(run: Run, plan: list[Step], *, downgrade: bool) -> list[str]:
    """Run `plan` in a transaction that is rolled back; the statements that would change something.

    Each statement has its parameters inlined as SQL literals, as the server would run it.
    """
    database, dialect = run.database, run.dialect
    statements: list[str] = []

    def record(real, sql, params=None, *args, **kwargs):
        if (not READ_ONLY_SQL.match(sql) or dialect.select_writes(sql)) and not PRAGMA_READ.match(sql):
            statements.append(dialect.render_sql(database, sql, params) if params else sql)
        return real(sql, params, *args, **kwargs)

    with database.atomic() as transaction:
        try:
            with intercepted(database, record):
                run.apply(plan, downgrade=downgrade)
        except MigrationError as exc:
            if isinstance(exc.__cause__, TransactionEnded):
                raise MigrationError(f"{exc}. {PREVIEW_ENDED}") from exc
            raise
        finally:
            transaction.rollback()
    return statements
