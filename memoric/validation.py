"""The input rules of the public API, the same on both dialects.

Every check raises `ValidationError` naming the field and the value at fault, before anything is
written. Text is checked for what both can store (no NUL characters, no lone surrogates); JSON
input has its own rules, in `memoric.json_input`. The bounds below are where one of the two
databases would fail, so a value is either accepted by both dialects alike or refused here by both.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Sequence

from memoric import arguments
from memoric.db.jsoncodec import dump_json
from memoric.errors import ValidationError

MAX_ID_LENGTH = 128  # user_id, namespace, thread_id: varchar(128) on PostgreSQL
MAX_TIER_NAME = 64  # the tier column's width
MAX_LOCK_NAME = 64
MAX_CLUSTER_KEY_LENGTH = 255  # a cluster's topic and category: varchar(255)
DEFAULT_SCORE = 50
# Every integer argument (limit, offset, top_k, ids, batch sizes, day counts) is a signed 64-bit
# int: PostgreSQL's bigint and SQLite's INTEGER end there, and no row count or id goes beyond.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
# The id columns are 64-bit on both dialects (BIGINT on PostgreSQL, SQLite's INTEGER key): an id
# written explicitly (an import) must fit them, as every id the counters hand out does.
MAX_STORED_ID = MAX_INT
# A cluster's `memory_count` is a PostgreSQL `integer` column.
MAX_COUNT = 2**31 - 1
# SQLite refuses a value over 1e9 bytes, PostgreSQL a statement that outgrows its 1 GB buffer:
# a 600-million-character content was stored by SQLite and refused by PostgreSQL. At most 10
# million characters (40 MB of UTF-8) fits both with room.
MAX_CONTENT_LENGTH = 10_000_000
# A JSON column (metadata, related_threads) is JSONB on PostgreSQL, which refuses a value of 256 MB
# or more: JSON text of 43 million characters can make one (an array of small ints takes 6 bytes
# of JSONB a character), while SQLite stores 1 GB. 10 million characters fits both with room.
MAX_JSON_LENGTH = 10_000_000
MAX_QUERY_LENGTH = 10_000  # characters of a keyword recall's query text
# Stored timestamps stay a day inside Python's datetime range, so that a PostgreSQL session in
# any time zone can still hand them back as a datetime.
MIN_TIMESTAMP = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
MAX_TIMESTAMP = dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=dt.UTC)
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
SHOWN_WIDTH = 60
ELLIPSIS = "…"
LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class _BoundedRepr(reprlib.Repr):
    """reprlib's repr (bounded depth and item counts) that never converts a huge int to text."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxlong = SHOWN_WIDTH
        self.maxother = 4 * SHOWN_WIDTH
        self.fillvalue = ELLIPSIS

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 4 * SHOWN_WIDTH:
            return f"<an int of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_BOUNDED_REPR = _BoundedRepr()


def shown(value) -> str:
    """`repr(value)` for an error message: at most SHOWN_WIDTH characters, ending in "…" when cut.

    Safe on any input: deep nesting, huge strings and ints too long to print are never
    converted whole.
    """
    for kind in (str, bytes, bytearray):  # by the type, sliced by it: a subclass's own may lie or fail
        if issubclass(type(value), kind):
            text = repr(kind.__getitem__(value, slice(SHOWN_WIDTH + 1)))
            break
    else:
        text = _BOUNDED_REPR.repr(value)
    return within_width(text)


def within_width(text: str) -> str:
    """`text` for an error message: at most SHOWN_WIDTH characters, ending in "…" when cut."""
    return text if len(text) <= SHOWN_WIDTH else text[: SHOWN_WIDTH - 1] + ELLIPSIS


def is_text(value) -> bool:
    """Whether `value` is a `str` or of a subclass (by its type: `isinstance` takes an object's
    own word through a `__class__` it may fake)."""
    return issubclass(type(value), str)


def as_plain_str(value: str) -> str:
    """`value` (`is_text`) as a `str` itself: a subclass's characters, without its hash,
    comparisons and methods (which may be missing or lie), so that what is checked is what is
    stored."""
    return str.__str__(value)


def clean_text(field: str, value, *, max_length: int | None = None) -> str:
    """A non-empty, storable string (no NUL, valid Unicode), at most `max_length` characters."""
    if not is_text(value):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}")
    value = as_plain_str(value)
    if not value or value.isspace():
        raise ValidationError(f"{field} must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{field} must be at most {max_length} characters, got {len(value)}")
    if not is_storable(value):
        check_storable(field, value)
    return value


def optional_text(field: str, value, *, max_length: int | None = MAX_ID_LENGTH) -> str | None:
    return None if value is None else clean_text(field, value, max_length=max_length)


def cluster_key(field: str, value) -> str:
    """A cluster's topic or category: a storable string of at most MAX_CLUSTER_KEY_LENGTH characters."""
    return clean_text(field, value, max_length=MAX_CLUSTER_KEY_LENGTH)


def content(value, field: str = "content") -> str:
    """A memory's text: non-empty, storable, at most MAX_CONTENT_LENGTH characters."""
    return clean_text(field, value, max_length=MAX_CONTENT_LENGTH)


def user_id(value) -> str:
    return clean_text("user_id", value, max_length=MAX_ID_LENGTH)


def lock_name(value) -> str:
    """A lock's name: ASCII letters, digits, `_` and `-`, starting with a letter or digit, at most
    MAX_LOCK_NAME characters; one name takes one lock on both dialects. On SQLite it names the
    lock file `<database>.<name>.lock`: no separator, and no `.`, so that no other database's
    lock (`a.db` with `b.c`, `a.db.b` with `c`) has the same file."""
    name = clean_text("lock name", value, max_length=MAX_LOCK_NAME)
    if not LOCK_NAME.fullmatch(name):
        raise ValidationError(
            f"lock name {shown(name)} may hold only ASCII letters, digits, '_' and '-', "
            "and must start with a letter or digit"
        )
    return name


def one_of(field: str, value, choices: Sequence[str]) -> str:
    """`value` as the plain `str` of one of `choices` (themselves plain `str`)."""
    if is_text(value) and (name := as_plain_str(value)) in choices:
        return name
    raise ValidationError(f"{field} must be one of {list(choices)}, got {shown(value)}")


def tier_names(value) -> tuple[str, ...]:
    """A store's tiers: one or more distinct names (non-empty strings), as plain `str`."""
    if is_text(value) or not isinstance(value, Iterable):
        raise ValidationError(f"tiers must be a list of tier names, got {type(value).__name__}")
    names = tuple(
        clean_text(f"tiers[{index}]", name, max_length=MAX_TIER_NAME) for index, name in enumerate(value)
    )
    if not names or len(set(names)) < len(names):
        raise ValidationError(f"tiers must be one or more distinct names, got {shown(list(names))}")
    return names


def tier(value, tiers: Sequence[str]) -> str:
    return one_of("tier", value, tiers)


def score(value) -> int:
    if value is None:
        return DEFAULT_SCORE
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"score must be an int from 0 to 100, got {shown(value)}")
    if not 0 <= value <= 100:
        raise ValidationError(f"score must be from 0 to 100, got {shown(value)}")
    return value


def thread_list(field: str, value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):  # a dict: its keys
        raise ValidationError(f"{field} must be a list of thread ids, got {type(value).__name__}")
    threads = [clean_text(f"{field}[{i}]", item, max_length=MAX_ID_LENGTH) for i, item in enumerate(value)]
    return json_length(field, threads)


def json_length(field: str, document):
    """`document` if memoric writes it in at most MAX_JSON_LENGTH characters of JSON."""
    if document:
        length = len(dump_json(document))
        if length > MAX_JSON_LENGTH:
            raise ValidationError(
                f"{field} takes {length:,} characters as JSON; at most {MAX_JSON_LENGTH:,} fit both dialects"
            )
    return document


def integer(field: str, value, *, minimum: int = MIN_INT, maximum: int = MAX_INT) -> int:
    """An int (not a bool) from `minimum` to `maximum`; the shared rule of every integer argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an int, got {shown(value)}")
    if not minimum <= value <= maximum:
        raise ValidationError(f"{field} must be an int from {minimum} to {maximum}, got {shown(value)}")
    return value


def memory_id(value, field: str = "memory_id") -> int:
    """An id to look up: any signed 64-bit int (ids that do not exist are simply not found)."""
    return integer(field, value)


def stored_id(value, field: str = "id") -> int:
    """An id to write: from 1 to MAX_STORED_ID, what the id columns of both dialects hold."""
    return integer(field, value, minimum=1, maximum=MAX_STORED_ID)


def memory_ids(value) -> list[int]:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ValidationError(f"memory_ids must be a list of ints, got {type(value).__name__}")
    return [memory_id(item, f"memory_ids[{i}]") for i, item in enumerate(value)]


def count(field: str, value, *, allow_none: bool = False, maximum: int = MAX_INT) -> int | None:
    """A non-negative int (limit, offset, batch size) of at most `maximum`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{field} must be a non-negative int, got {shown(value)}")
    if value > maximum:
        raise ValidationError(f"{field} must be at most {maximum}, got {shown(value)}")
    return value


def non_negative_number(field: str, value) -> float:
    """A non-negative number (an int within the signed 64-bit range, or a finite float)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or value < 0:
        raise ValidationError(f"{field} must be a non-negative number, got {shown(value)}")
    if isinstance(value, int):
        count(field, value)
    return value


def days(value) -> float:
    """A non-negative number of days."""
    return non_negative_number("days", value)


def cutoff(now: dt.datetime, days_before: float) -> dt.datetime:
    """`now` minus `days_before` days, or EARLIEST when that lies before any datetime.

    A cut-off before the earliest representable instant means nothing is that old: no stored
    timestamp lies before EARLIEST. Every "older than N days" query takes its cut-off here.
    """
    now = _as_utc("now", now)
    if days_before >= (now - EARLIEST) / dt.timedelta(days=1):
        return EARLIEST
    return now - dt.timedelta(days=days_before)


def boolean(field: str, value) -> bool:
    """An option that is True or False: None is refused too (a default of True read as false
    would leave out what it turns on, silently)."""
    if not isinstance(value, bool):
        raise ValidationError(f"{field} must be True or False, got {shown(value)}")
    return value


def flag(field: str, value) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValidationError(f"{field} must be True, False or None, got {shown(value)}")
    return value


def timestamp(field: str, value) -> dt.datetime | None:
    """None, or the datetime as aware UTC (naive means UTC) from MIN_TIMESTAMP to MAX_TIMESTAMP."""
    if value is None:
        return None
    value = _as_utc(field, value)
    if not MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
        raise ValidationError(
            f"{field} must lie from {MIN_TIMESTAMP.date()} to {MAX_TIMESTAMP.date()} (UTC), "
            f"got {value.isoformat()}"
        )
    return value


def _as_utc(field: str, value) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError(f"{field} {value.isoformat()} lies outside the datetime range in UTC") from None


def is_storable(text: str) -> bool:
    """The fast form of `check_storable` for the common case (no message, no exception)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(field: str) -> str:
    """A field or JSON path for a message: its start and end when it is long (deep nesting)."""
    if len(field) <= 2 * SHOWN_WIDTH:
        return field
    return f"{field[:SHOWN_WIDTH]}{ELLIPSIS}{field[-SHOWN_WIDTH + 1 :]}"


def check_storable(field: str, text: str) -> None:
    """ValidationError naming `field` when `text` holds what PostgreSQL cannot store."""
    if "\x00" in text:
        raise ValidationError(f"{shown_path(field)} contains a NUL character, which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problem = f"is not valid Unicode (lone surrogate at {exc.start})"
        raise ValidationError(f"{shown_path(field)} {problem}") from None


def utc_now() -> dt.datetime:
    """The default clock: now, in UTC."""
    return dt.datetime.now(dt.UTC)


def checked_clock(clock: Callable[[], dt.datetime]) -> Callable[[], dt.datetime]:
    """`clock`, each reading checked like a timestamp argument (aware UTC, years 1 to 9999).

    A clock outside that range would store times no export can load back; its reading is a
    ValidationError before anything is written. None is the default clock (UTC now).
    """
    clock = arguments.function(
        "clock", utc_now if clock is None else clock, "returning a datetime", arguments=0
    )

    def now() -> dt.datetime:
        return timestamp("the clock's time", clock())

    return now
