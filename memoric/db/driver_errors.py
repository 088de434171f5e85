"""Driver errors as memoric's: which errors come from the database or its driver, and the
`MemoricError` (or `CommitInDoubt`) each becomes, its message masked and saying when the
connection was lost."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable
from typing import Any

import peewee

from memoric.db.masking import mask_password
from memoric.db.recovery import COMMIT_IN_DOUBT
from memoric.errors import CommitInDoubt, MemoricError, message_lines


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (drivers add hints and context on later lines)."""
    try:
        text = str(exc).strip()
    except Exception:  # an exception's own __str__ may fail too
        return f"{type(exc).__name__} (its message could not be read)"
    return message_lines(text)[0] if text else type(exc).__name__


# peewee wraps the driver's errors in statements; a row the driver cannot read fails later, as
# the driver's own error (sqlite3, psycopg2) or a ValueError of its converters (a BC date, text
# that is not UTF-8).
DRIVER_ERRORS = (peewee.PeeweeException, sqlite3.Error, ValueError, OverflowError)
SQLITE_NOT_UTF8 = "Could not decode to UTF-8 column"  # the sqlite3 module's error for such text
NAMED_COLUMN = re.compile(rf"{SQLITE_NOT_UTF8} '\w+'")  # a column by its name (not an expression)
LOST_NOTE = " (the connection was lost; the next call reconnects)"
IN_DOUBT_NOTE = (
    " (the connection was lost during COMMIT: whether the change was saved is not known, so look "
    "before retrying, which could make it twice; the next call reconnects)"
)


class DriverErrors:
    """A block in which driver errors become MemoricError(describe(error)), the cause chained."""

    __slots__ = ("describe",)

    def __init__(self, describe: Callable[[BaseException], str]) -> None:
        self.describe = describe

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        """Raise the MemoricError for a driver error; let anything else (memoric's own) pass."""
        if is_driver_error(error):
            raise (CommitInDoubt if commit_in_doubt(error) else MemoricError)(self.describe(error)) from error
        return False


def commit_in_doubt(error: BaseException) -> bool:
    """Whether `error` is a COMMIT's that lost the connection: it may have gone through or not."""
    return getattr(error, COMMIT_IN_DOUBT, False) is True


def is_driver_error(error: BaseException | None) -> bool:
    """Whether `error` comes from the database or its driver (memoric's own errors do not)."""
    if error is None or isinstance(error, MemoricError):
        return False
    return isinstance(error, DRIVER_ERRORS) or type(error).__module__.startswith("psycopg2")


def driver_errors(message: Callable[[Any, str, BaseException], str]):
    """A method decorator turning driver errors into MemoricError, the cause chained.

    `message(instance, method_name, error)` words the MemoricError; memoric's own errors pass.
    """

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            with DriverErrors(functools.partial(message, self, method.__name__)):
                return method(self, *args, **kwargs)

        return wrapper

    return decorate


def failure_reason(database: peewee.Database, exc: BaseException, url: str) -> str:
    """A driver error's first line, the passwords of `url` masked, saying so when it lost the connection."""
    reason = mask_password(first_line(exc), url)
    if isinstance(exc, UnicodeDecodeError):
        reason = f"a stored text is not UTF-8 ({reason}; written outside memoric?): correct that row"
    elif reason.startswith(SQLITE_NOT_UTF8) and not NAMED_COLUMN.match(reason):  # quoting memoric's SQL
        reason = (
            "a stored text is not UTF-8 (SQLite's JSON functions make a lone surrogate escape such as "
            "\\ud800 in metadata into bytes UTF-8 does not have; written outside memoric?): correct that row"
        )
    elif isinstance(exc, (ValueError, OverflowError)):
        reason = f"a stored value memoric cannot read ({reason}; written outside memoric?): correct that row"
    if commit_in_doubt(exc):
        return reason + IN_DOUBT_NOTE
    return reason + LOST_NOTE if database.connection_lost(probe=True) else reason


def store_call_failed(store, method_name: str, exc: BaseException) -> str:
    """What every failed store call goes through: the store is told to ask again, at its next
    write, whether the postings tables exist (the failure may come from a schema changed under
    it: a downgrade that dropped them); the message says what failed, on which dialect, and why
    (saying so when the connection was lost)."""
    store.postings_ready = False
    return f"{method_name} failed on {store.dialect.name}: {failure_reason(store.database, exc, store.dsn)}"


# The decorator of every store query (a method, or a function taking the store first).
translate_errors = driver_errors(store_call_failed)
