"""JSON containment with exactly PostgreSQL's `jsonb @>` semantics, and its SQL for each dialect.

`contains(document, pattern)` is the reference. PostgreSQL runs `metadata @> pattern` (served
by the GIN index). SQLite runs the same test inside SQL: every part of the pattern that SQLite's
JSON functions decide exactly (strings, booleans, nulls, small integers and empty objects,
reached through nested objects) becomes a plain SQL condition; whatever is left (arrays, floats,
keys no JSON path can address) goes to `memoric_json_contains`, a function registered on each
connection that runs the reference. So LIMIT, OFFSET and ORDER BY stay in SQL.
"""

from __future__ import annotations

import json
import operator
from decimal import Decimal
from functools import lru_cache, reduce

import peewee

from memoric.db.models import load_json

SQLITE_CONTAINS_FUNCTION = "memoric_json_contains"
# Integers up to 2**53 in magnitude compare exactly in SQLite whether stored as integer or real.
EXACT_SQLITE_INTEGER = 2**53


def contains(document, pattern) -> bool:
    """True when `document` contains `pattern` as PostgreSQL's `jsonb @>` decides it."""
    if isinstance(pattern, dict):
        return isinstance(document, dict) and all(
            key in document and contains(document[key], value) for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(document, list) and all(
            any(contains(element, wanted) for element in document) for wanted in pattern
        )
    return scalars_equal(document, pattern)


def scalars_equal(left, right) -> bool:
    """JSON scalar equality: same type; numbers by value (1 == 1.0); true is never 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and is_number(right):
        return as_decimal(left) == as_decimal(right)
    if left is None or right is None:
        return left is None and right is None
    return isinstance(left, str) and isinstance(right, str) and left == right


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_decimal(number) -> Decimal:
    """The number PostgreSQL sees: a float is the decimal that JSON writes for it."""
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)


# --- SQLite -------------------------------------------------------------------------------


def sqlite_contains(column: peewee.Node, pattern: dict) -> peewee.Node:
    """A SQLite condition true exactly where `column` (JSON text) contains `pattern`."""
    conditions, residual = _split_exact(column, "$", pattern)
    if residual:
        conditions.append(
            peewee.Function(SQLITE_CONTAINS_FUNCTION, (column, _text(json.dumps(residual)))) == 1
        )
    if not conditions:
        return peewee.SQL("1 = 1")
    return reduce(operator.and_, conditions)


def _split_exact(column, path: str, pattern: dict):
    """(exact SQL conditions, the rest of `pattern` for the registered function)."""
    conditions, residual = [], {}
    for key, wanted in pattern.items():
        if not _addressable(key):
            residual[key] = wanted
            continue
        key_path = f'{path}."{key}"'
        if isinstance(wanted, dict) and wanted:
            nested_conditions, nested_residual = _split_exact(column, key_path, wanted)
            conditions.extend(nested_conditions)
            if nested_residual:
                residual[key] = nested_residual
            continue
        condition = _exact_condition(column, key_path, wanted)
        if condition is None:
            conditions.append(_type_condition(column, key_path, wanted))
            residual[key] = wanted
        else:
            conditions.append(condition)
    return conditions, residual


def _type_condition(column, path: str, wanted):
    """A necessary (not sufficient) SQL test: the value at `path` has the right JSON type."""
    if isinstance(wanted, list):
        return _json_type(column, path) == "array"
    return _json_type(column, path).in_(["integer", "real"])


def _exact_condition(column, path: str, wanted):
    """The exact SQL test for one value at `path`, or None when SQL cannot decide it exactly."""
    if isinstance(wanted, bool):
        return _json_type(column, path) == ("true" if wanted else "false")
    if wanted is None:
        return _json_type(column, path) == "null"
    if isinstance(wanted, str):
        equal = _json_extract(column, path) == _text(wanted)
        if wanted[:1] in ("[", "{"):  # json_extract gives arrays and objects as their JSON text
            return equal & (_json_type(column, path) == "text")
        return equal  # numbers, booleans and null come out as integers, reals or NULL: never equal
    if isinstance(wanted, int) and abs(wanted) <= EXACT_SQLITE_INTEGER:
        return (_json_extract(column, path) == peewee.Value(wanted, converter=False)) & (
            _json_type(column, path).in_(["integer", "real"])
        )
    if isinstance(wanted, dict):  # the empty object: any object contains it
        return _json_type(column, path) == "object"
    return None


def _addressable(key: str) -> bool:
    """Whether a JSON path can name `key` exactly.

    SQLite cannot quote `"` or `\\` in a path, and matches a path label against the key as
    written in the JSON text, so a key JSON escapes (tab, newline, other control characters)
    is never found by its path.
    """
    return json.dumps(key, ensure_ascii=False)[1:-1] == key


def _text(value: str) -> peewee.Value:
    return peewee.Value(value, converter=False)


def _json_type(column, path: str):
    return peewee.fn.json_type(column, _text(path))


def _json_extract(column, path: str):
    return peewee.fn.json_extract(column, _text(path))


@lru_cache(maxsize=256)
def _parsed_pattern(pattern_json: str):
    return json.loads(pattern_json)


def sqlite_contains_function(document_json, pattern_json) -> int:
    """The reference containment as a SQLite function over two JSON texts."""
    if document_json is None:
        return 0
    return int(contains(load_json(document_json), _parsed_pattern(pattern_json)))


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_contains(column: peewee.Field, pattern: dict, *, indexed: bool = True) -> peewee.Node:
    """`column @> pattern` on JSONB, served by a GIN index.

    Not `indexed`: `jsonb_contains(column, pattern)`, the same test as a function call, which the
    planner checks row by row on the rows another index yields instead of consulting the GIN index.
    """
    value = column.db_value(pattern)
    if not indexed:
        return peewee.fn.jsonb_contains(column, value)
    return peewee.Expression(column, "@>", value)
