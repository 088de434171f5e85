"""A page of one user's memories filtered by metadata: exact however it is read, read the cheaper way.

On PostgreSQL (`memoric.db.newest_rows`) a first statement probes the user's newest rows, then
the page is read by walking the user's newest rows or through the index of the user's values.
Memories saved by another connection between those statements never make the page wrong; a
value few of the newest rows hold is read through the index, a common one walked, whatever
the older rows hold.
"""

from __future__ import annotations

import datetime as dt

import pytest

from memoric import MemoryStore
from memoric.migrate.transactions import intercepted
from tests.helpers.chain import (
    executed_plans,
    most_rows_read,
    sent_statements,
    skip_unless_postgresql_decides,
    steps_run,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


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
    return page, steps_run(executed_plans(db, call))


def _most_read_newest_first(plan: list[str]) -> float:
    """The most rows a step read in `created_at` order, newest first (the probes, and a walk)."""
    return most_rows_read([line for line in plan if "Scan Backward" in line])


def test_postgresql_walks_a_value_older_rows_hold_densely(db):
    """499 rows: 5 of the newest 50 hold the value (one in ten: common), every older one does.
    Spread evenly, 5 in 50 would be 50 holders, too few to fill a page of 50; there are 454, read
    through the index (or a scan of the table), where the walk fills the page within 95 rows."""
    skip_unless_postgresql_decides(db)
    kinds = ["x"] * 449 + ["x" if n % 10 == 0 else "y" for n in range(50)]
    page, plan = _page_and_plan(db, kinds)
    holders = [n for n, kind in enumerate(kinds) if kind == "x"]
    assert page == [f"x {n}" for n in reversed(holders)][:50]
    assert not [line for line in plan if "jsonb_set" in line], "\n".join(plan)  # no index statement ran


def test_postgresql_reads_a_value_only_a_users_newest_rows_hold_through_the_users_index(db):
    """1,999 rows, the newest 4 holding the value: few of the newest 50 (fewer than one in ten),
    and the window covers the user, so the index reads the holders; the walk would read every
    row of the user before asking the index."""
    skip_unless_postgresql_decides(db)
    page, plan = _page_and_plan(db, ["y"] * 1995 + ["x"] * 4)
    assert page == [f"x {n}" for n in range(1998, 1994, -1)]
    assert _most_read_newest_first(plan) <= 50, "\n".join(plan)  # the probe's 50, never the walk's 1,999


def test_postgresql_reads_a_common_value_of_a_user_too_small_to_fill_the_page_through_the_index(db):
    """100 rows, every fifth holding the value: common, but 20 holders cannot fill a page of 50.
    The walk would read them all and come up short; the index is asked at once (the probe, then
    the page: two statements, not three)."""
    skip_unless_postgresql_decides(db)
    db.insert_memories(_rows("ada", ["x" if n % 5 == 0 else "y" for n in range(100)], START))
    db.database.execute_sql("ANALYZE memories")
    call = lambda: db.get_memories(user_id="ada", where_metadata={"k": "x"}, limit=50)  # noqa: E731
    assert [m["content"] for m in call()] == [f"x {n}" for n in range(95, -1, -5)]
    sent = [sql for sql, _ in sent_statements(db.database, call)]
    assert len(sent) == 2 and "jsonb_set" in sent[1], sent
