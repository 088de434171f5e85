"""The lines of an export as an import reads them: each of bounded length, numbered, parsed as
one JSON object, the first checked as the header, and spooled to a file where they come from a
stream that cannot be read twice."""

from __future__ import annotations

import contextlib
import functools
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator

from memoric import json_input
from memoric.errors import MemoricError, ValidationError

FORMAT = "memoric-export"
FORMAT_VERSION = 2
BYTE_ORDER_MARK = "\ufeff"
BYTE_ORDER_MARK_BYTES = BYTE_ORDER_MARK.encode()
# The longest line an import reads: a memory's line stays under 200 MB (its content, metadata and
# related threads at their limits, every character escaped); a cluster's holds about 12 million
# ids within it, and an export refuses one longer. An endless line (`import /dev/zero`) is refused
# here instead of being read into memory until the system kills the process.
MAX_LINE_BYTES = 256 * 2**20


@contextlib.contextmanager
def rereadable(lines: Iterable[str | bytes]):
    """`lines` if it can be read again (a list, a tuple, a seekable file), else a spooled copy."""
    if is_rereadable(lines):
        yield lines
        return
    with _spool(lines) as spool:
        yield spool


@contextlib.contextmanager
def _spool(lines: Iterable[str | bytes]):
    """A temporary file holding `lines`, rewound; MemoricError when the temporary directory
    cannot take them (before anything is written to the database).

    What is plainly no export (no header on line 1, a line that is no JSON object) is refused
    as it arrives, so an endless stream of it (`yes | memoric import -`) cannot fill the disk.
    """
    try:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
        header_seen = False
        for number, line in enumerate(_read(lines), 1):
            if isinstance(line, str):
                line = line.encode("utf-8", "surrogatepass")
            text = line.removeprefix(BYTE_ORDER_MARK_BYTES) if number == 1 else line
            if text.strip():
                _check_shape(number, text, header_seen)
                header_seen = True
            spool.write(line if line.endswith(b"\n") else line + b"\n")
        spool.seek(0)
    except OSError as exc:
        raise MemoricError(
            f"could not keep a copy of the export in a temporary file ({exc}): nothing was written"
        ) from exc
    with spool:
        yield spool


def _check_shape(number: int, line: bytes, header_seen: bool) -> None:
    """ValidationError, as the import's own check gives it, for a first line that is no export
    header or a later one that does not open a JSON object (its contents are checked later)."""
    if not header_seen:
        check_header((number, _parse_line(number, line.removeprefix(BYTE_ORDER_MARK.encode()))))
    elif not line.lstrip().startswith(b"{"):
        _parse_line(number, line)
        raise ValidationError(f"line {number} is not a JSON object")


def is_rereadable(lines: Iterable) -> bool:
    """Whether `lines` can be read again from where it stands: a list, a tuple, a seekable file."""
    return isinstance(lines, (list, tuple)) or is_seekable(lines)


def is_seekable(lines: Iterable) -> bool:
    """Whether `lines` is a file that can be rewound (stdin on a pipe cannot)."""
    seekable = getattr(lines, "seekable", None)
    return seekable is not None and seekable()


def parsed(lines: Iterable[str | bytes]) -> Iterator[tuple[int, dict]]:
    """(line number, parsed object) for every non-blank line; ValidationError names a bad line."""
    for number, line in _numbered(lines):
        if line.strip():
            yield number, _parse_line(number, line)


def _parse_line(number: int, line: str | bytes) -> dict:
    """The JSON object on line `number`; ValidationError names what is wrong with it."""
    try:
        record = _DECODER.decode(line if isinstance(line, str) else _text(number, line))
    except DuplicateKey as exc:
        raise ValidationError(
            f"line {number} gives the key {exc.key!r} twice in one object: a JSON reader would "
            "keep only the last value, silently"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"line {number} is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ValidationError(f"line {number} is not valid JSON here: it is nested too deeply") from None
    except json_input.InexactNumber as exc:
        raise ValidationError(f"line {number} holds {exc}") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts from text
        reason = str(exc).split(";")[0]
        raise ValidationError(f"line {number} is not valid JSON here: {reason}") from None
    if not isinstance(record, dict):
        raise ValidationError(f"line {number} is not a JSON object")
    return record


class DuplicateKey(Exception):
    """A JSON object of a line gives a key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


_DECODER = json.JSONDecoder(
    object_pairs_hook=functools.partial(json_input.unique_object, given_twice=DuplicateKey),
    parse_float=json_input.exact_float,
)


def _numbered(lines: Iterable[str | bytes]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line (str, or bytes decoded as UTF-8); bad UTF-8 is a ValidationError.

    A byte order mark opening line 1 is not part of the text: editors on Windows save UTF-8 with one.
    """
    number = 0
    iterator = _read(lines)
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"the export is not UTF-8 text after line {number} ({exc.reason})"
            ) from None
        number += 1
        if isinstance(line, bytes):
            line = _text(number, line)
        yield number, line.removeprefix(BYTE_ORDER_MARK) if number == 1 else line


def _text(number: int, line: bytes) -> str:
    """Line `number` decoded as UTF-8; ValidationError when it is not UTF-8."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"line {number} is not UTF-8 text ({exc.reason})") from None


def _read(lines: Iterable[str | bytes]) -> Iterator[str | bytes]:
    """The lines of `lines` as read; a file that fails to read (an I/O error, a terminal hung up)
    is a MemoricError naming it, the line it stopped after and the system's reason."""
    number = 0
    readline = getattr(lines, "readline", None)
    iterator = _bounded_lines(readline) if readline else iter(lines)
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except OSError as exc:
            after = f" after line {number}" if number else ""
            reason = exc.strerror or exc
            raise MemoricError(f"cannot read {_file_name(lines)}{after}: {reason}") from None
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise ValidationError(
                f"line {number} of {_file_name(lines)} is longer than {MAX_LINE_BYTES >> 20} MiB, "
                "longer than any line an export writes: this is no memoric export, or a damaged one"
            )
        yield line


def _bounded_lines(readline: Callable) -> Iterator[str | bytes]:
    """The lines `readline` reads, each cut after MAX_LINE_BYTES + 1 (then refused whole)."""
    while line := readline(MAX_LINE_BYTES + 1):
        yield line


def _file_name(lines: Iterable) -> str:
    """How messages name the file `lines` come from: its path, standard input, or the export."""
    name = getattr(lines, "name", None)
    if name == "<stdin>":
        return "standard input"
    return name if isinstance(name, str) else "the export"


def check_header(first: tuple[int, dict] | None) -> int:
    """The format version of the header on the first line; ValidationError unless it is a header
    of a format version this memoric reads."""
    if first is None:
        raise ValidationError("the export is empty: no header line")
    _, header = first
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise ValidationError(f"not a memoric export: the first line must be a {FORMAT!r} header")
    version = header.get("format_version")
    if type(version) is not int or version < 1:
        raise ValidationError(
            f"export format version {version!r} is not a positive integer: not a memoric export"
        )
    if version > FORMAT_VERSION:
        raise ValidationError(
            f"export format version {version} is newer than this memoric reads ({FORMAT_VERSION}); "
            "upgrade memoric to import it"
        )
    return version
