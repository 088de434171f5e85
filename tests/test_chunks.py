"""`chunks`: what one statement would take too much of, in lists of a fixed size."""

from __future__ import annotations

import itertools

from memoric.db.chunks import chunks


def test_a_list_comes_in_lists_of_the_size_the_last_one_shorter():
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([1, 2], 5000)) == [[1, 2]]
    assert list(chunks([], 3)) == []


def test_a_generator_is_read_one_chunk_at_a_time():
    read = itertools.count()
    endless = (next(read) for _ in itertools.repeat(None))
    first = next(chunks(endless, 4))
    assert first == [0, 1, 2, 3] and next(read) == 4, "only the first chunk was read"
