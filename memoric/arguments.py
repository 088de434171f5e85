"""The arguments of the public API that are not data: callbacks, paths, and the stores, files and
lines the entry points work on.

Each is checked before any work starts, so a wrong one is a `ValidationError` naming it, not a
TypeError or AttributeError from deep inside, halfway through a run.
"""

from __future__ import annotations

import codecs
import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from memoric.errors import ValidationError


def function(field: str, value, what: str = "", arguments: int | None = None) -> Callable | None:
    """`value` if it can be called (with `arguments` positional arguments, where given), or None
    for a callback left out."""
    if value is None:
        return None
    described = f"a function {what}".rstrip()
    if not callable(value):
        raise ValidationError(f"{field} must be {described}, got {type(value).__name__}")
    if arguments is not None and not _takes(value, arguments):
        raise ValidationError(f"{field} must be {described}: it cannot be called with {arguments} arguments")
    return value


def progress(field: str, value, counted: str = "memories done") -> Callable | None:
    """A progress callback: called with the number of `counted` (memories done, rows written)
    since its last call."""
    return function(field, value, f"of the number of {counted}", 1)


def summarizer(value) -> Callable | None:
    """A summarizer: called with a thread's memories and the longest summary to write."""
    return function("summarizer", value, "(memories, max_chars) -> str", 2)


def _takes(function: Callable, arguments: int) -> bool:
    """Whether `function` can be called with `arguments` positional arguments (True where Python
    cannot tell, as for some built-ins)."""
    try:
        inspect.signature(function).bind(*range(arguments))
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def directory(field: str, value) -> Path | None:
    """`value` as a Path (a string or path-like naming a directory), or None when left out."""
    if value is None:
        return None
    return Path(path_text(field, value, "a directory path"))


def path_text(field: str, value, what: str = "a path") -> str:
    """The text of a path given as a str or os.PathLike; ValidationError for another kind, a
    path-like whose `__fspath__` fails or gives no str, and a name no file can have."""
    if not isinstance(value, (str, os.PathLike)):
        raise ValidationError(f"{field} must be {what}, got {type(value).__name__}")
    try:
        text = os.fspath(value)
    except Exception as exc:  # a path-like of the caller's, failing its own way
        raise ValidationError(f"{field} must be {what}: its __fspath__ failed ({exc})") from None
    if not isinstance(text, str):
        raise ValidationError(f"{field} must be {what}, got {type(text).__name__}")
    problem = "it is empty" if not text.strip() else file_name_problem(text)
    if problem:
        raise ValidationError(f"{field} must be {what}, got {text!r}: {problem}")
    return text


def file_name_problem(name: str) -> str | None:
    """Why the system cannot take `name` as a file name (a NUL, a lone surrogate), or None."""
    try:
        return "it holds a NUL character" if b"\0" in os.fsencode(name) else None
    except UnicodeError as exc:
        return exc.reason


def instance(field: str, value, kind: type):
    """`value` if it is a `kind` (a store, a Memoric, a plan)."""
    if not isinstance(value, kind):
        raise ValidationError(f"{field} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def writable(field: str, value):
    """`value` if it takes text (a file open for writing it, anything whose `write` takes a str),
    in an encoding that holds every character: checked before the first line, so that a file
    that cannot take them is not left half-written."""
    write = getattr(value, "write", None)
    if not callable(write):
        raise ValidationError(f"{field} must be a file open for writing text, got {type(value).__name__}")
    encoding = _other_than_utf8(value)
    if encoding:
        raise ValidationError(
            f"{field} writes {encoding}; an export is UTF-8, which holds every character a memory "
            "may hold and is what an import reads: open it with encoding='utf-8'"
        )
    try:
        write("")
    except (TypeError, ValueError, OSError) as exc:  # binary, closed, open for reading only
        raise ValidationError(f"{field} must be a file open for writing text: {exc}") from None
    return value


def _other_than_utf8(file) -> str | None:
    """The encoding a text file declares when it is not UTF-8 (with or without a byte order
    mark); None for UTF-8 and for what declares none (a binary file, a list)."""
    encoding = getattr(file, "encoding", None)
    if not isinstance(encoding, str):
        return None
    try:
        utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
    except LookupError:
        utf8 = False
    return None if utf8 else encoding


def lines(field: str, value):
    """`value` if it gives lines: a file, a list or any iterable of them, not one string."""
    if isinstance(value, (str, bytes)):
        raise ValidationError(
            f"{field} must be an open file or an iterable of lines, got one {type(value).__name__} "
            "(pass io.StringIO(text), or open the file)"
        )
    encoding = _other_than_utf8(value)
    if encoding:
        raise ValidationError(
            f"{field} is read as {encoding}; an export is UTF-8: open it with encoding='utf-8' "
            "(or in binary mode)"
        )
    errors = getattr(value, "errors", None)
    if isinstance(errors, str) and errors not in ("strict", "surrogateescape"):
        raise ValidationError(
            f"{field} is read with errors={errors!r}, which changes what is not UTF-8 "
            "silently: open it with errors='strict' (or in binary mode)"
        )
    if not isinstance(value, Iterable):  # asked of its type: iterating may start reading it
        got = type(value).__name__
        raise ValidationError(f"{field} must be an open file or an iterable of lines, got {got}")
    return value
