"""The JSON input rules: metadata documents, containment filters and JSON text from outside.

A document is accepted only when both dialects store and match it alike: plain str/int/float/
bool/None/list/dict with string keys, no NUL characters or lone surrogates, no NaN or infinity,
ints Python's JSON can carry, at most MAX_JSON_DEPTH levels and MAX_JSON_LENGTH characters as
written. Input of subclasses comes back as a plain copy, so that what is checked is what is stored.
"""

from __future__ import annotations

import decimal
import functools
import json
import math
import sys
from collections.abc import Callable

from memoric.db.jsoncodec import dump_json
from memoric.errors import ValidationError
from memoric.validation import (
    MAX_JSON_LENGTH,
    as_plain_str,
    check_storable,
    is_storable,
    is_text,
    json_length,
    shown,
    shown_path,
    within_width,
)

MAX_JSON_DEPTH = 64
# Python converts an int to and from text only up to 4300 digits (its default limit), so a
# metadata int must be below 10**4300 in magnitude to be written as JSON and read back.
MAX_JSON_INT_DIGITS = 4300
JSON_INT_LIMIT = 10**MAX_JSON_INT_DIGITS
_JSON_INT_FLOOR = -JSON_INT_LIMIT  # negated once here, not per value checked


def metadata(value, field: str = "metadata") -> dict:
    """A JSON object with string keys (None means `{}`), of plain types: one holding subclasses
    of dict, list, str, int or float comes back as a copy of plain values, so that what is
    checked is what is stored, and both dialects match it alike."""
    if value is None:
        return {}
    if not issubclass(type(value), dict):
        raise ValidationError(f"{field} must be a dict, got {type(value).__name__}")
    width = _plain_json_width(value, depth=0)
    if width is None:
        return json_length(field, _plain_json(field, value, depth=0))  # the slow walk names what is wrong
    return value if width <= MAX_JSON_LENGTH else json_length(field, value)


def metadata_filter(value, field: str = "where_metadata") -> dict | None:
    """A containment filter: None or a JSON object; `{}` means no filter. Faults name `field`,
    the argument as its caller calls it."""
    if value is None:
        return None
    return metadata(value, field=field) or None


def from_text(field: str, text: str):
    """Parse JSON text from outside (a CLI option); ValidationError where memoric could not store it.

    Python's json raises RecursionError on deep nesting and a plain ValueError on an int of more
    than 4300 digits, and keeps the last of a key given twice; each becomes a ValidationError
    naming `field`.
    """

    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_JSON_INT_DIGITS:
            raise ValidationError(
                f"{field} holds an int of {len(digits.lstrip('-'))} digits; "
                f"JSON ints may have at most {MAX_JSON_INT_DIGITS}"
            )
        return int(digits)

    def given_twice(key: str) -> ValidationError:
        return ValidationError(f"{field} gives the key {shown(key)} twice")

    unique_keys = functools.partial(unique_object, given_twice=given_twice)
    try:
        return json.loads(text, parse_int=parse_int, parse_float=exact_float, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{field} is not valid JSON: {exc}") from None
    except InexactNumber as exc:
        raise ValidationError(f"{field} holds {exc}") from None
    except RecursionError:
        raise ValidationError(f"{field} is nested deeper than {MAX_JSON_DEPTH} levels") from None


class InexactNumber(ValueError):
    """A JSON number with a fraction or exponent that its float, written back, does not say."""

    def __init__(self, text: str, value: float) -> None:
        number = within_width(text)
        stored = value + 0.0  # -0.0 is stored as 0.0
        super().__init__(f"the number {number}, which a float would change: it would be stored as {stored}")


def exact_float(text: str) -> float:
    """The float a JSON number stands for (json's `parse_float`); InexactNumber where that float,
    written back as memoric writes it (the shortest text that reads back as it), is another
    number: more digits than a float keeps, beyond its range or below its smallest, which storing
    would change silently. `1E2` is 100.0 and `0.10` is 0.1: the same numbers."""
    value = float(text)
    if not math.isfinite(value) or decimal.Decimal(repr(value)) != decimal.Decimal(text):
        raise InexactNumber(text, value)
    return value


def unique_object(pairs: list[tuple[str, object]], given_twice: Callable[[str], Exception]) -> dict:
    """The JSON object of `pairs` (json's `object_pairs_hook`); `given_twice(key)` raised for the
    first key that comes twice, which json would otherwise keep the last of silently."""
    found = dict(pairs)
    if len(found) < len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise given_twice(key)
            seen.add(key)
    return found


_STR = frozenset({str})
_ESCAPED = len("\\u0000")  # the most characters JSON writes one character of a string in
_WIDEST_INT = len(str(_JSON_INT_FLOOR + 1))
_WIDEST_FLOAT = len(dump_json(-sys.float_info.max))  # written out digit by digit, with `.0`


def _plain_json_width(value: dict | list, depth: int) -> int | None:
    """At least as many characters as memoric writes a dict or list in, if it is certainly valid
    JSON of plain types, checked without building error paths (bulk inserts call this per row,
    and the bound spares them writing the document out to measure it); None sends it to
    `_plain_json` for the verdict.
    """
    if depth >= MAX_JSON_DEPTH:  # its items would lie deeper than the limit: let the slow walk judge
        return None
    if type(value) is dict:
        try:
            keys = "".join(value)  # every key a str, checked in one C call
        except TypeError:
            return None
        if not is_storable(keys) or not {*map(type, value)} <= _STR:  # str itself: no subclass
            return None
        width = _ESCAPED * len(keys) + len('"":,') * len(value) + len("{}")
        value = value.values()
    elif type(value) is list:
        width = len(",") * len(value) + len("[]")
    else:
        return None
    for item in value:
        kind = type(item)
        if kind is str:
            if (not item.isascii() or "\x00" in item) and not is_storable(item):
                return None
            width += _ESCAPED * len(item) + len('""')
        elif kind is dict or kind is list:
            inner = _plain_json_width(item, depth + 1)
            if inner is None:
                return None
            width += inner
        elif kind is int:
            if not _JSON_INT_FLOOR < item < JSON_INT_LIMIT:
                return None
            width += _WIDEST_INT
        elif kind is float:
            if not math.isfinite(item):
                return None
            width += _WIDEST_FLOAT
        elif kind is bool or item is None:
            width += len("false")
        else:
            return None
    return width


def _plain_json(field: str, value, depth: int):
    """`value` checked as JSON, each part by its type (never its own methods, which may lie),
    and returned as plain values: a subclass of str, int or float as its characters or number,
    of dict or list as a dict or list of plain values."""
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(f"{shown_path(field)} is nested deeper than {MAX_JSON_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool:
        return value
    if issubclass(kind, int):
        value = int.__int__(value)
        if not _JSON_INT_FLOOR < value < JSON_INT_LIMIT:
            raise ValidationError(
                f"{shown_path(field)} holds an int of more than {MAX_JSON_INT_DIGITS} digits, "
                "which JSON cannot carry"
            )
        return value
    if issubclass(kind, float):
        value = float.__float__(value)
        if not math.isfinite(value):
            raise ValidationError(f"{shown_path(field)} holds {value!r}; JSON numbers must be finite")
        return value
    if issubclass(kind, str):
        value = as_plain_str(value)
        check_storable(field, value)
        return value
    if issubclass(kind, list):
        return [
            _plain_json(f"{field}[{index}]", item, depth + 1)
            for index, item in enumerate(list.__iter__(value))
        ]
    if issubclass(kind, dict):
        return _plain_object(field, value, depth)
    raise ValidationError(f"{shown_path(field)} holds a {kind.__name__} ({shown(value)}), which is not JSON")


def _plain_object(field: str, value: dict, depth: int) -> dict:
    """The members of a dict (read as a dict holds them) checked and plain; a key given twice
    (two keys of one text) is refused, as JSON keeps only one."""
    plain = {}
    for key, item in dict.items(value):
        if not is_text(key):
            raise ValidationError(f"{shown_path(field)} has a non-string key {shown(key)}")
        name = as_plain_str(key)
        check_storable(f"{field} key {shown(name)}", name)
        if name in plain:
            raise ValidationError(f"{shown_path(field)} gives the key {shown(name)} twice")
        plain[name] = _plain_json(f"{field}[{shown(name)}]", item, depth + 1)
    return plain
