"""The input rules of the public API, the same on both dialects.

Every check raises `ValidationError` naming the field and the value at fault, before anything is
written. JSON values are checked for what PostgreSQL's JSONB can store: no NUL characters, no
lone surrogates, no NaN or infinity, only str/int/float/bool/None/list/dict with string keys.
"""

from __future__ import annotations

import datetime as dt
import math
import reprlib
from collections.abc import Iterable, Sequence

from memoric.errors import ValidationError

MAX_ID_LENGTH = 128
MAX_JSON_DEPTH = 64
DEFAULT_SCORE = 50
SHOWN_WIDTH = 60
ELLIPSIS = "…"


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
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[: SHOWN_WIDTH + 1])
    else:
        text = _BOUNDED_REPR.repr(value)
    return text if len(text) <= SHOWN_WIDTH else text[: SHOWN_WIDTH - 1] + ELLIPSIS


def clean_text(field: str, value, *, max_length: int | None = None) -> str:
    """A non-empty, storable string (no NUL, valid Unicode), at most `max_length` characters."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}")
    if not value or value.isspace():
        raise ValidationError(f"{field} must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{field} must be at most {max_length} characters, got {len(value)}")
    if not _is_storable(value):
        _check_storable(field, value)
    return value


def optional_text(field: str, value, *, max_length: int | None = MAX_ID_LENGTH) -> str | None:
    return None if value is None else clean_text(field, value, max_length=max_length)


def user_id(value) -> str:
    return clean_text("user_id", value, max_length=MAX_ID_LENGTH)


def tier(value, tiers: Sequence[str]) -> str:
    if isinstance(value, str) and value in tiers:
        return value
    raise ValidationError(f"tier must be one of {list(tiers)}, got {shown(value)}")


def score(value) -> int:
    if value is None:
        return DEFAULT_SCORE
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"score must be an int from 0 to 100, got {shown(value)}")
    if not 0 <= value <= 100:
        raise ValidationError(f"score must be from 0 to 100, got {shown(value)}")
    return value


def metadata(value, field: str = "metadata") -> dict:
    """A JSON object with string keys (None means `{}`)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be a dict, got {type(value).__name__}")
    if not _is_plain_json(value, depth=0):
        _check_json(field, value, depth=0)  # the slow walk that names what is wrong, and where
    return value


def metadata_filter(value) -> dict | None:
    """A containment filter: None or a JSON object; `{}` means no filter."""
    if value is None:
        return None
    return metadata(value, field="where_metadata") or None


def thread_list(field: str, value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValidationError(f"{field} must be a list of thread ids, got {type(value).__name__}")
    return [clean_text(f"{field}[{i}]", item, max_length=MAX_ID_LENGTH) for i, item in enumerate(value)]


def memory_id(value, field: str = "memory_id") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an int, got {shown(value)}")
    return value


def memory_ids(value) -> list[int]:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise ValidationError(f"memory_ids must be a list of ints, got {type(value).__name__}")
    return [memory_id(item, f"memory_ids[{i}]") for i, item in enumerate(value)]


def count(field: str, value, *, allow_none: bool = False) -> int | None:
    """A non-negative int (limit, offset)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{field} must be a non-negative int, got {shown(value)}")
    return value


def days(value) -> float:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or value < 0:
        raise ValidationError(f"days must be a non-negative number, got {shown(value)}")
    return value


def flag(field: str, value) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValidationError(f"{field} must be True, False or None, got {shown(value)}")
    return value


def timestamp(field: str, value) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"{field} must be a datetime, got {type(value).__name__}")
    return value


def _is_storable(text: str) -> bool:
    """The fast form of `_check_storable` for the common case (no message, no exception)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_plain_json(value: dict | list, depth: int) -> bool:
    """Whether a dict or list is certainly valid JSON of plain types, checked without building
    error paths (bulk inserts call this per row); False sends it to `_check_json` for the verdict.
    """
    if depth >= MAX_JSON_DEPTH:  # its items would lie deeper than the limit: let the slow walk judge
        return False
    if type(value) is dict:
        try:
            keys = "".join(value)  # every key a str, checked in one C call
        except TypeError:
            return False
        if not _is_storable(keys):
            return False
        value = value.values()
    for item in value:
        kind = type(item)
        if kind is str:
            if (not item.isascii() or "\x00" in item) and not _is_storable(item):
                return False
        elif kind is dict or kind is list:
            if not _is_plain_json(item, depth + 1):
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind not in _PLAIN_SCALARS:
            return False
    return True


_PLAIN_SCALARS = frozenset({int, bool, type(None)})


def _path(field: str) -> str:
    """A field or JSON path for a message: its start and end when it is long (deep nesting)."""
    if len(field) <= 2 * SHOWN_WIDTH:
        return field
    return f"{field[:SHOWN_WIDTH]}{ELLIPSIS}{field[-SHOWN_WIDTH + 1 :]}"


def _check_storable(field: str, text: str) -> None:
    if "\x00" in text:
        raise ValidationError(f"{_path(field)} contains a NUL character, which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problem = f"is not valid Unicode (lone surrogate at {exc.start})"
        raise ValidationError(f"{_path(field)} {problem}") from None


def _check_json(field: str, value, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(f"{_path(field)} is nested deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{_path(field)} holds {value!r}; JSON numbers must be finite")
        return
    if isinstance(value, str):
        _check_storable(field, value)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(f"{field}[{index}]", item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{_path(field)} has a non-string key {shown(key)}")
            _check_storable(f"{field} key {shown(key)}", key)
            _check_json(f"{field}[{shown(key)}]", item, depth + 1)
        return
    kind = type(value).__name__
    raise ValidationError(f"{_path(field)} holds a {kind} ({shown(value)}), which is not JSON")
