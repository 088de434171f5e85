"""Splitting what one statement would take too much of (ids, rows) into lists of a fixed size."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of at most `size`, read as they come (a generator stays streamed).

    Not `peewee.chunked`: it zips `size` iterators, so each call costs about 0.6 ms at 5,000
    even for ten ids (measured), paid by every single-row update and delete.
    """
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
