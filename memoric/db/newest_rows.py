"""A page of one user's memories filtered by metadata: walk the user's newest rows, or ask the index.

Used where the dialect says so (`Dialect.window_first`: PostgreSQL). Two ways give the page:

- **the walk** reads the user's newest rows newest first, tests each, and stops when the page is
  full: a common value costs a few rows, where the JSON index would collect every row holding it
  (15 ms for a value in 5 % of 1M rows). It reads at most WINDOW_PER_ROW rows per row asked for.
- **the index** reads the user's holders of the value (`idx_memories_user_metadata_gin`) and
  sorts them: a rare value costs its few holders, where the walk would read the whole window.

A first statement (`probe_statement`) asks whether any of the user's newest rows hold the value
(PROBE_PER_ROW per row asked for, PROBE_AT_LEAST at the fewest); if so, how many rows the user
has, up to the window; and if the window holds them all, how many of those newest rows hold it.
None holds it → the index. The window holds every row of the user, and few of the newest rows
hold it (the walk would read many rows for a few matches) or the user is small and has too few
holders for the walk to fill the page → the index (`index_first`). Otherwise → the walk. A walk
short of a page gives way to the index, a statement of its own that is exact on its own
snapshot: memories saved after the probe never make a short walk look complete.

The probe sees the newest rows only, so it cannot tell how many holders the rest of the user's
rows have: the index is chosen only where it cannot read many. A rule that compared the holders
estimated from the probe (as if spread evenly) with the walk for any user the window covers was
tried and dropped: it chose the index for values older rows hold densely and read thousands of
them, where the walk reads a window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import peewee

from memoric import validation
from memoric.db.filters import filter_nodes, filter_shape, select_memories, slotted
from memoric.db.jsonfilter import all_of
from memoric.db.rows import Slot, bind, memory_rows, slot

if TYPE_CHECKING:
    from memoric.db.store import MemoryStore

WINDOW_PER_ROW = 40  # rows of the user walked per row asked for before the index is asked instead
PROBE_PER_ROW = 1  # the newest rows probed per row asked for, to tell a common value from a rare one
PROBE_AT_LEAST = 50  # and never fewer: with one row probed, a value the newest row lacks looked rare
COMMON_ONE_IN = 10  # a value one in this many of the probed rows hold is common: walk
# A user of at most this many rows per row asked for (a page of 50 from the 100-odd rows of a
# user of the benchmark's 10k), too few for the walk to fill the page, is read through the
# index at once. Never many more: the probe sees only the newest rows, and older ones may hold
# the value densely (at 10 per row asked for, a page of 400 read 3,639 holders where the walk
# read 769).
SMALL_PER_ROW = 3
ORDER = '"created_at" DESC, "id" DESC'


def page(store: MemoryStore, checked: dict, values: dict) -> list[dict]:
    """The page `get_memories` asked for (`checked`: validated filters with a user and a pattern;
    `values`: their slot values with `limit` and `offset`)."""
    wanted = values["offset"] + values["limit"]
    probe = min(max(PROBE_PER_ROW * wanted, PROBE_AT_LEAST), validation.MAX_INT)
    window = min(WINDOW_PER_ROW * wanted, validation.MAX_INT)
    values = {**values, "probe": probe, "window": window}
    shape = filter_shape(checked)  # once per page: it renders the pattern as JSON
    sql, params = _statement(store, probe_statement, checked, shape, offset=False)
    any_held, seen, held = store.database.execute_sql(sql, bind(params, values)).fetchone()
    if not any_held or (seen < window and index_first(held, seen, wanted, probe)):
        return _rows(store, index_statement, checked, shape, values)
    rows = _rows(store, walk_statement, checked, shape, values)
    if len(rows) == values["limit"]:
        return rows
    return _rows(store, index_statement, checked, shape, values)


def index_first(held: int, seen: int, wanted: int, probe: int) -> bool:
    """For a user with `seen` rows (all of them within the window), `held` of whose newest `probe`
    hold the value: whether to read the page through the index rather than walk.

    Yes when fewer than one in COMMON_ONE_IN of those rows hold it: the walk would read many rows
    for a few matches. Yes too for a user of at most SMALL_PER_ROW rows per row asked for, when
    the walk would come up short of the `wanted` rows, were the holders spread as among the
    newest: the walk would read them all, then ask the index anyway.
    """
    sample = min(probe, seen)
    few = held * COMMON_ONE_IN < sample
    return few or (seen <= SMALL_PER_ROW * wanted and held * seen < wanted * sample)


def _statement(store: MemoryStore, build, checked: dict, shape: tuple, offset: bool) -> tuple[str, list]:
    """(sql, params with slots) of one of this module's statements, rendered once per filter shape."""
    key = ("newest_rows", build.__name__, shape, offset)
    return store.statements.get(key, lambda: build(store, checked, offset))


def _rows(store: MemoryStore, build, checked: dict, shape: tuple, values: dict) -> list[dict]:
    sql, params = _statement(store, build, checked, shape, offset=values["offset"] > 0)
    return memory_rows(store, sql, bind(params, values))


def probe_statement(store: MemoryStore, checked: dict, offset: bool) -> tuple[str, list]:
    """(sql, params): `any`, whether one of the user's newest `probe` rows holds the value; if so
    `seen`, the user's rows up to `window`; and if those are fewer, `held`, how many of the newest
    `probe` rows hold it.

    Each reads an index and stops: the newest rows in `created_at` order alone (which rows of a
    tie are probed does not matter), the user's rows in no order. A planner without statistics
    takes a big user for a few rows and may sort them all to count `held`; it is counted only of
    a user the window covers, so such a sort sorts at most a window.
    """
    m, mark = store.Memory, store.database.param
    user_rows = _user_rows(store, checked)
    newest = m.select(m.metadata).where(all_of(user_rows)).order_by(m.created_at.desc()).limit(slot("probe"))
    newest_sql, newest_params = newest.sql()
    seen_sql, seen_params = _seen(store, user_rows)
    test_sql, test_params = _test(store, checked)
    holders = f'SELECT 1 FROM ({newest_sql}) AS "t1" WHERE {test_sql}'
    sql = (
        f'SELECT "any", "seen", CASE WHEN "seen" < {mark} THEN (SELECT count(*) FROM ({holders} '
        ') AS "t1") END AS "held" FROM (SELECT "any", CASE WHEN "any" THEN '
        f'(SELECT count(*) FROM ({seen_sql}) AS "t1") END AS "seen" FROM (SELECT EXISTS ({holders}) '
        'AS "any" OFFSET 0) AS "t1" OFFSET 0) AS "t1"'
    )  # OFFSET 0: each value computed once, not copied into the expressions that use it
    holders_params = [*newest_params, *test_params]
    return sql, [Slot("window"), *holders_params, *seen_params, *holders_params]


def walk_statement(store: MemoryStore, checked: dict, offset: bool) -> tuple[str, list]:
    """(sql, params) of the page among the user's newest `window` rows, walked newest first: the
    walk stops when the page is full."""
    m = store.Memory
    newest = m.select().where(all_of(_user_rows(store, checked)))
    newest = newest.order_by(m.created_at.desc(), m.id.desc()).limit(slot("window"))
    window_sql, window_params = newest.sql()
    test_sql, test_params = _test(store, checked)
    page_sql, page_params = _page(store.database.param, offset)
    sql = f'SELECT * FROM ({window_sql}) AS "t1" WHERE {test_sql} ORDER BY {ORDER} {page_sql}'
    return sql, [*window_params, *test_params, *page_params]


def index_statement(store: MemoryStore, checked: dict, offset: bool) -> tuple[str, list]:
    """(sql, params) of the page read through the index of the user's values: every match,
    sorted. `OFFSET 0` keeps the planner from walking the newest rows of the whole table instead
    (it would for ORDER BY ... LIMIT), the longest walk there is for a value the user's newest
    rows lack."""
    matches_sql, params = select_memories(store, filter_nodes(store, slotted(checked))).sql()
    page_sql, page_params = _page(store.database.param, offset)
    sql = f'SELECT * FROM ({matches_sql} OFFSET 0) AS "t1" ORDER BY {ORDER} {page_sql}'
    return sql, [*params, *page_params]


def _user_rows(store: MemoryStore, checked: dict) -> list:
    """The conditions of every filter but the pattern (the user's rows in scope), with slots."""
    return filter_nodes(store, slotted({**checked, "where_metadata": None, "metadata_key": None}))


def _seen(store: MemoryStore, user_rows: list) -> tuple[str, list]:
    """(sql, params): up to `window` of the user's rows, in no order (any index of the user's)."""
    m = store.Memory
    return m.select(peewee.SQL("1")).where(all_of(user_rows)).limit(slot("window")).sql()


def _test(store: MemoryStore, checked: dict) -> tuple[str, list]:
    """(sql, params) of the pattern tested row by row on `"t1"."metadata"`."""
    contained = store.dialect.contains_row_by_row(store.Memory.metadata, checked["where_metadata"])
    return store.database.get_sql_context().sql(contained).query()


def _page(mark: str, offset: bool) -> tuple[str, list]:
    if offset:
        return f"LIMIT {mark} OFFSET {mark}", [Slot("limit"), Slot("offset")]
    return f"LIMIT {mark}", [Slot("limit")]
