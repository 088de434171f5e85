"""Export and copy carry memoric's tables and columns only: a database that also holds the
application's own data (a column its migration added to `memories`, a table of its own) is
refused, naming what would be left behind, unless `--memoric-only` says to leave it."""

from __future__ import annotations

import io
import os

import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from memoric.transfer import copy_database, export_jsonl
from memoric.transfer.leftovers import left_behind
from tests.helpers.chain import built
from tests.helpers.cli_runs import invoke, ok
from tests.helpers.dialects import one_line_error, requires_postgres

LEFT_BEHIND = "column memories.sentiment, column memory_clusters.label, table notes"


def with_application_data(store: MemoryStore) -> None:
    """What an application's migrations add, holding data: two columns and a table."""
    for sql in (
        'ALTER TABLE "memories" ADD COLUMN "sentiment" REAL',
        'ALTER TABLE "memory_clusters" ADD COLUMN "label" TEXT',
        'CREATE TABLE "notes" ("body" TEXT)',
        'UPDATE "memories" SET "sentiment" = 0.5',
        'UPDATE "memory_clusters" SET "label" = \'kept\'',
        'INSERT INTO "notes" ("body") VALUES (\'precious note\')',
    ):
        store.database.execute_sql(sql)


@pytest.fixture
def source(dsn) -> Memoric:
    memoric = built(dsn)
    memoric.save("ada", "likes tea", thread_id="t1", metadata={"topic": "tea"})
    memoric.store.upsert_cluster(user_id="ada", topic="tea", category="general", memory_ids=[1])
    with_application_data(memoric.store)
    return memoric


def test_the_application_data_is_named_columns_first(source):
    assert left_behind(source.store) == LEFT_BEHIND.split(", ")


def test_a_copy_is_refused_before_the_target_is_built(source, new_dsn):
    target = new_dsn()
    error = one_line_error(invoke("copy", "--from", source.store.dsn, "--to", target))
    assert (
        f"a copy carries memoric's tables and columns only, and this database also holds {LEFT_BEHIND}:"
        in error
    )
    assert "--memoric-only" in error
    assert Memoric(target).migrations.current() is None


def test_an_export_is_refused_and_writes_nothing(source, tmp_path):
    path = tmp_path / "all.jsonl"
    error = one_line_error(invoke("--dsn", source.store.dsn, "export", str(path)))
    assert (
        f"an export carries memoric's tables and columns only, and this database also holds {LEFT_BEHIND}:"
        in error
    )
    assert not path.exists()
    assert one_line_error(invoke("--dsn", source.store.dsn, "export")).startswith("Error: an export carries")


def test_memoric_only_copies_and_exports_memorics_data_and_leaves_the_rest(source, new_dsn, tmp_path):
    target = new_dsn()
    copied = ok(invoke("copy", "--from", source.store.dsn, "--to", target, "--memoric-only"))
    assert copied.stdout.startswith("Copied 1 memories and 1 clusters")
    assert [memory["content"] for memory in MemoryStore(target).get_memories()] == ["likes tea"]
    path = tmp_path / "all.jsonl"
    ok(invoke("--dsn", source.store.dsn, "export", "--memoric-only", str(path)))
    assert len(path.read_text().splitlines()) == 4  # header, memory, cluster, end


def test_the_library_refuses_alike_and_takes_memoric_only(source, new_dsn):
    with pytest.raises(ValidationError, match="an export carries memoric's tables and columns only"):
        export_jsonl(source.store, io.StringIO())
    with pytest.raises(ValidationError, match="a copy carries memoric's tables and columns only"):
        copy_database(source.store, built(new_dsn()).store)
    with pytest.raises(ValidationError, match="memoric_only must be True or False"):
        export_jsonl(source.store, io.StringIO(), memoric_only="yes")
    out = io.StringIO()
    assert export_jsonl(source.store, out, memoric_only=True) == {"memories": 1, "clusters": 1}


def test_columns_and_tables_without_data_lose_nothing_and_pass(dsn, tmp_path):
    memoric = built(dsn)
    memoric.save("ada", "likes tea")
    memoric.store.database.execute_sql('ALTER TABLE "memories" ADD COLUMN "sentiment" REAL')
    memoric.store.database.execute_sql('CREATE TABLE "notes" ("body" TEXT)')
    assert left_behind(memoric.store) == []
    ok(invoke("--dsn", memoric.store.dsn, "export", str(tmp_path / "all.jsonl")))


def test_a_column_of_the_postings_holding_a_value_is_named_too(dsn):
    memoric = built(dsn)
    memoric.save("ada", "likes tea")
    memoric.store.database.execute_sql('ALTER TABLE "memory_documents" ADD COLUMN "source" TEXT')
    memoric.store.database.execute_sql('UPDATE "memory_documents" SET "source" = \'crawler\'')
    assert left_behind(memoric.store) == ["column memory_documents.source"]


@requires_postgres
def test_a_table_memoric_may_not_read_is_named_and_the_export_is_refused(new_postgres_url, tmp_path):
    """memoric's role may read its own tables only: the check cannot look into the other one, so
    the export stops, naming it and what to do, and writes nothing."""
    owner = built(new_postgres_url())
    owner.save("ada", "likes tea")
    role = f"memoric_reader_{os.getpid()}"
    for sql in (
        'CREATE TABLE "secretnotes" ("body" TEXT)',
        f'CREATE ROLE "{role}" LOGIN',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'REVOKE SELECT ON "secretnotes" FROM "{role}"',
    ):
        owner.store.database.execute_sql(sql)
    reader = owner.store.dsn.replace("://postgres:", f"://{role}:", 1)
    try:
        path = tmp_path / "all.jsonl"
        error = one_line_error(invoke("--dsn", reader, "export", str(path)))
        assert error.startswith(
            "Error: cannot tell whether table secretnotes holds data the transfer would leave behind: "
            "permission denied for table secretnotes; grant memoric's role SELECT on it"
        )
        assert not path.exists()
        ok(invoke("--dsn", reader, "export", "--memoric-only", str(path)))
    finally:
        owner.store.database.execute_sql(f'DROP OWNED BY "{role}"')
        owner.store.database.execute_sql(f'DROP ROLE "{role}"')


def test_an_export_of_one_user_looks_at_that_users_rows_only(dsn, tmp_path):
    """Another user's value in an application column is not what an export of ada leaves behind."""
    memoric = built(dsn)
    memoric.save("ada", "likes tea")
    memoric.save("bob", "likes coffee")
    memoric.store.database.execute_sql('ALTER TABLE "memories" ADD COLUMN "sentiment" REAL')
    memoric.store.database.execute_sql('UPDATE "memories" SET "sentiment" = 0.5 WHERE "user_id" = \'bob\'')
    path = tmp_path / "ada.jsonl"
    ok(invoke("--dsn", memoric.store.dsn, "export", "--user", "ada", str(path)))
    assert len(path.read_text().splitlines()) == 3  # header, ada's memory, end
    error = one_line_error(invoke("--dsn", memoric.store.dsn, "export", "--user", "bob", str(path)))
    assert "this database also holds column memories.sentiment:" in error
    assert left_behind(memoric.store) == ["column memories.sentiment"]


def test_an_empty_sqlite_full_text_table_holds_nothing_to_leave_behind(tmp_path):
    """FTS5 keeps rows in its shadow tables even when empty; only the table itself is asked."""
    memoric = built(f"sqlite:///{tmp_path / 'fts.db'}")
    memoric.save("ada", "likes tea")
    memoric.store.database.execute_sql('CREATE VIRTUAL TABLE "notes" USING fts5(body)')
    assert left_behind(memoric.store) == []
    memoric.store.database.execute_sql("INSERT INTO \"notes\" (body) VALUES ('precious')")
    assert left_behind(memoric.store) == ["table notes"]
