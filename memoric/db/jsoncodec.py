"""The one JSON encoding memoric writes, and the fast reader of what it wrote."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from decimal import Decimal

EMPTY_JSON = {"{}": dict, "[]": list}  # the commonest documents, built without parsing
_EMPTY_DOCUMENTS = {kind: text for text, kind in EMPTY_JSON.items()}  # and written without encoding
# The decoder's C scanner, called directly: `raw_decode` wraps it in a Python frame that cost as
# much as the parse itself (1,000 metadata documents: 0.9 ms instead of 1.8).
_SCAN = json.JSONDecoder().scan_once
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_EXPONENT = re.compile(r"\de\+")  # how JSON writes a float of magnitude 1e16 or more
# What JSON carries raw but a terminal would obey: DEL, the C1 controls (CSI starts an escape
# sequence), the bidirectional controls that reorder a line, and the line and paragraph
# separators a viewer may break a line at. JSON escapes C0 itself. Also the lone surrogates
# another writer's `\ud800` decodes to, which UTF-8 cannot carry.
TERMINAL_CONTROLS = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def dump_json(value) -> str:
    """The one JSON encoding memoric writes: compact, UTF-8 kept, NaN refused, floats kept floats.

    A float of magnitude 1e16 or more is written out digit by digit with a `.0` (`1e+16` becomes
    `10000000000000000.0`): PostgreSQL keeps a JSONB number as `numeric`, which prints an
    integral value written in exponent form without a decimal point, so it would read back as
    an int. `-0.0` is written `0.0`: `numeric` has no negative zero, so both dialects keep the
    same value. The fast encoder's output is used as it is unless it holds either.
    """
    if not value and type(value) in _EMPTY_DOCUMENTS:
        return _EMPTY_DOCUMENTS[type(value)]
    text = _JSON_ENCODER.encode(value)
    if ("e+" in text and _EXPONENT.search(text)) or "-0.0" in text:
        return _positional_json(value)
    return text


def _positional_json(value) -> str:
    """`value` as JSON, with every float of magnitude 1e16 or more in positional notation and
    every zero float as `0.0`.

    Such a float is integral: its shortest repr's digits and exponent, written out in full,
    are exactly its value, and a float parser reads them back as that float.
    """
    if isinstance(value, dict):
        items = (f"{_json_key(key)}:{_positional_json(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(_positional_json, value)) + "]"
    if isinstance(value, float) and "e+" in repr(value):
        return f"{Decimal(repr(value)):f}.0"
    if isinstance(value, float) and value == 0.0:
        return "0.0"  # -0.0 too
    return _JSON_ENCODER.encode(value)


def _json_key(key) -> str:
    """An object key as the encoder writes it (a non-string key becomes a string its own way)."""
    return _JSON_ENCODER.encode({key: None})[1 : -len(":null}")]


def load_json(text: str):
    """A JSON document as memoric writes it, parsed without `json.loads`' whitespace scans.

    Text with surrounding whitespace or anything after the document goes to `json.loads`,
    which decides as it always does.
    """
    empty = EMPTY_JSON.get(text)
    if empty is not None:
        return empty()
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError, TypeError):  # no value at its start, a malformed one, bytes
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def load_json_column(texts: Iterable, load: Callable) -> list:
    """Each of a column's values as `load` (a field's reader) makes it, memoric's own documents
    parsed here in one loop: a Python call less per value, which is a third of the time of
    1,000 metadata documents. Anything else (None, text that is not one JSON document alone)
    is left to `load`, which decides as it always does."""
    parsed = []
    append = parsed.append
    for text in texts:
        if type(text) is str:
            empty = EMPTY_JSON.get(text)
            if empty is not None:
                append(empty())
                continue
            try:
                value, end = _SCAN(text, 0)
            except (StopIteration, ValueError):
                end = -1
            if end == len(text):
                append(value)
                continue
        append(load(text))
    return parsed


def controls_escaped(text: str) -> str:
    """JSON `text` with the TERMINAL_CONTROLS in its strings written as `\\u` escapes: what is
    shown or exported cannot drive a terminal, and parses back to the same values."""
    return TERMINAL_CONTROLS.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
