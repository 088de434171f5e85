"""Opening databases: URLs, dialect flags, the SQLite warning and clear errors."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db import urls
from memoric.db.connection import mask_password
from memoric.db.store import MemoryStore
from memoric.db.urls import POOL_PARAMETERS, POSTGRES_PARAMETERS, SQLITE_PARAMETERS, UrlParameter
from memoric.errors import ConfigError, LockTimeout, MemoricError
from tests.helpers.dialects import one_line_error


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


# --- URL query parameters ----------------------------------------------------------------------

BAD_VALUES = {
    "count": ["abc", "-1", "1.5", "", "1e3", "99999999999", "٣", "9" * 5000],
    "seconds": ["abc", "-1", "", "nan", "inf", "1e999", "2,5", "0x10", "none"],
    "utf8": ["LATIN1", "SQL_ASCII", "WIN1252", "", "utf-16", "utf8 "],
}
GOOD_VALUES = {"count": ["1", "64"], "seconds": ["2.5", "30", "1e2"], "utf8": ["UTF8", "utf-8", "Unicode"]}


def bad_values(parameter: UrlParameter) -> list[str]:
    """Values of another form than `parameter` declares: malformed, too small, too large."""
    values = [value for value in BAD_VALUES[parameter.kind] if not (parameter.nullable and value == "none")]
    if parameter.positive:  # 1e-400 is a well-formed number that parses to 0.0
        values += ["0", "0.0", "1e-400"]
    if math.isfinite(parameter.maximum):
        values.append(str(math.floor(parameter.maximum) + 1))
    return values


def good_values(parameter: UrlParameter) -> list[str]:
    """Values of the form `parameter` declares, the smallest included."""
    values = list(GOOD_VALUES[parameter.kind])
    if parameter.kind == "seconds" and not parameter.positive:
        values.append("0")
    if math.isfinite(parameter.maximum):
        values.append(str(math.floor(parameter.maximum)))
    return values + (["none", "NULL"] if parameter.nullable else [])


def typed_cases(dialect: str) -> list[tuple[str, str, UrlParameter]]:
    """(scheme suffix, name, declaration) of every typed parameter a URL of `dialect` takes."""
    cases = [("+pool", name, parameter) for name, parameter in POOL_PARAMETERS.items()]
    own = SQLITE_PARAMETERS if dialect == "sqlite" else POSTGRES_PARAMETERS
    return cases + [("", name, parameter) for name, parameter in own.items() if parameter.kind != "text"]


def with_parameter(dsn: str, suffix: str, name: str, value: str) -> str:
    """`dsn` with `suffix` added to its scheme and the query parameter name=value (replacing one
    of that name the URL already has, as the test server's `host` may be)."""
    scheme, rest = dsn.split("://", 1)
    base, _, query = rest.partition("?")
    kept = [(key, given) for key, given in parse_qsl(query, keep_blank_values=True) if key != name]
    return f"{scheme}{suffix}://{base}?{urlencode([*kept, (name, value)], quote_via=quote)}"


def test_every_typed_url_parameter_of_another_form_is_named_with_the_form_it_needs(dsn, dialect):
    for suffix, name, parameter in typed_cases(dialect):
        for value in bad_values(parameter):
            url = with_parameter(dsn, suffix, name, value)
            with pytest.raises(ConfigError) as raised:
                MemoryStore(url)
            said = f"the parameter {name} must be "
            assert said in str(raised.value) and str(raised.value).startswith("invalid database URL '")
            assert said in one_line_error(CliRunner().invoke(main, ["--dsn", url, "stats"]))


def test_every_typed_url_parameter_takes_the_form_it_names(dsn, dialect):
    for suffix, name, parameter in typed_cases(dialect):
        for value in good_values(parameter):
            store = MemoryStore(with_parameter(dsn, suffix, name, value))
            store.create_schema()
            assert store.get_memory(store.insert_memory(user_id="ada", content=value))["content"] == value
            store.close()


@pytest.mark.parametrize("scheme", ["sqlite+pool", "postgresql+pool"])
@pytest.mark.parametrize("wait", ["timeout=0", "timeout=0.0", "timeout=1e-400", "stale_timeout=0"])
def test_a_pool_wait_or_staleness_of_zero_seconds_is_refused(scheme, wait, tmp_path):
    """peewee's pool reads a wait of 0 as "wait forever" and a stale timeout of 0 as "never"."""
    url = (
        f"{scheme}:///{tmp_path / 'pool.db'}?{wait}"
        if scheme.startswith("sqlite")
        else (f"{scheme}://agent:s3cret@127.0.0.1:1/db?{wait}")
    )
    with pytest.raises(ConfigError, match=r"must be a number of seconds above 0") as raised:
        MemoryStore(url)
    assert "s3cret" not in str(raised.value)
    assert not any(tmp_path.iterdir())


# Parameters every URL of the dialect refuses: each was once handed to peewee, sqlite3 or psycopg2
# as a constructor argument, where it opened another database, lost memories or broke with a
# traceback. Pool parameters are refused without `+pool`.
REFUSED = {
    "sqlite": [
        "uri=true", "uri=false", "detect_types=1", "check_same_thread=false", "check_same_thread=true",
        "isolation_level=abc", "isolation_level=", "factory=abc", "pragmas=abc", "lock_type=DEFERRED",
        "autoconnect=false", "thread_safe=false", "database=other.db", "returning_clause=false",
        "TIMEOUT=5", "sslmode=require",
    ],
    "postgresql": [
        "isolation_level=abc", "isolation_level=9", "cursor_factory=abc", "connection_factory=abc",
        "field_types=1", "register_unicode=false", "encoding=latin1", "async=1", "autoconnect=false",
        "thread_safe=false", "replication=database", "replication=true", "database=other", "uri=true",
        "SSLMODE=require", "cached_statements=5",
    ],
}  # fmt: skip
REFUSED_WITHOUT_POOL = {
    "sqlite": ["max_connections=5", "stale_timeout=5"],
    "postgresql": ["max_connections=5", "stale_timeout=5", "timeout=5"],
}


def refused_cases(dialect: str) -> list[tuple[str, str]]:
    """(scheme suffix, name=value) of every refused case of `dialect`."""
    cases = [(suffix, case) for case in REFUSED[dialect] for suffix in ("", "+pool")]
    return cases + [("", case) for case in REFUSED_WITHOUT_POOL[dialect]]


def with_password(dsn: str) -> str:
    """A PostgreSQL `dsn` with a password in it (the test server trusts local connections)."""
    return dsn.replace("://postgres:@", "://postgres:s3cret@", 1) if "://postgres:@" in dsn else dsn


def test_every_parameter_a_url_does_not_accept_is_refused_by_name(dsn, dialect, tmp_path):
    for suffix, case in refused_cases(dialect):
        name, value = case.split("=", 1)
        url = with_parameter(with_password(dsn), suffix, name, value)
        said = f"it does not accept the parameter {name!r}"
        with pytest.raises(ConfigError) as raised:
            MemoryStore(url)
        message = str(raised.value)
        assert message.startswith("invalid database URL '") and said in message, (url, message)
        assert "it accepts: " in message and "s3cret" not in message
        error = one_line_error(CliRunner().invoke(main, ["--dsn", url, "stats"]))
        assert said in error and "s3cret" not in error
    assert not any(tmp_path.iterdir()), "a refused URL created a file"


# A value for each accepted parameter that keeps the connection to the test database working
# ("" where any other value depends on the machine: libpq reads an empty value as none given;
# the service is defined by the test).
LIBPQ_VALUES = {
    "hostaddr": "", "passfile": "/nonexistent/pgpass", "require_auth": "!gss",
    "channel_binding": "prefer", "connect_timeout": "10", "client_encoding": "UTF8",
    "options": "-c statement_timeout=0", "application_name": "memoric test",
    "fallback_application_name": "memoric", "keepalives": "1", "keepalives_idle": "60",
    "keepalives_interval": "10", "keepalives_count": "5", "tcp_user_timeout": "0",
    "sslmode": "prefer", "requiressl": "0", "sslnegotiation": "postgres", "sslcompression": "0",
    "sslcert": "/nonexistent/client.crt", "sslkey": "/nonexistent/client.key",
    "sslkeylogfile": "", "sslpassword": "unused", "sslcertmode": "allow",
    "sslrootcert": "/nonexistent/root.crt", "sslcrl": "/nonexistent/root.crl",
    "sslcrldir": "/nonexistent", "sslsni": "1", "requirepeer": "",
    "ssl_min_protocol_version": "TLSv1.2", "ssl_max_protocol_version": "TLSv1.3",
    "min_protocol_version": "3.0", "max_protocol_version": "3.0", "krbsrvname": "postgres",
    "gsslib": "gssapi", "gssdelegation": "0", "gssencmode": "disable", "service": "memoric",
    "target_session_attrs": "any", "load_balance_hosts": "disable", "oauth_issuer": "",
    "oauth_client_id": "", "oauth_client_secret": "", "oauth_scope": "",
}  # fmt: skip
POOL_VALUES = {"max_connections": "4", "stale_timeout": "60", "timeout": "5"}


def accepted_values(dsn: str, dialect: str) -> dict[str, str]:
    """A working value for every parameter a plain URL of `dialect` accepts; the connection's
    own for host, port, dbname, user and password."""
    if dialect == "sqlite":
        return {"timeout": "5", "cached_statements": "64"}
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    own = {
        "host": query.get("host", parts.hostname or ""),
        "port": query.get("port", str(parts.port or "")),
        "dbname": parts.path.lstrip("/"),
        "user": query.get("user", parts.username or ""),
        "password": query.get("password", parts.password or ""),
    }
    return own | LIBPQ_VALUES


def libpq_knows(name: str) -> bool:
    """Whether the installed libpq has the connection keyword `name` (newer ones it refuses)."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    try:
        parse_dsn(f"{name}=x")
    except ProgrammingError:
        return False
    return True


def test_every_parameter_a_url_accepts_still_opens(dsn, dialect, tmp_path, monkeypatch):
    (tmp_path / "pg_service.conf").write_text("[memoric]\napplication_name=memoric service\n")
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "pg_service.conf"))
    values = accepted_values(dsn, dialect)
    cases = [("", name, value) for name, value in values.items()]
    cases += [("+pool", name, value) for name, value in POOL_VALUES.items()]
    for suffix, name, value in cases:
        url = with_parameter(dsn, suffix, name, value)
        scheme = urlsplit(url).scheme
        assert name in urls.accepted_parameters(url, urlsplit(url)), (scheme, name)
        if dialect == "postgresql" and not suffix and not libpq_knows(name):
            with pytest.raises(ConfigError, match=f'invalid connection option "{name}"'):
                MemoryStore(url)
            continue
        store = MemoryStore(url)
        store.create_schema()
        content = f"{name}={value}"
        assert store.get_memory(store.insert_memory(user_id="ada", content=content))["content"] == content
        store.close()
    every = set(urls.accepted_parameters(dsn, urlsplit(dsn))) | set(POOL_PARAMETERS)
    assert {name for _, name, _ in cases} == every, "a parameter memoric accepts has no case here"


def test_a_sqlite_url_timeout_is_how_long_a_statement_waits_for_a_lock(tmp_path):
    """SQLite's busy timeout is a pragma memoric sets on every connection: `?timeout=` sets it."""
    store = MemoryStore(f"sqlite:///{tmp_path / 'busy.db'}?timeout=2.5")
    assert store.database.execute_sql("PRAGMA busy_timeout").fetchone() == (2500,)
    store.close()
    default = MemoryStore(f"sqlite:///{tmp_path / 'busy.db'}")
    assert default.database.execute_sql("PRAGMA busy_timeout").fetchone() == (30000,)
    default.close()


# --- SQLite file names SQLite would not keep ------------------------------------------------------

URI_FILE_NAMES = ["file::memory:", "file::memory:?uri=true", "file:agent.db", "file:agent.db?mode=memory"]


@pytest.mark.parametrize("name", URI_FILE_NAMES)
@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pool"])
def test_a_sqlite_file_name_sqlite_reads_as_a_uri_is_refused(name, scheme, tmp_path, monkeypatch):
    """`file::memory:` is an in-memory database in SQLite builds reading every name as a URI:
    a demo on it succeeded and every row vanished at exit."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    url = f"{scheme}:///{name}"
    with pytest.raises(ConfigError, match="reads a file name beginning with 'file:' as a URI"):
        MemoryStore(url)
    error = one_line_error(CliRunner().invoke(main, ["--dsn", url, "demo"]))
    assert "invalid database URL" in error
    assert not any(tmp_path.iterdir()), "a refused URL created a file"


COMPANION_NAMES = [
    "agent.db-wal",
    "agent.db-shm",
    "agent.db-journal",
    "agent.db.migrations.lock",
    "agent.db.policies.lock",
]
KEPT_BESIDE = "the name of a file SQLite or memoric keeps beside a database"


def test_a_sqlite_url_naming_a_file_kept_beside_a_database_is_refused(tmp_path):
    """SQLite deletes a database's -wal file when its last connection closes: a database opened
    under that name was lost. The lock files memoric keeps beside a database are no databases."""
    agent = Memoric(f"sqlite:///{tmp_path / 'agent.db'}")
    agent.save("ada", "kept")
    agent.run_policies()
    (tmp_path / "agent.db-journal").touch()
    (tmp_path / "link.db").symlink_to(tmp_path / "agent.db-wal")
    assert set(COMPANION_NAMES) <= {path.name for path in tmp_path.iterdir()}
    for name in [*COMPANION_NAMES, "link.db", "other.db-WAL"]:
        for scheme in ("sqlite", "sqlite+pool"):
            with pytest.raises(ConfigError, match=KEPT_BESIDE):
                MemoryStore(f"{scheme}:///{tmp_path / name}")
    assert not (tmp_path / "other.db-WAL").exists()
    assert [memory["content"] for memory in agent.db.get_memories()] == ["kept"]


PLAYHOUSE_SCHEMES_AFTER_MEMORIC = """
import sys
from playhouse import db_url
before = dict(db_url.schemes)
import memoric.cli
from memoric import MemoryStore
for url in sys.argv[1:]:
    MemoryStore(url).close()
changed = {name for name in {*before, *db_url.schemes} if before.get(name) is not db_url.schemes.get(name)}
memorics = {name for name, cls in db_url.schemes.items() if cls.__module__.startswith("memoric")}
print(sorted(changed), sorted(memorics))
"""


def test_memoric_leaves_playhouse_url_schemes_alone(tmp_path):
    """Importing memoric and opening stores changes nothing in playhouse.db_url's scheme table,
    so `postgresext://` and the rest keep playhouse's meaning for its other users in the process."""
    urls = [f"sqlite:///{tmp_path / 'a.db'}", f"sqlite+pool:///{tmp_path / 'b.db'}"]
    code = PLAYHOUSE_SCHEMES_AFTER_MEMORIC
    result = subprocess.run([sys.executable, "-c", code, *urls], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[0] == "[] []"


def test_store_names_the_file_holding_its_database(db, dialect):
    if dialect == "sqlite":
        assert os.path.samefile(db.database_file, db.database.database)
    else:
        assert db.database_file is None


def test_a_url_with_a_fragment_or_a_nul_is_refused_and_opens_nothing(dsn, dialect, tmp_path):
    """`sqlite:///a#b.db` opened a file named `a`; a NUL raised a bare ValueError on PostgreSQL."""
    joiner = "&" if "?" in dsn else "?"
    if dialect == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'a#b.db'}", f"sqlite:///{tmp_path / 'x%00.db'}"]
    else:
        urls = [f"{dsn}#frag", f"{dsn}{joiner}application_name=a%00b"]
    before = sorted(tmp_path.iterdir())
    for url in urls:
        with pytest.raises(ConfigError, match=r"invalid database URL .*(has a '#'|NUL character)"):
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
