"""Opening databases: URLs, dialect flags, the SQLite warning and clear errors."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db.connection import _parameters
from memoric.db.dialects.postgres_session import SESSION_SETTINGS
from memoric.db.masking import mask_password
from memoric.db.store import MemoryStore
from memoric.errors import ConfigError, LockTimeout, MemoricError
from memoric.testing import admin_sql, database_url, drop_database
from tests.helpers.dialects import one_line_error, requires_postgres


def test_store_reports_its_dialect(db, dialect):
    assert db.dialect == dialect
    assert db.is_sqlite is (dialect == "sqlite")
    assert db.is_postgres is (dialect == "postgresql")
    assert db.database is not None


OPEN_STORES = "import sys; from memoric import MemoryStore; [MemoryStore(u).close() for u in sys.argv[1:]]"


def stderr_of_a_process_opening(urls: list[str], **environment: str) -> str:
    """What a fresh Python process opening a store on each URL writes to stderr."""
    env = {**os.environ, **environment}
    done = subprocess.run(
        [sys.executable, "-c", OPEN_STORES, *urls], env=env, capture_output=True, text=True, check=True
    )
    return done.stderr


def test_sqlite_logs_one_warning_per_process_and_postgresql_none(new_dsn, dialect):
    logged = stderr_of_a_process_opening([new_dsn(), new_dsn()]).splitlines()
    if dialect == "sqlite":
        assert len(logged) == 1
        assert "SQLite" in logged[0] and "development/testing only" in logged[0]
    else:
        assert logged == []


@pytest.mark.parametrize("silenced", ["0", "false", "off", "No"])
def test_the_environment_silences_the_sqlite_warning(new_dsn, silenced):
    assert stderr_of_a_process_opening([new_dsn()], MEMORIC_SQLITE_WARNING=silenced) == ""


BAD_URLS = [
    ("not a url", "invalid database URL"),
    ("mysql://u:s3cret@localhost/db", "unsupported database URL 'mysql://u:***@localhost/db'"),
    ("oracle://x", "unsupported database URL"),
    ("sqlite://", "in-memory SQLite"),
    ("sqlite:///:memory:", "in-memory SQLite"),
    ("postgresql://u:s3cret@host:port/db", "invalid database URL 'postgresql://u:***@host:port"),
    ("postgresql:///", "invalid database URL"),
    ("postgresql://u:s3cret@localhost", "has no database name"),
    ("postgresql://u:s3cret@host:99999/db", "and the port a number from 1 to 65535"),
    ("postgresql://u:s3cret@[::1]x/db", "invalid database URL 'postgresql://u:***@[::1]x/db'"),
    ("postgresql+pool://u:s3cret@127.0.0.1:1/db", "cannot open database postgresql+pool://u:***@"),
]


@pytest.mark.parametrize(("url", "named"), BAD_URLS)
def test_bad_urls_are_config_errors_naming_the_url_masked(url, named):
    with pytest.raises(ConfigError) as raised:
        MemoryStore(url)
    assert named in str(raised.value) and "s3cret" not in str(raised.value)


def test_unreachable_postgresql_names_the_url_with_the_password_masked():
    with pytest.raises(ConfigError) as raised:
        MemoryStore("postgresql://agent:s3cret@127.0.0.1:1/memories")
    message = str(raised.value)
    assert "postgresql://agent:***@127.0.0.1:1/memories" in message
    assert "s3cret" not in message


def test_missing_sqlite_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        MemoryStore(f"sqlite:///{tmp_path / 'missing' / 'm.db'}")


def test_read_only_sqlite_directory_is_a_config_error(read_only_dir):
    with pytest.raises(ConfigError, match="not writable"):
        MemoryStore(f"sqlite:///{read_only_dir / 'm.db'}")


def test_relative_sqlite_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = MemoryStore("sqlite:///relative.db")
    store.create_schema()
    store.close()
    assert (tmp_path / "relative.db").exists()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_mask_password(url, masked):
    assert mask_password(url) == masked


WITHOUT_DRIVER = "import sys; sys.modules['psycopg2'] = None; "


@pytest.mark.parametrize("url", ["postgresql://agent:pw@localhost/memoric", "postgres+pool://localhost/x"])
def test_postgresql_without_its_driver_is_one_clear_error(url):
    library = WITHOUT_DRIVER + (
        "from memoric import MemoryStore, ConfigError\n"
        "try:\n    MemoryStore(sys.argv[1])\nexcept ConfigError as exc:\n    print(exc)"
    )
    said = subprocess.run([sys.executable, "-c", library, url], capture_output=True, text=True, check=True)
    assert "pip install 'memoric[postgres]'" in said.stdout
    cli = WITHOUT_DRIVER + "from memoric.cli import main; sys.exit(main())"
    ran = subprocess.run([sys.executable, "-c", cli, "--dsn", url, "stats"], capture_output=True, text=True)
    assert ran.returncode == 1
    expected = "Error: PostgreSQL needs its driver, psycopg2: pip install 'memoric[postgres]'"
    assert ran.stderr.splitlines() == [expected]


# --- private files -----------------------------------------------------------------------------


def file_mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def usual_umask():
    """The common umask 022, under which files are created world-readable unless asked otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def used(memoric: Memoric) -> None:
    """Build the schema, write a memory and run the policies: every file memoric makes is there."""
    memoric.save("ada", "a private memory", thread_id="t")
    memoric.run_policies()


def test_the_default_database_its_directory_and_its_files_are_private(tmp_path, monkeypatch, usual_umask):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    used(Memoric())
    home = tmp_path / ".memoric"
    assert file_mode(home) == 0o700
    names = {path.name for path in home.iterdir()}
    assert {"memoric.db", "memoric.db-wal", "memoric.db-shm"} <= names
    assert {"memoric.db.migrations.lock", "memoric.db.policies.lock"} <= names
    assert {name: file_mode(home / name) for name in names} == dict.fromkeys(names, 0o600)


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pool"])
def test_a_new_sqlite_database_named_by_a_url_is_private(tmp_path, usual_umask, scheme):
    used(Memoric(f"{scheme}:///{tmp_path / 'agent.db'}"))
    names = {path.name for path in tmp_path.iterdir()}
    assert {"agent.db", "agent.db-wal", "agent.db-shm", "agent.db.policies.lock"} <= names
    assert {name: file_mode(tmp_path / name) for name in names} == dict.fromkeys(names, 0o600)


def test_existing_files_and_directories_keep_their_modes(tmp_path, monkeypatch, usual_umask):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    (tmp_path / ".memoric").mkdir(mode=0o750)
    (tmp_path / ".memoric" / "memoric.db").touch(mode=0o640)
    used(Memoric())
    assert file_mode(tmp_path / ".memoric") == 0o750
    assert file_mode(tmp_path / ".memoric" / "memoric.db") == 0o640
    assert file_mode(tmp_path / ".memoric" / "memoric.db-wal") == 0o640, "SQLite copies the database's mode"


def test_store_names_the_file_holding_its_database(db, dialect):
    if dialect == "sqlite":
        assert os.path.samefile(db.database_file, db.database.database)
    else:
        assert db.database_file is None


def test_a_url_with_a_fragment_a_nul_or_a_line_break_is_refused_and_opens_nothing(dsn, dialect, tmp_path):
    """`sqlite:///a#b.db` opened a file named `a`; a NUL raised a bare ValueError on PostgreSQL; a
    tab, newline or carriage return was dropped by the URL's parser, which opened another
    database than the one named (`a\tb.db` opened `ab.db`)."""
    joiner = "&" if "?" in dsn else "?"
    if dialect == "sqlite":
        urls = [
            f"sqlite:///{tmp_path / name}" for name in ("a#b.db", "x%00.db", "a\tb.db", "a\nb.db", "a\rb.db")
        ]
    else:
        urls = [f"{dsn}#frag", f"{dsn}{joiner}application_name=a%00b"]
        urls += [dsn.replace("://", f":/{character}/", 1) for character in "\t\n\r"]
    before = sorted(tmp_path.iterdir())
    for url in urls:
        with pytest.raises(
            ConfigError, match=r"invalid database URL.*(has a '#'|NUL character|tab, newline)"
        ):
            MemoryStore(url)
        error = one_line_error(CliRunner().invoke(main, ["--dsn", url, "stats"]))
        assert "invalid database URL" in error
    assert sorted(tmp_path.iterdir()) == before


def test_every_path_to_one_sqlite_file_takes_the_same_lock(tmp_path):
    """The lock file was named after the path as typed: a symlink's runs were not serialised."""
    real = MemoryStore(f"sqlite:///{tmp_path / 'real.db'}")
    real.create_schema()
    (tmp_path / "link.db").symlink_to(tmp_path / "real.db")
    linked = MemoryStore(f"sqlite:///{tmp_path / 'link.db'}")
    with real.lock("policies", timeout=0), pytest.raises(LockTimeout), linked.lock("policies", timeout=0):
        pass
    linked.close()
    real.close()


def test_a_lock_file_that_cannot_be_opened_is_a_memoric_error(tmp_path):
    (tmp_path / "l.db.policies.lock").mkdir()
    store = MemoryStore(f"sqlite:///{tmp_path / 'l.db'}")
    with (
        pytest.raises(MemoricError, match=r"cannot open the lock file .*l\.db\.policies\.lock"),
        store.lock("policies", timeout=0),
    ):
        pass
    store.close()


# Settings a DBA may give a PostgreSQL database (or role) that would change what memoric reads:
# floats rounded to 15 digits, a random subset of a GIN index's matches, text in an encoding that
# cannot carry every string.
DATABASE_SETTINGS = {
    "extra_float_digits": "0",
    "gin_fuzzy_search_limit": "5",
    "client_encoding": "LATIN1",
}


@pytest.mark.parametrize(("setting", "value"), DATABASE_SETTINGS.items())
def test_a_database_setting_changes_no_answer(dsn, dialect, setting, value):
    """memoric sets these on its own connections, so the answers are those of default settings."""
    if dialect == "sqlite":
        pytest.skip("database-level settings are PostgreSQL's")
    store = MemoryStore(dsn)
    store.create_schema()
    kinds = ["rare" if n % 100 == 0 else "common" for n in range(3000)]
    rows = [
        {"user_id": f"user {n % 3}", "content": f"vol ✈ {n} 東京", "metadata": {"k": kind, "x": n / 7}}
        for n, kind in enumerate(kinds)
    ]
    rare = [row for row in rows if row["metadata"]["k"] == "rare"]
    store.insert_memories(rows)
    name = store.database.execute_sql("SELECT current_database()").fetchone()[0]
    store.database.execute_sql(f"ALTER DATABASE \"{name}\" SET {setting} = '{value}'")
    store.database.execute_sql(f'ALTER DATABASE "{name}" SET enable_seqscan = off')  # use the indexes
    store.database.execute_sql("SELECT gin_clean_pending_list('idx_memories_metadata_gin')")  # into the index
    store.close()
    store = MemoryStore(dsn)
    found = store.get_memories(where_metadata={"k": "rare"}, limit=None)
    assert store.count_memories(where_metadata={"k": "rare"}) == len(found) == len(rare) == 30
    assert {m["content"] for m in found} == {row["content"] for row in rare}
    assert {m["metadata"]["x"] for m in found} == {row["metadata"]["x"] for row in rare}
    assert store.get_memories(user_id="✈ nobody", limit=None) == []
    store.close()


@requires_postgres
@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+pool"])
def test_opening_a_store_runs_no_statement_and_its_first_connection_has_memorics_settings(
    new_postgres_url, scheme
):
    """Opening a store only connects: a statement run there (its session settings, once SET on
    the open connection) raised the driver's own error when the connection was lost meanwhile,
    outside every call's error handling. The settings come with the connection instead."""
    url = new_postgres_url().replace("postgresql", scheme, 1)
    store = MemoryStore(url)
    backend = store.database.connection().get_backend_pid()
    with contextlib.closing(MemoryStore(url)) as observer:
        activity = "SELECT query FROM pg_stat_activity WHERE pid = %s"
        assert observer.database.execute_sql(activity, (backend,)).fetchone() == ("",)
    for name, value in SESSION_SETTINGS.items():
        assert store.database.execute_sql(f"SHOW {name}").fetchone()[0] == str(value)
    store.close()


@requires_postgres
@pytest.mark.parametrize(
    ("written", "read"), [("ab%5C", "ab"), ("ab%5C%5C", "ab\\"), ("ab%5C%5C%5C", "ab\\")]
)
def test_options_ending_in_a_backslash_mean_what_they_mean_to_psql(new_postgres_url, written, read):
    """A backslash ending `?options=` escapes nothing (the server drops it); memoric's own settings
    appended after it had their separating space escaped, and the connection failed puzzlingly."""
    url = f"{new_postgres_url()}&options=-c%20application_name%3D{written}"
    with contextlib.closing(MemoryStore(url)) as store:
        assert store.database.execute_sql("SHOW application_name").fetchone() == (read,)
        for name, value in SESSION_SETTINGS.items():
            assert store.database.execute_sql(f"SHOW {name}").fetchone()[0] == str(value)


@requires_postgres
def test_a_plus_in_the_query_is_a_plus_as_libpq_reads_it(postgres_server_url):
    """`?dbname=a+b` reached the database `a b`: Python's form decoding reads `+` as a space."""
    name = f"plus+{os.getpid()}"
    admin_sql(postgres_server_url, f'CREATE DATABASE "{name}"')
    try:
        url = f"{database_url(postgres_server_url, 'postgres')}&dbname={name}"
        with contextlib.closing(MemoryStore(url)) as store:
            assert store.database.execute_sql("SELECT current_database()").fetchone() == (name,)
    finally:
        drop_database(postgres_server_url, name)


@requires_postgres
@pytest.mark.parametrize("written", ["d%C3%A4tenbank", "d%c3%a4tenbank", "dätenbank", "d%C3%A4ten%62ank"])
def test_a_database_name_in_the_url_is_read_percent_decoded_as_libpq_reads_it(postgres_server_url, written):
    """`/d%C3%A4tenbank` reached the database named so literally (psql reaches `dätenbank`),
    while the check of its UTF-8 decoded it: the two disagreed."""
    name = f"dätenbank_{os.getpid()}"
    admin_sql(postgres_server_url, f'CREATE DATABASE "{name}"')
    try:
        url = database_url(postgres_server_url, "NAME").replace("/NAME", f"/{written}_{os.getpid()}")
        with contextlib.closing(MemoryStore(url)) as store:
            assert store.database.execute_sql("SELECT current_database()").fetchone() == (name,)
    finally:
        drop_database(postgres_server_url, name)


@pytest.mark.parametrize(
    ("host", "read"),
    [
        ("[fe80::1%25eth0]:5432", "fe80::1%eth0"),
        ("[::1]", "::1"),
        ("%2Fvar%2FRun", "/var/Run"),
        ("Db.Example", "Db.Example"),
    ],
)
def test_a_url_host_reaches_libpq_as_libpq_reads_it(host, read):
    """An IPv6 zone (`%25eth0`) reached libpq still encoded: "could not translate host name"."""
    url = f"postgresql://u:s3cret@{host}/db"
    assert _parameters(url, urlsplit(url))["host"] == read


@requires_postgres
@pytest.mark.parametrize("case", [str.upper, str.lower])
def test_a_percent_encoded_host_is_a_socket_directory_as_libpq_reads_it(postgres_server_url, case):
    """`postgresql://%2Ftmp%2FSock/db` failed ("could not translate host name"): playhouse passed
    the host on encoded and lowercased; libpq decodes it and keeps its case."""
    parts = urlsplit(postgres_server_url)
    query = dict(parse_qsl(parts.query))
    with tempfile.TemporaryDirectory() as scratch:  # short: a socket's path has at most 107 bytes
        linked = Path(scratch) / "Sockets"
        linked.symlink_to(query.pop("host"))
        host = re.sub("%2F", lambda found: case(found[0]), quote(str(linked), safe=""))
        netloc = f"{parts.netloc.rpartition('@')[0]}@{host}"
        url = urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))
        with contextlib.closing(MemoryStore(url)) as store:
            assert store.database.execute_sql("SELECT 1").fetchone() == (1,)


@requires_postgres
@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+pool"])
def test_a_postgresql_database_not_in_utf8_is_refused_by_name(postgres_server_url, scheme):
    """Before, a SQL_ASCII database measured text in bytes: a save SQLite takes (a word of 40
    Cyrillic letters, one 64-character term) failed there, and 009 could not be applied."""
    name = f"memoric_sql_ascii_{os.getpid()}"
    options = "ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
    admin_sql(postgres_server_url, f'CREATE DATABASE "{name}" {options}')
    url = database_url(postgres_server_url, name).replace("postgresql://", f"{scheme}://", 1)
    refused = rf"the database's encoding is SQL_ASCII \(database '{name}'\): .* needs a UTF8 database"
    try:
        with pytest.raises(ConfigError, match=refused):
            Memoric(url).save("u", "й" * 40)
        assert "needs a UTF8 database" in one_line_error(CliRunner().invoke(main, ["--dsn", url, "stats"]))
    finally:
        drop_database(postgres_server_url, name)


def test_opening_a_sqlite_file_another_connection_reads_waits_the_urls_timeout_only(tmp_path):
    """Switching a file to WAL needs it to itself; another application reading it (in its own
    rollback-journal mode) made the open retry for the default 30 s whatever `?timeout=` said."""
    path = tmp_path / "shared.db"
    with contextlib.closing(Memoric(f"sqlite:///{path}")) as memoric:
        memoric.ensure_schema()  # memoric's own file, which it keeps in WAL mode
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("PRAGMA journal_mode=DELETE")
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM memories").fetchall()  # a shared lock, held
    started = time.monotonic()
    with pytest.raises(MemoricError, match="database is locked"):
        MemoryStore(f"sqlite:///{path}?timeout=0.2").count_memories()
    assert time.monotonic() - started < 15  # the default is 30 s
    reader.execute("COMMIT")
    reader.close()


def test_the_way_out_of_a_hash_in_the_url_is_one_that_opens_the_same_database(dsn, dialect, tmp_path):
    """PostgreSQL decodes `%23` back to `#`; SQLite takes its path as written, so the advice to
    write `%23` opened another, empty file there."""
    url = f"sqlite:///{tmp_path / 'a#b.db'}" if dialect == "sqlite" else f"{dsn}#x"
    with pytest.raises(ConfigError) as refused:
        MemoryStore(url)
    if dialect == "sqlite":
        assert "%23" not in str(refused.value) and "rename the file" in str(refused.value)
    else:
        assert str(refused.value).endswith("write it as %23")


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\x0c"])
def test_a_name_holding_a_character_python_breaks_lines_at_is_reported_whole(postgres_server_url, separator):
    """`str.splitlines` breaks at U+0085, U+2028 and form feed too: the error of a database
    named so was cut inside the name, the reason lost, and the one-line CLI error showed the
    character as a space."""
    name = f"cl1{separator}tail"
    url = database_url(postgres_server_url, quote(name))
    with pytest.raises(ConfigError) as raised:
        MemoryStore(url)
    assert f'database "{name}" does not exist' in str(raised.value)
    error = one_line_error(CliRunner().invoke(main, ["--dsn", url, "stats"]))
    shown = name.replace(separator, separator.encode("unicode_escape").decode("ascii"))
    assert f'database "{shown}" does not exist' in error
