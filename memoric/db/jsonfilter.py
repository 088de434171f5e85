"""JSON containment with exactly PostgreSQL's `jsonb @>` semantics: the reference, and SQLite's SQL.

`contains(document, pattern)` is the reference. PostgreSQL runs `metadata @> pattern` (served
by the GIN index), through `JSONDocumentField.contains`, which on SQLite runs the same test
inside SQL, built here: the first MAX_EXACT_CONDITIONS parts of
the pattern that SQLite's JSON functions decide exactly (strings, booleans, nulls, small integers
and empty objects, reached through nested objects) become plain SQL conditions; whatever is left
(arrays, floats, keys no JSON path can address, the parts beyond that number) goes to
`memoric_json_contains`, a function registered on each connection that runs the reference. So
LIMIT, OFFSET and ORDER BY stay in SQL, and a filter of any width is one bounded SQL expression.

Conditions are joined with `all_of` / `any_of`: one flat `(a AND b AND ...)`, never the nested
`((a AND b) AND c)` of `functools.reduce`, which SQLite's parser (about 100 levels of
parentheses) and peewee's recursive SQL generation both fail on for wide filters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache

import peewee

from memoric.db.jsoncodec import dump_json, load_json

SQLITE_CONTAINS_FUNCTION = "memoric_json_contains"
# Integers up to 2**53 in magnitude compare exactly in SQLite whether stored as integer or real.
EXACT_SQLITE_INTEGER = 2**53
# Exact SQL conditions one filter may add on SQLite (each a few expression levels; SQLite caps an
# expression at 1000): enough for any index-worthy filter, the rest is checked by the function.
MAX_EXACT_CONDITIONS = 32


def all_of(conditions: Sequence[peewee.Node]) -> peewee.Node:
    """The conditions joined by AND in one flat, parenthesised list (`1 = 1` when there are none)."""
    return _joined(conditions, " AND ", "1 = 1")


def any_of(conditions: Sequence[peewee.Node]) -> peewee.Node:
    """The conditions joined by OR in one flat, parenthesised list (`1 = 0` when there are none)."""
    return _joined(conditions, " OR ", "1 = 0")


def _joined(conditions: Sequence[peewee.Node], glue: str, empty: str) -> peewee.Node:
    if not conditions:
        return peewee.SQL(empty)
    if len(conditions) == 1:
        return conditions[0]
    return peewee.NodeList([_parenthesised(node) for node in conditions], glue=glue, parens=True)


def _parenthesised(node: peewee.Node) -> peewee.Node:
    """`node` as one operand: expressions bracket themselves, raw SQL text gets brackets here."""
    if isinstance(node, peewee.SQL):
        return peewee.NodeList([node], parens=True)
    return node


def contains(document, pattern) -> bool:
    """True when `document` contains `pattern` as PostgreSQL's `jsonb @>` decides it.

    At the top level an array also contains each of its scalars (`'["a"]' @> '"a"'`), the one
    exception PostgreSQL makes to structures matching.
    """
    if isinstance(document, list) and not isinstance(pattern, (dict, list)):
        return _array_contains(document, [pattern])
    return _contains(document, pattern)


def _contains(document, pattern) -> bool:
    """Containment below the top level: objects in objects, arrays in arrays, equal scalars."""
    if isinstance(pattern, dict):
        return isinstance(document, dict) and all(
            key in document and _contains(document[key], value) for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(document, list) and _array_contains(document, pattern)
    return scalars_equal(document, pattern)


def _array_contains(document: list, pattern: list) -> bool:
    """Every element of `pattern` is contained in some element of `document`.

    A scalar is contained only in an equal scalar, so the scalars are looked up in a set of the
    document's (linear, where comparing each pair made a 5,000-element filter take seconds per
    row); objects and arrays are compared with the document's objects and arrays.
    """
    wanted_scalars = [wanted for wanted in pattern if not isinstance(wanted, (dict, list))]
    if wanted_scalars:
        present = {_scalar_key(element) for element in document if not isinstance(element, (dict, list))}
        if not all(_scalar_key(wanted) in present for wanted in wanted_scalars):
            return False
    containers = [element for element in document if isinstance(element, (dict, list))]
    return all(
        any(_contains(element, wanted) for element in containers)
        for wanted in pattern
        if isinstance(wanted, (dict, list))
    )


def _scalar_key(value) -> tuple:
    """A key equal for two JSON scalars exactly when `scalars_equal` holds for them."""
    if isinstance(value, bool):
        return ("boolean", value)
    if is_number(value):
        return ("number", as_decimal(value))
    return ("string", value) if isinstance(value, str) else ("null",)


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


def sqlite_contains(column: peewee.Node, pattern) -> peewee.Node:
    """A SQLite condition true exactly where `column` (JSON text) contains `pattern`."""
    if pattern == {}:  # every object contains it, and nothing else does
        return _json_type(column, "$") == "object"
    if not isinstance(pattern, dict):
        return _contains_function(column, pattern)
    conditions: list = []
    residual = _split_exact(column, "$", pattern, conditions)
    if residual:
        conditions.append(_contains_function(column, residual))
    return all_of(conditions)


def _contains_function(column: peewee.Node, pattern) -> peewee.Node:
    """The registered reference function's test that `column` contains `pattern`."""
    return peewee.Function(SQLITE_CONTAINS_FUNCTION, (column, _text(json.dumps(pattern)))) == 1


def sqlite_contains_any(column: peewee.Node, strings: list[str]) -> peewee.Node:
    """True where one of `strings` is a top-level key of the JSON in `column`, one of its string
    elements, or the whole document (a JSON string): PostgreSQL's `?|`, one parameter for the list.
    """
    return peewee.fn.EXISTS(
        peewee.NodeList(
            (
                peewee.SQL("SELECT 1 FROM json_each("),
                column,
                peewee.SQL(
                    ") WHERE CASE WHEN typeof(json_each.key) = 'text' THEN json_each.key "
                    "WHEN json_each.type = 'text' THEN json_each.value END IN"
                ),
                json_values(strings),
            )
        )
    )


def sqlite_string_at(column: peewee.Node, key: str) -> peewee.Node:
    """The string under the top-level `key` of the JSON in `column`, else NULL.

    A key no JSON path can name is looked up among the document's keys, bound as data.
    """
    if not _addressable(key):
        return peewee.NodeList(
            (
                peewee.SQL("(SELECT value FROM json_each("),
                column,
                peewee.SQL(") WHERE key ="),
                _text(key),
                peewee.SQL("AND type = 'text')"),
            )
        )
    path = f'$."{key}"'
    return peewee.Case(None, [(_json_type(column, path) == "text", _json_extract(column, path))])


def json_values(values: list[str]) -> peewee.Node:
    """`(SELECT value FROM json_each(?))`: the strings of `values` as a SQLite row set."""
    return peewee.NodeList(
        (peewee.SQL("(SELECT value FROM json_each("), _text(dump_json(values)), peewee.SQL("))"))
    )


def _split_exact(column, path: str, pattern: dict, conditions: list) -> dict:
    """Append exact SQL conditions for `pattern` to `conditions` (at most MAX_EXACT_CONDITIONS in
    all); return the rest of `pattern`, for the registered function.
    """
    residual = {}
    for key, wanted in pattern.items():
        if len(conditions) >= MAX_EXACT_CONDITIONS or not _addressable(key):
            residual[key] = wanted
            continue
        key_path = f'{path}."{key}"'
        if isinstance(wanted, dict) and wanted:
            nested_residual = _split_exact(column, key_path, wanted, conditions)
            if nested_residual:
                residual[key] = nested_residual
            continue
        condition = _exact_condition(column, key_path, wanted)
        if condition is None:
            conditions.append(_type_condition(column, key_path, wanted))
            residual[key] = wanted
        else:
            conditions.append(condition)
    return residual


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
