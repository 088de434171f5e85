"""PostgreSQL schemas: memoric builds its tables in the first schema on the search path, whatever
its name, and refuses the session's temporary schema, whose tables go when the connection closes."""

from __future__ import annotations

import pytest

from memoric import Memoric
from memoric.db.store import MemoryStore
from memoric.errors import ConfigError
from memoric.migrate import Migrations
from tests.helpers.chain import HEAD
from tests.helpers.cli_runs import invoke, ok
from tests.helpers.dialects import one_line_error, requires_postgres, with_search_path

pytestmark = requires_postgres


def quoted(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def tables_in(dsn: str, schema: str) -> int:
    """How many tables schema `schema` of the database at `dsn` holds."""
    query = "SELECT count(*) FROM pg_tables WHERE schemaname = %s"
    return MemoryStore(dsn).database.execute_sql(query, (schema,)).fetchone()[0]


@pytest.mark.parametrize("name", ["Agents", "Żółw", 'Say"Hi'])
def test_memoric_builds_works_and_rolls_back_in_a_schema_of_any_name(new_postgres_url, name):
    dsn = new_postgres_url()
    MemoryStore(dsn).database.execute_sql(f"CREATE SCHEMA {quoted(name)}")
    url = with_search_path(dsn, quoted(name))
    migrations = Migrations(MemoryStore(url))
    assert migrations.upgrade()[-1] == HEAD and migrations.current() == HEAD

    memoric = Memoric(url, auto_migrate=False)
    memoric.save("ada", "the blue notebook", metadata={"topic": "notes"})
    memoric.save("ada", "a red pen", metadata={"topic": "pens"})
    found = memoric.db.get_memories(user_id="ada", where_metadata={"topic": "notes"})
    assert [memory["content"] for memory in found] == ["the blue notebook"]
    assert [memory["content"] for memory in memoric.retrieve("ada", query="notebook")] == [
        "the blue notebook"
    ]
    assert tables_in(dsn, name) > 0

    assert migrations.downgrade("base", confirm_data_loss=True)[-1].endswith("001_initial_schema")
    assert tables_in(dsn, name) == 1, "the history table stays"
    assert MemoryStore(dsn).database.get_tables() == [], "nothing was built in public"


@pytest.mark.parametrize("search_path", ["pg_temp", "pg_temp,public"])
def test_the_sessions_temporary_schema_is_refused_before_anything_is_built_or_saved(
    new_postgres_url, tmp_path, search_path
):
    dsn = new_postgres_url()
    url = with_search_path(dsn, search_path)
    with pytest.raises(ConfigError, match="temporary schema"):
        Memoric(url).save("ada", "lost when the connection closes?")
    with pytest.raises(ConfigError, match="temporary schema"):
        MemoryStore(url).create_schema()
    source = f"sqlite:///{tmp_path / 'agent.db'}"
    Memoric(source).save("ada", "kept")
    export = str(tmp_path / "agent.jsonl")
    ok(invoke("--dsn", source, "export", export))
    for args in (
        ["copy", "--from", source, "--to", url],
        ["--dsn", url, "import", export],
        ["--dsn", url, "migrate", "upgrade"],
        ["--dsn", url, "init-db"],
    ):
        assert "temporary schema" in one_line_error(invoke(*args)), args
    assert MemoryStore(dsn).database.get_tables() == [], "nothing was built in public"
    ok(invoke("copy", "--from", source, "--to", dsn))
