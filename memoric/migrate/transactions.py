"""A migration's transaction: one, opened and closed by peewee-migrate around the migration and its
history row, which the migration may not end or begin anew itself.

`transaction_kept` refuses, before it runs, a statement sent through `execute_sql` that would end
or begin a transaction, and finds afterwards, by a savepoint of its own, one sent past it (the
driver's cursor, several statements in one string). `intercepted` routes one thread's statements
through a handler (previews record them, replays drop them), `transaction_calls` its calls of
`database.commit()` and the like.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
from collections.abc import Callable, Iterator

import peewee

from memoric.db.catalogue import SQL_GAP
from memoric.errors import MigrationError


@contextlib.contextmanager
def routed(database: peewee.Database, method: str, handler: Callable) -> Iterator[None]:
    """Route this thread's calls of `database.<method>` through `handler(real, *args, **kwargs)`
    for the block; other threads keep the real method."""
    real = getattr(database, method)
    owner = threading.get_ident()
    own = vars(database).get(method)

    def call(*args, **kwargs):
        if threading.get_ident() != owner:
            return real(*args, **kwargs)
        return handler(real, *args, **kwargs)

    setattr(database, method, call)
    try:
        yield
    finally:
        if own is None:
            delattr(database, method)
        else:
            setattr(database, method, own)


def intercepted(database: peewee.Database, handler: Callable) -> contextlib.AbstractContextManager:
    """Route this thread's `execute_sql` calls on `database` through `handler(real, sql, params)`.

    Other threads keep the real method: peewee-migrate's own replay patches
    `peewee.Database.execute_sql` for the whole process, which would swallow their writes.
    """
    return routed(database, "execute_sql", handler)


class TransactionEnded(MigrationError):
    """A migration ended, by a COMMIT or ROLLBACK of its own, the transaction it runs in: what it
    wrote up to then was committed or undone, and what it wrote after, statement by statement."""


# memoric's savepoint around a migration: its name ends in a random part each time, so that a
# migration cannot take one of the same name after a COMMIT of its own and pass for having kept
# to its transaction.
MIGRATION_SAVEPOINT = "memoric_migration"
# The statements that end or begin a transaction, by their first words, after any comments:
# ROLLBACK TO is a savepoint's; PREPARE TRANSACTION hands the transaction over to two-phase commit.
GAP = f"{SQL_GAP}+"  # what may stand between two words: spaces, comments
TRANSACTION_CONTROL = re.compile(
    rf"(?:{GAP})?(BEGIN|START|COMMIT|END|ROLLBACK(?!{GAP}(?:(?:WORK|TRANSACTION){GAP})?TO\b)|ABORT"
    rf"|PREPARE(?={GAP}TRANSACTION\b))\b",
    re.IGNORECASE | re.DOTALL,
)
# A RELEASE of, or ROLLBACK TO, memoric's own savepoint: it would hide from memoric whether the
# migration kept to its transaction (and a ROLLBACK TO would undo part of a preview's record).
OWN_SAVEPOINT = re.compile(
    rf"(?:{GAP})?(RELEASE|ROLLBACK(?:{GAP}(?:WORK|TRANSACTION))?{GAP}TO)(?:{GAP}SAVEPOINT)?{GAP}"
    rf'"?{MIGRATION_SAVEPOINT}\w*"?(?!\w)',
    re.IGNORECASE | re.DOTALL,
)


@contextlib.contextmanager
def transaction_kept(database: peewee.Database, sent: list[str]) -> Iterator[None]:
    """Run the block, part of a migration, inside the migration's transaction: a statement that
    would end or begin a transaction is refused before it runs (the migration then fails and is
    undone); one the check cannot see (the driver's own `commit()`, several statements in one
    string) is found afterwards, by the savepoint taken here, and raises TransactionEnded.
    The statements the block sends through `execute_sql` are appended to `sent` as they run."""
    savepoint = f"{MIGRATION_SAVEPOINT}_{secrets.token_hex(8)}"
    database.execute_sql(f'SAVEPOINT "{savepoint}"')

    def checked(real, sql, params=None, *args, **kwargs):
        _refuse_transaction_control(sql)
        if isinstance(sql, str):
            sent.append(sql)
        try:
            return real(sql, params, *args, **kwargs)
        except (IndexError, TypeError) as exc:  # the driver read a `%` as a parameter mark
            if isinstance(sql, str) and "%" in sql and not params:
                raise MigrationError(
                    f"the database driver read a % in a statement of it as a parameter mark ({exc}): "
                    "PostgreSQL's does; write %% for a literal % there"
                ) from exc
            raise

    try:
        with intercepted(database, checked), transaction_calls(database, _refuse_transaction_call):
            yield
    except BaseException as exc:
        if _savepoint_lost(database, savepoint, undo=True):
            raise TransactionEnded() from exc
        raise
    if _savepoint_lost(database, savepoint):
        raise TransactionEnded()


TRANSACTION_CALLS = ("begin", "commit", "rollback")


@contextlib.contextmanager
def transaction_calls(database: peewee.Database, instead: Callable[[str], None]) -> Iterator[None]:
    """`database.begin()`, `.commit()` and `.rollback()` in this thread replaced by `instead(name)`
    for the block: they reach the driver without passing `execute_sql`. Other threads keep them."""

    def replaced_by_instead(name: str) -> Callable:
        def handler(real, *args, **kwargs):
            return instead(name)

        return handler

    with contextlib.ExitStack() as stack:
        for name in TRANSACTION_CALLS:
            stack.enter_context(routed(database, name, replaced_by_instead(name)))
        yield


def _refuse_transaction_call(name: str) -> None:
    raise MigrationError(
        f"it calls database.{name}() itself, which would end or begin a transaction: memoric runs "
        "each migration, with its history row, in one transaction of its own; take the call out"
    )


def _refuse_transaction_control(sql) -> None:
    """MigrationError for a statement that would end or begin a transaction, or touch memoric's
    own savepoint."""
    if not isinstance(sql, str):
        return
    own = OWN_SAVEPOINT.match(sql)
    if own:
        raise MigrationError(
            f"it runs {' '.join(own.group(1).upper().split())} on memoric's own savepoint "
            f"{MIGRATION_SAVEPOINT}, which memoric needs to tell whether the migration kept to its "
            "transaction: use a savepoint of another name"
        )
    found = TRANSACTION_CONTROL.match(sql)
    if found:
        raise MigrationError(
            f"it runs {found.group(1).upper()} itself, which would end or begin a transaction: memoric "
            "runs each migration, with its history row, in one transaction of its own; take the "
            "statement out"
        )


def _savepoint_lost(database: peewee.Database, savepoint: str, *, undo: bool = False) -> bool:
    """Release the migration's savepoint (rolled back to first with `undo`); whether it was gone,
    the transaction having been ended, as far as a live connection can tell."""
    try:
        if undo:
            database.execute_sql(f'ROLLBACK TO SAVEPOINT "{savepoint}"')
        database.execute_sql(f'RELEASE SAVEPOINT "{savepoint}"')
    except peewee.DatabaseError:
        return not database.connection_lost(probe=True)
    return False
