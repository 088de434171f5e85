"""A metadata filter within one user: exact for any user id, and on PostgreSQL served by the GIN
index of `{user_id: metadata}` (migration 008) instead of the index of everyone's values.

The PostgreSQL condition names the user inside a JSON document, so user ids that JSON, a JSON
path or a key comparison could treat specially are checked against a reference, beside ids that
differ from them by one character.
"""

from __future__ import annotations

import datetime as dt

import pytest

from memoric import Memoric, MemoryStore
from memoric.db.jsonfilter import contains
from memoric.errors import MigrationError
from tests.helpers.chain import (
    DISTRIBUTE,
    USER_METADATA,
    executed_plans,
    indexes,
    most_rows_read,
    schema,
    skip_unless_postgresql_decides,
    steps_run,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster

INDEX = "idx_memories_user_metadata_gin"
ODD_USER_IDS = [
    "ada", "ada ", " ada", "Ada", 'a"b', "a\\b", "a\\", '"', "a.b", "a,b", "{a}", "[]", "{}", "$", "*",
    "0", "-1", "1e3", "null", "true", "ü", "u\u0308", "日本", "a\tb", "a\nb", "x" * 128, "x" * 127,
]  # fmt: skip


@pytest.fixture
def odd_users(db):
    """Four memories for each odd user id: three share a topic, one with a list and a nested value."""
    for number, user_id in enumerate(ODD_USER_IDS):
        shared = [{"topic": "shared", "n": n} for n in range(3)]
        rows = [{"user_id": user_id, "content": f"{user_id} {n}", "metadata": shared[n]} for n in range(3)]
        rows.append(
            {
                "user_id": user_id,
                "content": f"{user_id} own",
                "metadata": {"topic": f"own-{number}", "tags": ["a", user_id], "who": {"id": user_id}},
            }
        )
        db.insert_memories(rows)
    return db, db.get_memories(limit=None)


PATTERNS = [
    {"topic": "shared"},
    {"topic": "shared", "n": 2},
    {"tags": ["a"]},
    {"n": 1},
    {"topic": "nobody's"},
    {"tags": []},
    {"who": {}},
    {"tags": [], "n": 0},
]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("limit", [None, 2, 50])
def test_a_users_filter_returns_exactly_that_users_matches(odd_users, pattern, limit):
    db, stored = odd_users
    for user_id in ODD_USER_IDS:
        expected = [m["id"] for m in stored if m["user_id"] == user_id and contains(m["metadata"], pattern)]
        page = db.get_memories(user_id=user_id, where_metadata=pattern, limit=limit)
        assert [m["id"] for m in page] == expected[:limit], repr(user_id)
        assert db.count_memories(user_id=user_id, where_metadata=pattern) == len(expected), repr(user_id)


def test_a_value_that_names_a_user_is_only_that_users(odd_users):
    db, stored = odd_users
    for user_id in ODD_USER_IDS:
        found = db.get_memories(user_id=user_id, where_metadata={"who": {"id": user_id}}, limit=None)
        assert [m["user_id"] for m in found] == [user_id], repr(user_id)
        assert db.get_memories(user_id="ada", where_metadata={"tags": [user_id]}, limit=None) == [
            m for m in stored if m["user_id"] == "ada" and user_id in m["metadata"].get("tags", [])
        ]


@pytest.mark.parametrize("limit", [None, 50])
def test_postgresql_reads_a_users_rare_value_through_the_users_index(db, limit):
    """The plan that ran names the per-user index, in a step that was executed."""
    skip_unless_postgresql_decides(db)
    rows = [
        {"user_id": f"user-{n % 20}", "content": f"memory {n}", "metadata": {"topic": f"t{n % 7}", "n": n}}
        for n in range(4000)
    ]
    db.insert_memories(rows)
    db.database.execute_sql("ANALYZE memories")
    call = lambda: db.get_memories(user_id="user-3", where_metadata={"topic": "t-none"}, limit=limit)  # noqa: E731
    plan = executed_plans(db, call)
    steps = [line for line in plan if f"Index Scan on {INDEX}" in line]
    assert steps and all("never executed" not in step for step in steps), "\n".join(plan)
    assert not [line for line in plan if "idx_memories_metadata_gin" in line]


def test_postgresql_reads_a_value_only_a_users_oldest_rows_hold_through_the_users_index(db):
    """A user with half the table, whose value sits in its oldest rows only: walking everyone's
    newest rows (what the planner picks for ORDER BY ... LIMIT) would read most of the table."""
    skip_unless_postgresql_decides(db)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [
        {
            "user_id": "big" if n % 2 == 0 else f"u{n % 50}",
            "content": f"memory {n}",
            "created_at": start + dt.timedelta(seconds=n),
            "metadata": {"k": "old" if n % 2 == 0 and n < 3000 else "new", "n": n % 7},
        }
        for n in range(10_000)
    ]
    db.insert_memories(rows)
    db.database.execute_sql("ANALYZE memories")
    expected = [m["id"] for m in db.get_memories(user_id="big", limit=None) if m["metadata"]["k"] == "old"]
    call = lambda: db.get_memories(user_id="big", where_metadata={"k": "old"}, limit=50)  # noqa: E731
    assert [m["id"] for m in call()] == expected[:50]
    plan = executed_plans(db, call)
    ran = [line for line in steps_run(plan) if f"Index Scan on {INDEX}" in line]
    assert ran, "\n".join(plan)


def test_postgresql_reads_a_pattern_without_a_scalar_from_the_users_rows(db):
    """`{"tags": []}` gives the per-user index nothing to look up: the user's own index serves it,
    never a scan of everyone's rows."""
    skip_unless_postgresql_decides(db)
    rows = [
        {"user_id": f"user-{n % 40}", "content": f"memory {n}", "metadata": {"tags": [] if n % 3 else ["x"]}}
        for n in range(4000)
    ]
    db.insert_memories(rows)
    db.database.execute_sql("ANALYZE memories")
    for pattern in ({"tags": []}, {"tags": [{}]}):
        expected = sum(1 for row in rows if row["user_id"] == "user-3" and contains(row["metadata"], pattern))
        call = lambda pattern=pattern: db.count_memories(user_id="user-3", where_metadata=pattern)  # noqa: E731
        assert call() == expected
        plan = steps_run(executed_plans(db, call))
        assert not [line for line in plan if "Seq Scan" in line], "\n".join(plan)


def test_postgresql_probes_a_big_users_newest_rows_by_index_without_statistics(dsn):
    """Before any ANALYZE the planner takes a user for a few rows. The probes still read the
    newest rows through the index and stop, instead of sorting all of the user's rows: a rare
    value never reads them all, and a common one only in the walk itself (PostgreSQL's choice
    without statistics, as before the probes)."""
    db = MemoryStore(dsn)
    try:
        db.create_schema()  # a table of its own: never analyzed
        skip_unless_postgresql_decides(db)
        db.database.execute_sql("ALTER TABLE memories SET (autovacuum_enabled = false)")
        kinds = ["old" if n < 30 else ("some" if n % 5 == 0 else "new") for n in range(12_000)]
        rows = [{"user_id": "big", "content": f"big {n}", "metadata": {"k": k}} for n, k in enumerate(kinds)]
        rows += [{"user_id": f"u{n % 60}", "content": f"m {n}", "metadata": {"k": "new"}} for n in range(600)]
        db.insert_memories(rows)
        cases = [("old", 0, 20, 0), ("nobody", 0, 0, 0), ("old", 5, 20, 0), ("some", 5, 20, 1)]
        cases.append(("some", 100, 20, 1))
        for value, offset, found, full_reads in cases:
            page = {"where_metadata": {"k": value}, "limit": 20, "offset": offset}
            call = lambda page=page: db.get_memories(user_id="big", **page)  # noqa: E731
            assert len(call()) == found
            plan = steps_run(executed_plans(db, call))
            read_all = [line for line in plan if "actual rows=12000" in line and "Bitmap Heap Scan" in line]
            assert len(read_all) <= full_reads, "\n".join(plan)
    finally:
        db.close()


def test_008_builds_the_index_for_existing_memories_and_its_rollback_drops_it(dsn):
    memoric = Memoric(dsn)
    store = memoric.migrations.store
    memoric.migrate(DISTRIBUTE)
    for n in range(30):
        store.insert_memory(user_id=f"u{n % 3}", content=f"m{n}", metadata={"n": n % 5})
    before = schema(store)
    expected = [m["id"] for m in store.get_memories(user_id="u1", limit=None) if m["metadata"]["n"] == 4]
    found = lambda: [m["id"] for m in store.get_memories(user_id="u1", where_metadata={"n": 4}, limit=None)]  # noqa: E731

    assert memoric.migrations.upgrade(USER_METADATA) == [USER_METADATA]
    built = indexes(store, "memories")
    assert (INDEX in built) is store.is_postgres
    if store.is_postgres:
        assert "jsonb_path_ops" in built[INDEX] and "jsonb_set" in built[INDEX]
    assert found() == expected

    assert memoric.migrations.downgrade(DISTRIBUTE) == [USER_METADATA]
    assert schema(store) == before
    assert found() == expected
    memoric.close()


@pytest.fixture
def at_007(dsn):
    """(Memoric, its store) of a PostgreSQL database migrated to 007, just before the index."""
    memoric = Memoric(dsn)
    if memoric.migrations.store.is_sqlite:
        memoric.close()
        pytest.skip("the index is PostgreSQL's")
    memoric.migrate(DISTRIBUTE)
    yield memoric, memoric.migrations.store
    memoric.close()


def test_008_refuses_an_index_of_its_name_that_is_another_and_adopts_its_own(at_007):
    memoric, store = at_007
    store.database.execute_sql(f'CREATE INDEX "{INDEX}" ON "memories" ("user_id")')
    foreign = indexes(store, "memories")[INDEX]
    refused = f"a relation named {INDEX} already exists and is not the index 008"
    with pytest.raises(MigrationError, match=refused):
        memoric.migrations.upgrade()
    assert memoric.migrations.current() == DISTRIBUTE
    assert indexes(store, "memories")[INDEX] == foreign

    store.database.execute_sql(f'DROP INDEX "{INDEX}"')
    store.dialect.create_extra_indexes(store.database)  # what a schema built from the models has
    assert memoric.migrations.upgrade(USER_METADATA) == [USER_METADATA]
    assert "jsonb_path_ops" in indexes(store, "memories")[INDEX]


def test_008_never_takes_or_drops_another_tables_index_of_its_name(at_007):
    memoric, store = at_007
    store.database.execute_sql('CREATE TABLE "memories_archive" ("id" int, "user_id" text)')
    store.database.execute_sql(f'CREATE INDEX "{INDEX}" ON "memories_archive" ("user_id")')
    with pytest.raises(MigrationError, match="already exists and is not the index 008 creates"):
        memoric.migrations.upgrade()
    assert memoric.migrations.current() == DISTRIBUTE

    store.dialect.create_extra_indexes(store.database)  # the name is taken: nothing is built
    memoric.migrations.stamp(USER_METADATA)
    assert memoric.migrations.downgrade(DISTRIBUTE) == [USER_METADATA]
    assert INDEX in indexes(store, "memories_archive"), "the rollback dropped another table's index"


def test_008_refuses_an_invalid_index_of_its_own(at_007):
    """What a failed CREATE INDEX CONCURRENTLY leaves: the right definition, never used."""
    memoric, store = at_007
    store.dialect.create_extra_indexes(store.database)
    store.database.execute_sql(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass(%s)", (INDEX,)
    )
    with pytest.raises(MigrationError, match="exists but is invalid"):
        memoric.migrations.upgrade()
    assert memoric.migrations.current() == DISTRIBUTE


@pytest.mark.parametrize("kind", ["TABLE", "VIEW", "SEQUENCE"])
def test_008_refuses_a_table_view_or_sequence_of_its_name(at_007, kind):
    memoric, store = at_007
    body = {"TABLE": "(n int)", "VIEW": "AS SELECT 1 AS n", "SEQUENCE": ""}[kind]
    store.database.execute_sql(f'CREATE {kind} "{INDEX}" {body}')
    refused = f"already exists and is not the index 008 creates: a {kind.lower()}"
    with pytest.raises(MigrationError, match=refused):
        memoric.migrations.upgrade()
    assert memoric.migrations.current() == DISTRIBUTE


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_postgresql_walks_a_common_value_the_newest_row_lacks_for_a_small_page(db, limit):
    """A page of one: the probe still looks at enough of the newest rows to see a common value,
    so the statement walks a few rows instead of reading every holder through the index."""
    skip_unless_postgresql_decides(db)
    kinds = ["note" if n % 2 else "chat" for n in range(4000)]
    rows = [{"user_id": "big", "content": f"m {n}", "metadata": {"kind": k}} for n, k in enumerate(kinds)]
    db.insert_memories(rows)  # the newest row (n = 3999) is a note, the one before a chat
    db.insert_memory(user_id="big", content="newest", metadata={"kind": "chat"})
    db.database.execute_sql("ANALYZE memories")
    call = lambda: db.get_memories(user_id="big", where_metadata={"kind": "note"}, limit=limit)  # noqa: E731
    assert [m["content"] for m in call()] == [f"m {n}" for n in range(3999, 3999 - 2 * limit, -2)]
    plan = steps_run(executed_plans(db, call))
    assert most_rows_read(plan) < 500, "\n".join(plan)  # not the 2,000 holders
