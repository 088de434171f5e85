"""SQLite's SQL text read and written by hand: a statement with its parameters inlined (what
`--sql` prints), and the double-quoted names an index's definition holds."""

from __future__ import annotations

import re

# One SQL token: a string, a "quoted" identifier (group 1), a [bracketed] or `backquoted` one,
# a word (group 2), or any other character.
SQL_TOKEN = re.compile(r"""'(?:[^']|'')*'|"((?:[^"]|"")*)"|\[[^\]]*\]|`(?:[^`]|``)*`|(\w+)|\S""")


def inline_params(sql: str, params: list) -> str:
    """Replace each `?` outside quotes with the next parameter as a SQLite literal."""
    out, quote = [], None
    for char in sql:
        if quote:
            quote = None if char == quote else quote
        elif char in ("'", '"'):
            quote = char
        elif char == "?" and params:
            out.append(_literal(params.pop(0)))
            continue
        out.append(char)
    return "".join(out)


def _literal(value) -> str:
    """`value` written as a SQLite literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    return "'" + str(value).replace("'", "''") + "'"


def quoted_names_after_on(sql: str) -> list[str]:
    """The double-quoted names in an index's columns and WHERE clause (collation names left out)."""
    names, state, previous = [], "head", ""
    for match in SQL_TOKEN.finditer(sql):
        text, quoted_name, word = match.group(0), match.group(1), match.group(2)
        if state == "head":
            state = "table" if (word or "").upper() == "ON" else "head"
        elif state == "table":
            state = "body"
        elif quoted_name is not None and previous != "COLLATE":
            names.append(quoted_name.replace('""', '"'))
        previous = text.upper()
    return names
