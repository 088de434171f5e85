"""Database URLs: the query parameters each scheme takes (typed, checked, refused by name), and
SQLite file names SQLite would not keep (URI forms, files kept beside a database); playhouse's
own URL schemes left alone."""

from __future__ import annotations

import math
import subprocess
import sys
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db import urls
from memoric.db.store import MemoryStore
from memoric.db.url_parts import POOL_PARAMETERS, POSTGRES_PARAMETERS, SQLITE_PARAMETERS, UrlParameter
from memoric.errors import ConfigError
from tests.helpers.dialects import one_line_error

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


def test_a_sqlite_timeout_that_is_no_number_names_its_range_as_written(tmp_path):
    """The upper bound was written 2.14748e+06."""
    with pytest.raises(ConfigError, match=r"a number of seconds from 0 to 2147483\.647, e\.g\. \?timeout=30"):
        MemoryStore(f"sqlite:///{tmp_path / 'a.db'}?timeout=abc")


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
