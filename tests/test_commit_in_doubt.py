"""A COMMIT that loses its connection: the change may have been saved or not, and the error says so.

A write whose connection is lost before its COMMIT was rolled back, and its MemoricError says the
connection was lost; one lost during its COMMIT may have gone through: retrying a save blindly
could make it twice, so that error is a `CommitInDoubt`, saying to look first. A migration whose
COMMIT was lost may be applied: its error says so instead of "undone". The COMMIT is made to
lose its connection by a PostgreSQL constraint trigger that ends its own backend there (SQLite
has no connection to lose).
"""

from __future__ import annotations

import contextlib

import pytest

from memoric import Memoric
from memoric.errors import CommitInDoubt, MemoricError, MigrationError
from memoric.migrate import HISTORY_TABLE

IN_DOUBT = "the connection was lost during COMMIT: whether the change was saved is not known"


@contextlib.contextmanager
def commit_ends_the_backend(memoric: Memoric, table: str, condition: str):
    """A trigger ending the backend at the COMMIT of a transaction that wrote a row of `table`
    meeting `condition` (on ROW, the row written: NEW, or OLD for a deletion)."""
    if memoric.store.is_sqlite:
        pytest.skip("a COMMIT that loses its connection: PostgreSQL's, ended by a constraint trigger")
    database = memoric.store.database
    database.execute_sql(
        "CREATE FUNCTION end_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ DECLARE "
        "row record := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; BEGIN "
        f"IF {condition} THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
        "RETURN NULL; END $$"
    )
    database.execute_sql(
        f'CREATE CONSTRAINT TRIGGER end_at_commit AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION end_at_commit()"
    )
    try:
        yield
    finally:
        database.execute_sql(f'DROP TRIGGER end_at_commit ON "{table}"')
        database.execute_sql("DROP FUNCTION end_at_commit()")


WRITES = {
    "save": lambda m, memory_id: m.save("ada", "boom again", thread_id="t"),
    "insert_memory": lambda m, memory_id: m.db.insert_memory(user_id="ada", content="boom too"),
    "update_content": lambda m, memory_id: m.db.update_content(memory_id=memory_id, new_content="boom!"),
    "update_metadata": lambda m, memory_id: m.db.update_metadata(memory_id=memory_id, new_metadata={"a": 1}),
    "update_tier": lambda m, memory_id: m.db.update_tier(memory_ids=[memory_id], new_tier="long_term"),
    "set_related_threads":
        lambda m, memory_id: m.db.set_related_threads(memory_id=memory_id, related_threads=["x"]),
    "forget": lambda m, memory_id: m.forget("ada", [memory_id]),
    "delete_memories": lambda m, memory_id: m.db.delete_memories(memory_ids=[memory_id]),
}  # fmt: skip


@pytest.mark.parametrize("write", WRITES)
def test_a_write_whose_commit_loses_the_connection_is_said_to_be_in_doubt(dsn, write):
    memoric = Memoric(dsn)
    memory_id = memoric.save("ada", "boom", thread_id="t")
    ending = commit_ends_the_backend(memoric, "memories", "left(row.content, 4) = 'boom'")
    with ending, pytest.raises(CommitInDoubt, match=IN_DOUBT):
        WRITES[write](memoric, memory_id)
    assert memoric.db.get_memory(memory_id)["content"] == "boom", "the backend ended before its COMMIT"
    memoric.close()


CLUSTER_WRITES = {
    "upsert_cluster": lambda m, cluster_id: m.db.upsert_cluster(
        user_id="ada", topic="boom", category="c", memory_ids=[]
    ),
    "delete_cluster": lambda m, cluster_id: m.db.delete_cluster(cluster_id=cluster_id),
    "rebuild_clusters": lambda m, cluster_id: m.rebuild_clusters("ada"),
}


@pytest.mark.parametrize("write", CLUSTER_WRITES)
def test_a_cluster_write_whose_commit_loses_the_connection_is_said_to_be_in_doubt(dsn, write):
    memoric = Memoric(dsn)
    memoric.save("ada", "a memory", metadata={"topic": "boom", "category": "c"})
    cluster_id = memoric.db.upsert_cluster(user_id="ada", topic="boom", category="c", memory_ids=[])
    table = memoric.store.MemoryCluster._meta.table_name
    with commit_ends_the_backend(memoric, table, "row.topic = 'boom'"), pytest.raises(CommitInDoubt):
        CLUSTER_WRITES[write](memoric, cluster_id)
    assert [c["cluster_id"] for c in memoric.get_clusters("ada")] == [cluster_id]
    memoric.close()


def test_a_save_on_a_connection_the_server_ended_while_idle_is_written_and_not_in_doubt(dsn):
    """A write of one statement sent on such a connection failed, its outcome unknown; the
    connection's end is noticed first (the server said so unasked), and a new one takes the write."""
    memoric = Memoric(dsn)
    memoric.save("ada", "before")
    if memoric.store.is_sqlite:
        pytest.skip("a connection the server ends: PostgreSQL's")
    admin = Memoric(dsn)
    ended = admin.store.database.execute_sql(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    assert ended.fetchone()[0] >= 1
    memoric.save("ada", "after")
    assert [m["content"] for m in memoric.db.get_memories(user_id="ada")] == ["after", "before"]
    memoric.close()
    admin.close()


def test_a_connection_lost_before_the_commit_is_no_doubt(dsn):
    memoric = Memoric(dsn)
    memory_id = memoric.save("ada", "boom", thread_id="t")
    if memoric.store.is_sqlite:
        pytest.skip("a connection lost inside a transaction: PostgreSQL's")
    with pytest.raises(MemoricError) as raised, memoric.db.atomic():
        memoric.db.update_content(memory_id=memory_id, new_content="edited")
        memoric.store.database.execute_sql("SELECT pg_terminate_backend(pg_backend_pid())")
    assert not isinstance(raised.value, CommitInDoubt)
    assert "the connection was lost; the next call reconnects" in str(raised.value)
    memoric.close()


def test_a_migration_whose_commit_loses_the_connection_is_not_said_to_be_undone(dsn):
    memoric = Memoric(dsn)
    *before, last = memoric.migrations.pending()
    memoric.migrations.upgrade(before[-1])
    ending = commit_ends_the_backend(memoric, HISTORY_TABLE, f"row.name = '{last}'")
    with ending, pytest.raises(MigrationError) as raised:
        memoric.migrations.upgrade()
    assert str(raised.value).startswith(
        f"the connection was lost during the COMMIT of migration {last}, so whether it was applied "
        "is not known: see `memoric migrate current`"
    )
    assert "undone" not in str(raised.value)
    assert memoric.migrations.current() == before[-1], "the backend ended before its COMMIT"
    assert memoric.migrations.upgrade() == [last]
    memoric.close()
