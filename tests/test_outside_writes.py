"""Rows written outside memoric (a SQL shell, another program): what memoric cannot read, or an
import would refuse, is an error naming the column, never a traceback or a backup that cannot be
restored."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db.store import MemoryStore
from memoric.errors import ConfigError, MemoricError, ValidationError
from memoric.migrate import Migrations
from memoric.testing import admin_sql, database_url, drop_database
from memoric.transfer import export_jsonl
from tests.helpers.dialects import one_line_error


def saved(dsn: str) -> tuple[MemoryStore, int]:
    """A store at head holding three memories, and the id of the one to break."""
    store = MemoryStore(dsn)
    store.create_schema()
    Migrations(store).stamp("head")
    ids = [store.insert_memory(user_id="ada", content=f"memory {n}", thread_id="t") for n in range(3)]
    return store, ids[1]


def cli_export(dsn: str, tmp_path) -> str:
    """The one error line of `memoric export` into a file, which must not be left behind."""
    target = tmp_path / "backup.jsonl"
    error = one_line_error(CliRunner().invoke(main, ["--dsn", dsn, "export", str(target)]))
    assert not target.exists()
    return error


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("score", "500", "score"),
        ("tier", "'bogus'", "tier"),
        ("content", "''", "content"),
        ("user_id", "'  '", "user_id"),
    ],
)
def test_an_export_stops_at_a_row_an_import_would_refuse(dsn, tmp_path, column, value, problem):
    store, broken = saved(dsn)
    store.database.execute_sql(f"UPDATE memories SET {column} = {value} WHERE id = {broken}")
    error = cli_export(dsn, tmp_path)
    assert f"memory {broken}" in error and problem in error and "nothing was exported" in error
    store.close()


@pytest.mark.parametrize(
    ("column", "value", "said"),
    [
        ("created_at", "'yesterday'", r"memories\.created_at holds a value memoric cannot read, 'yesterday'"),
        ("tier", "CAST(x'c3' AS TEXT)", "Could not decode to UTF-8 column 'tier'"),
    ],
)
def test_a_value_sqlite_holds_but_memoric_cannot_read_is_an_error_naming_the_column(
    dsn, dialect, tmp_path, column, value, said
):
    if dialect != "sqlite":
        pytest.skip("PostgreSQL keeps only valid timestamps, and text in its encoding")
    store, broken = saved(dsn)
    store.database.execute_sql(f"UPDATE memories SET {column} = {value} WHERE id = {broken}")
    with pytest.raises(MemoricError, match=said):
        store.get_memory(broken)
    with pytest.raises(MemoricError, match=said):
        store.get_memories(user_id="ada")
    assert re.search(said, cli_export(dsn, tmp_path))
    store.close()


@pytest.fixture
def text_dsn(dsn, dialect, request):
    """A database that lets a column hold text that is not UTF-8: any SQLite file, or a PostgreSQL
    database created with the SQL_ASCII encoding (which stores bytes as they come, and which
    memoric refuses)."""
    if dialect == "sqlite":
        yield dsn
        return
    server = request.getfixturevalue("postgres_server_url")
    name = f"memoric_sql_ascii_{uuid.uuid4().hex[:8]}"
    admin_sql(
        server, f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    )
    yield database_url(server, name)
    drop_database(server, name)


def test_stored_text_that_is_not_utf8_is_an_error_naming_it(text_dsn, dialect, tmp_path):
    """SQLite keeps any bytes in a text column; a PostgreSQL database that would (SQL_ASCII) is
    refused at connection, naming its encoding."""
    if dialect != "sqlite":
        with pytest.raises(ConfigError, match="the database's encoding is SQL_ASCII"):
            saved(text_dsn)
        assert "the database's encoding is SQL_ASCII" in cli_export(text_dsn, tmp_path)
        return
    store, broken = saved(text_dsn)
    store.database.execute_sql(f"UPDATE memories SET thread_id = x'ff' WHERE id = {broken}")
    said = "UTF-8"
    with pytest.raises(MemoricError, match=said):
        store.get_memory(broken)
    assert said in cli_export(text_dsn, tmp_path)
    store.close()


def test_an_export_that_fails_has_written_nothing_even_to_a_stream(dsn):
    """Every row is checked before the first line goes out: a pipe into `memoric import` must not
    receive the rows before the bad one, which it would import as if they were the whole export."""
    store, broken = saved(dsn)
    store.database.execute_sql(f"UPDATE memories SET score = 500 WHERE id = {broken}")
    out = io.StringIO()
    with pytest.raises(ValidationError, match=f"memory {broken}: score"):
        export_jsonl(store, out)
    assert out.getvalue() == ""
    result = CliRunner().invoke(main, ["--dsn", dsn, "export", "-"])
    assert result.exit_code == 1 and result.stdout == ""
    store.close()


def test_an_export_stops_at_a_cluster_listing_a_memory_it_would_not_hold(dsn, tmp_path):
    store, broken = saved(dsn)
    ids = [m["id"] for m in store.get_memories(limit=None)]
    store.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=sorted(ids))
    store.database.execute_sql(f"DELETE FROM memories WHERE id = {broken}")
    error = cli_export(dsn, tmp_path)
    assert f"lists memory {broken}, which is not a memory of its user_id 'ada' here" in error
    assert error.rstrip().endswith(
        "rebuild that user's clusters (`rebuild_clusters`, or `memoric "
        "clusters --rebuild`), or correct or delete that row"
    )
    store.close()


def test_memories_deleted_through_the_store_leave_their_clusters_and_the_export_works(dsn):
    """`delete_memories` kept the clusters listing them: every export after it was refused."""
    m = Memoric(dsn)
    ids = [m.save("ada", f"note {n}", metadata={"topic": "t"}) for n in range(3)]
    m.rebuild_clusters()
    m.db.delete_memories(memory_ids=ids[:1])
    assert m.get_clusters("ada")[0]["memory_ids"] == ids[1:]
    assert CliRunner().invoke(main, ["--dsn", dsn, "export", "-"]).exit_code == 0
    m.close()


@pytest.mark.parametrize("new_id", [0, -5])
def test_a_memory_with_an_id_below_1_stops_an_export_and_a_copy(dsn, new_dsn, tmp_path, new_id):
    """Rows are read from the lowest id, whatever it is: none is left out of a backup unseen."""
    store, broken = saved(dsn)
    store.database.execute_sql(f"UPDATE memories SET id = {new_id} WHERE id = {broken}")
    assert f"memory {new_id}: id must be an int from 1" in cli_export(dsn, tmp_path)
    copied = CliRunner().invoke(main, ["copy", "--from", dsn, "--to", new_dsn()])
    assert f"source memory {new_id}: id must be an int from 1" in one_line_error(copied)
    store.close()
