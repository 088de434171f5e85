"""Pages of one user's metadata-filtered memories equal the reference, whichever way the store finds them.

On PostgreSQL `get_memories` first looks among the user's newest rows and asks the GIN index of
the user's values only when that window does not fill the page, when none of its first rows
matches, or when few of them do and the window holds every row of the user; these cases cover
a full window, a window that comes up short (holding every row of the user, or not), a value only
old rows hold, one the newest rows hold and then only old ones, offsets, other users' rows in
between, and ties on `created_at`.
"""

from __future__ import annotations

import datetime as dt

import pytest

from memoric.db.jsonfilter import contains

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _rows() -> list[dict]:
    rows = []
    for n in range(600):
        kind = "common" if n % 3 == 0 else ("rare" if n in (17, 401) else ("old" if n < 90 else "other"))
        if n in (598, 599) or n < 12:  # the user's two newest rows, then only old ones
            kind = "ends"
        rows.append(
            {
                "user_id": "ada" if n % 4 else "bob",
                "thread_id": f"t{n % 2}",
                "content": f"memory {n}",
                "metadata": {"k": kind, "n": n % 5},
                "created_at": START + dt.timedelta(minutes=n // 3),  # three rows per minute: ties
            }
        )
    return rows


@pytest.fixture
def loaded(db):
    rows = _rows()
    db.insert_memories(rows)
    stored = db.get_memories(limit=None)
    return db, stored


@pytest.mark.parametrize(
    "pattern",
    [{"k": "common"}, {"k": "rare"}, {"k": "old"}, {"k": "ends"}, {"k": "none"}, {"k": "common", "n": 3}],
)
@pytest.mark.parametrize(("limit", "offset"), [(5, 0), (5, 7), (50, 0), (1, 99), (200, 40)])
def test_user_page_equals_the_reference(loaded, pattern, limit, offset):
    db, stored = loaded
    expected = [m["id"] for m in stored if m["user_id"] == "ada" and contains(m["metadata"], pattern)]
    page = db.get_memories(user_id="ada", where_metadata=pattern, limit=limit, offset=offset)
    assert [m["id"] for m in page] == expected[offset : offset + limit]


def test_user_page_with_more_filters_equals_the_reference(loaded):
    db, stored = loaded
    pattern = {"k": "common"}
    expected = [
        m["id"]
        for m in stored
        if m["user_id"] == "ada" and m["thread_id"] == "t1" and contains(m["metadata"], pattern)
    ]
    page = db.get_memories(user_id="ada", thread_id="t1", where_metadata=pattern, limit=10, offset=3)
    assert [m["id"] for m in page] == expected[3:13]
    assert len(page) == 10


@pytest.mark.parametrize("pattern", [{"k": "common"}, {"k": "none"}, {"k": "ends"}])
def test_a_page_larger_than_all_of_a_users_rows_equals_the_reference(loaded, pattern):
    """bob has 150 rows: fewer than the newest rows probed for a page of 200."""
    db, stored = loaded
    expected = [m["id"] for m in stored if m["user_id"] == "bob" and contains(m["metadata"], pattern)]
    page = db.get_memories(user_id="bob", where_metadata=pattern, limit=200)
    assert [m["id"] for m in page] == expected
