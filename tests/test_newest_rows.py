"""A page of one user's memories filtered by metadata: exact however it is read, read the cheaper way.

On PostgreSQL (`memoric.db.newest_rows`) a first statement probes the user's newest rows, then
the page is read by walking the user's newest rows or through the index of the user's values.
Memories saved by another connection between those statements never make the page wrong, and a
value the user's index reads in fewer rows than the walk is read through it.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from memoric import MemoryStore
from memoric.db.newest_rows import index_reads_fewer
from memoric.migrate.runner import intercepted
from tests.helpers import executed_plans, skip_unless_postgresql_decides

pytestmark = pytest.mark.citus  # also on a Citus cluster

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("held", "seen", "wanted", "probe", "index"),
    [
        (5, 1000, 50, 50, True),  # about 100 holders; the walk reads about 500 rows for 50
        (4, 1999, 50, 50, True),  # few, short of a page: they may be all there are, the newest rows
        (37, 15_999, 400, 400, True),  # the same for a page of 400
        (13, 1000, 50, 50, False),  # a quarter of the rows: the walk fills the page in about 200
        (5, 10_000, 50, 50, False),  # about 1,000 holders against a walk of about 500 rows
        (6, 1999, 50, 50, False),  # about 240 holders against a walk of about 420 rows
        (40, 60, 50, 50, True),  # about 48 holders: the walk would come up short of the page
        (1, 400, 1, 50, True),  # a page of one: about 8 holders, against a walk of about 50
        (2, 1000, 1, 50, False),  # about 40 holders, against a walk of about 25
    ],
)
def test_the_index_is_asked_when_it_reads_fewer_rows_than_the_walk(held, seen, wanted, probe, index):
    assert index_reads_fewer(held, seen, wanted, probe) is index


def _rows(user: str, kinds: list[str], start: dt.datetime) -> list[dict]:
    """A memory of `user` per kind (metadata `{"k": kind}`), one second apart from `start`."""
    return [
        {
            "user_id": user,
            "content": f"{k} {n}",
            "metadata": {"k": k},
            "created_at": start + dt.timedelta(seconds=n),
        }
        for n, k in enumerate(kinds)
    ]


def test_memories_saved_between_the_statements_never_hide_older_matches(dsn):
    """The probe sees 350 rows, all holding the value: a window of 400 holds them all, so the
    page is walked. Before the walk another connection saves 400 newer rows without the value:
    the walk's window holds none of it now, and the page must still be its 10 newest holders."""
    store, other = MemoryStore(dsn), MemoryStore(dsn)
    try:
        store.create_schema()
        store.insert_memories(_rows("ada", ["x"] * 350, START))
        expected = [m["id"] for m in store.get_memories(user_id="ada", limit=10)]
        sent = []

        def save_newer_rows_after_the_first_statement(real, sql, params=None, *args, **kwargs):
            sent.append(sql)
            if len(sent) == 2:
                other.insert_memories(_rows("ada", ["y"] * 400, START + dt.timedelta(days=1)))
            return real(sql, params, *args, **kwargs)

        with intercepted(store.database, save_newer_rows_after_the_first_statement):
            page = store.get_memories(user_id="ada", where_metadata={"k": "x"}, limit=10)
        assert len(sent) >= 2
        assert [m["id"] for m in page] == expected
        assert store.count_memories(user_id="ada") == 750
    finally:
        other.close()
        store.close()


def _page_and_plan(db, kinds: list[str]) -> tuple[list[str], list[str]]:
    """ada's memories of `kinds` beside 2,000 of other users holding the value: the contents of
    ada's page of 50 holding it, and the steps the statements of that call ran."""
    rows = _rows("ada", kinds, START)
    rows += [{"user_id": f"u{n % 20}", "content": f"m {n}", "metadata": {"k": "x"}} for n in range(2000)]
    db.insert_memories(rows)
    db.database.execute_sql("ANALYZE memories")
    call = lambda: db.get_memories(user_id="ada", where_metadata={"k": "x"}, limit=50)  # noqa: E731
    page = [m["content"] for m in call()]
    return page, [line for line in executed_plans(db, call) if "never executed" not in line]


def _most_read_newest_first(plan: list[str]) -> float:
    """The most rows a step read in `created_at` order, newest first (the probes, and a walk)."""
    steps = [line for line in plan if "Scan Backward" in line]
    return max(float(n) for line in steps for n in re.findall(r"actual rows=([\d.]+)", line))


def test_postgresql_reads_a_value_a_tenth_of_a_users_rows_hold_through_the_users_index(db):
    """1,000 rows, every tenth holding the value: 100 holders read through the index, where the
    walk would read 500 rows to fill a page of 50."""
    skip_unless_postgresql_decides(db)
    page, plan = _page_and_plan(db, ["x" if n % 10 == 0 else "y" for n in range(1000)])
    assert page == [f"x {n}" for n in range(990, 490, -10)]
    assert [line for line in plan if "Index Scan on idx_memories_user_metadata_gin" in line], "\n".join(plan)
    assert _most_read_newest_first(plan) <= 50, "\n".join(plan)  # the probe's 50, never the walk's 500


def test_postgresql_reads_a_value_only_a_users_newest_rows_hold_through_the_users_index(db):
    """1,999 rows, the newest 4 holding the value: spread evenly, 4 of the newest 50 would be 160
    holders, more than the walk's 625 rows are worth; but they may be all there are, and here
    they are: the walk would read every row of the user before asking the index."""
    skip_unless_postgresql_decides(db)
    page, plan = _page_and_plan(db, ["y"] * 1995 + ["x"] * 4)
    assert page == [f"x {n}" for n in range(1998, 1994, -1)]
    assert _most_read_newest_first(plan) <= 50, "\n".join(plan)  # the probe's 50, never the walk's 1,999
