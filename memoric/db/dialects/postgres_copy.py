"""PostgreSQL's COPY text format: rows streamed to the server by `COPY ... FROM STDIN`, which
costs the server half the work of a multi-row INSERT."""

from __future__ import annotations

import datetime as dt
import io

from memoric.db.dialects.base import column_list

COPY_CHUNK = 1 << 20  # characters handed to the server per read of a COPY


def copy_rows(cursor, table: str, columns: list[str], rows: list[tuple]) -> int:
    """COPY `rows` (values already converted for the driver) into `table`; the number copied."""
    lines = io.StringIO("".join(map(copy_line, rows)))
    cursor.copy_expert(f'COPY "{table}" ({column_list(columns)}) FROM STDIN', lines, COPY_CHUNK)
    return cursor.rowcount


def copy_line(row: tuple) -> str:
    """One row in COPY's text format: tab-separated fields, `\\N` for NULL, a newline at the end."""
    return "\t".join([_COPY_FORMATS[type(value)](value) for value in row]) + "\n"


def _copy_text(text: str) -> str:
    """Text with COPY's escapes: backslash, tab, newline and carriage return."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _copy_json(document) -> str:
    """A psycopg2 `Json` parameter (what `BinaryJSONField.db_value` gives) as its JSON text."""
    return _copy_text(document.dumps(document.adapted))


class _CopyFormats(dict):
    """type -> function writing a value of it for COPY; subclasses and psycopg2's Json looked up once."""

    def __missing__(self, kind: type):
        from psycopg2.extras import Json

        self.setdefault(Json, _copy_json)
        for base in kind.__mro__:
            if base in self:
                self[kind] = self[base]
                return self[kind]
        raise TypeError(f"cannot COPY a {kind.__name__} value")


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_FORMATS = _CopyFormats({
    str: _copy_text,
    int: str,
    bool: lambda value: "t" if value else "f",
    type(None): lambda value: "\\N",
    dt.datetime: dt.datetime.isoformat,
})  # fmt: skip
