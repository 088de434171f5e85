"""The lines of an export as an import reads them: each of bounded length, numbered, parsed as
one JSON object, the first checked as the header, and spooled to a file where they come from a
stream that cannot be read twice."""

from __future__ import annotations

import contextlib
import functools
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from memoric import json_input
from memoric.errors import MemoricError, ValidationError

FORMAT = "memoric-export"
FORMAT_VERSION = 2
BYTE_ORDER_MARK = "\ufeff"
# The longest line an import reads: a memory's line stays under 200 MB (its content, metadata and
# related threads at their limits, every character escaped); a cluster's holds about 12 million
# ids within it, and an export refuses one longer. An endless line (`import /dev/zero`) is refused
# here instead of being read into memory until the system kills the process.
MAX_LINE_BYTES = 256 * 2**20
_END = object()  # what `next` gives after a file's last line
MAX_BLANK_LINES = 1000  # in a row: an export writes none; a stream of them is no export


@contextlib.contextmanager
def rereadable(lines: Iterable[str | bytes]):
    """`lines` if it can be read again (a list, a tuple, a seekable file), else a `Spooled` copy."""
    if is_rereadable(lines):
        yield lines
        return
    try:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise _no_room(exc) from exc
    try:
        yield Spooled(lines, spool)
    finally:
        with contextlib.suppress(OSError):  # a full disk fails the flush again: the copy is dropped
            spool.close()


class Spooled:
    """A stream that can be read once (standard input, a pipe), copied to a temporary file line
    by line as its first pass reads it; later passes read the copy.

    The first pass is the import's check, so what is no export is refused at the line it comes
    to, before more is copied (`yes | memoric import -` stops at line 1); a blank line is kept as
    an empty one, and `parsed` refuses a long run of them.
    """

    def __init__(self, lines: Iterable[str | bytes], spool: IO[bytes]) -> None:
        self.name = getattr(lines, "name", None)  # how messages name it (`_file_name`)
        self._lines, self._spool = lines, spool
        self._state = "unread"  # then "copying", then "copied"

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return 0

    def seek(self, offset: int) -> None:
        """Each pass starts from the first line (`__iter__` knows where that is)."""

    def __iter__(self) -> Iterator[bytes]:
        if self._state == "copied":
            if self._spool.closed:
                raise MemoricError(
                    "the copy of a stream read once was dropped when its `rereadable` block ended: "
                    "check and import it inside that block"
                )
            self._spool.seek(0)
            return _bounded_lines(self._spool.readline)
        if self._state == "copying":
            raise ValidationError("a stream read once is read again only after its check read it whole")
        self._state = "copying"
        return self._copy()

    def _copy(self) -> Iterator[bytes]:
        for line in _read(self._lines):
            if isinstance(line, str):
                line = line.encode("utf-8", "surrogatepass")
            kept = line if line.strip() else b""
            try:
                self._spool.write(kept if kept.endswith(b"\n") else kept + b"\n")
            except OSError as exc:
                raise _no_room(exc) from exc
            yield line
        self._state = "copied"


def _no_room(exc: OSError) -> MemoricError:
    return MemoricError(
        f"could not keep a copy of the export in a temporary file ({exc}): nothing was written"
    )


def position(lines: Iterable) -> int | None:
    """Where a seekable file stands (each pass starts there); None for other lines."""
    if not is_seekable(lines):
        return None
    with _reading(lines):
        return lines.tell()


def rewind(lines: Iterable, start: int | None) -> None:
    """Back to `start` (`position`), for another pass over a file."""
    if start is not None:
        with _reading(lines):
            lines.seek(start)


@contextlib.contextmanager
def _reading(lines: Iterable, after: int = 0) -> Iterator[None]:
    """A MemoricError naming the file for one that fails to read (an I/O error, a terminal hung
    up, a file closed: ValueError), with the line it stopped after."""
    try:
        yield
    except UnicodeDecodeError:
        raise
    except (OSError, ValueError) as exc:
        if isinstance(exc, MemoricError):
            raise
        where = f" after line {after}" if after else ""
        reason = getattr(exc, "strerror", None) or exc
        raise MemoricError(f"cannot read {_file_name(lines)}{where}: {reason}") from None


def is_rereadable(lines: Iterable) -> bool:
    """Whether `lines` can be read again from where it stands: a list, a tuple, a seekable file."""
    return isinstance(lines, (list, tuple)) or is_seekable(lines)


def is_seekable(lines: Iterable) -> bool:
    """Whether `lines` is a file that can be rewound (stdin on a pipe cannot)."""
    seekable = getattr(lines, "seekable", None)
    with _reading(lines):
        return seekable is not None and seekable()


def parsed(lines: Iterable[str | bytes]) -> Iterator[tuple[int, dict]]:
    """(line number, parsed object) for every non-blank line; ValidationError names a bad line,
    and a run of more than MAX_BLANK_LINES blank lines (an export writes none)."""
    blank = 0
    for number, line in _numbered(lines):
        if line.strip():
            blank = 0
            yield number, _parse_line(number, line)
        elif (blank := blank + 1) > MAX_BLANK_LINES:
            raise ValidationError(
                f"line {number} ends {blank} blank lines in a row: an export writes none; this is "
                "no memoric export, or a damaged one"
            )


def _parse_line(number: int, line: str) -> dict:
    """The JSON object on line `number`; ValidationError names what is wrong with it."""
    try:
        record = _DECODER.decode(line)
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
        except UnicodeDecodeError as exc:  # a file read as text, decoded a block at a time
            after = f" after line {number}" if number else ""
            raise ValidationError(f"{_file_name(lines)} is not UTF-8 text{after} ({exc.reason})") from None
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
        with _reading(lines, after=number):
            line = next(iterator, _END)
        if line is _END:
            return
        number += 1
        line = _as_text_or_bytes(number, line)
        if not readline and _breaks_inside(line):
            raise ValidationError(
                f"line {number} holds a line break before its end: each item of the lines is one "
                "line of an export (split the text at line breaks, or pass io.StringIO(text))"
            )
        if len(line) > MAX_LINE_BYTES:
            raise ValidationError(
                f"line {number} of {_file_name(lines)} is longer than {MAX_LINE_BYTES >> 20} MiB, "
                "longer than any line an export writes: this is no memoric export, or a damaged one"
            )
        yield line


def _breaks_inside(line: str | bytes) -> bool:
    """Whether an item given as a line holds a line break ("\\n") before its end: a file read
    again would split it into two lines."""
    newline = "\n" if isinstance(line, str) else b"\n"
    return line.find(newline, 0, len(line) - 1) >= 0


def _as_text_or_bytes(number: int, line) -> str | bytes:
    """Line `number` as str or bytes (a bytearray or memoryview copied to bytes); ValidationError
    for anything else in the lines."""
    if isinstance(line, (str, bytes)):
        return line
    if isinstance(line, (bytearray, memoryview)):
        return bytes(line)
    raise ValidationError(
        f"line {number} is {type(line).__name__}, not text: the lines of an export are str or bytes"
    )


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
