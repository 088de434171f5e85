"""What a memoric URL may hold: the schemes memoric opens and the query parameters each takes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qsl

SQLITE_SCHEMES = {"sqlite"}
POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresext"}
POOLED_SUFFIX = "+pool"
MAX_URL_COUNT = 2**31 - 1  # SQLite's counts are C ints


@dataclass(frozen=True)
class UrlParameter:
    """A query parameter memoric accepts: `text` (passed on as written: its driver checks it),
    `count` (a whole number), `seconds` or `utf8` (UTF-8 under any of its names).

    `minimum`: the least count. `positive`: seconds must be above 0; `maximum`: the most seconds.
    `nullable`: `none` (or `null`) is also accepted, and means the library's "no limit".
    """

    kind: str
    minimum: int = 0
    positive: bool = False
    maximum: float = math.inf
    nullable: bool = False


# The query parameters a URL may carry; every other one is refused by name. Their values reach
# peewee, sqlite3 or psycopg2 as constructor arguments, where an unchecked one could change how
# memoric's database behaves (another file, an in-memory database, values read back as other
# types, one connection shared between threads) or fail with a message naming nothing.
# A pool's seconds must be above 0: peewee's pool reads a wait of 0 as "wait forever" and a
# stale timeout of 0 as "never stale".
POOL_PARAMETERS = {
    "max_connections": UrlParameter("count", minimum=1, nullable=True),
    "stale_timeout": UrlParameter("seconds", positive=True, nullable=True),
    "timeout": UrlParameter("seconds", positive=True),
}
# `timeout`: how long a statement waits for another connection's lock (SQLite counts it in
# milliseconds, a C int).
SQLITE_PARAMETERS = {
    "timeout": UrlParameter("seconds", maximum=MAX_URL_COUNT / 1000),
    "cached_statements": UrlParameter("count"),
}
# libpq's connection keywords (PostgreSQL 18's list), passed on as written: libpq checks their
# values and names the keyword in its message. Keywords newer than the installed libpq are
# refused by libpq ("invalid connection option"). `dbname` names the database like the path.
LIBPQ_KEYWORDS = (
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "require_auth",
    "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "sslmode", "requiressl", "sslnegotiation",
    "sslcompression", "sslcert", "sslkey", "sslkeylogfile", "sslpassword", "sslcertmode",
    "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "min_protocol_version", "max_protocol_version", "krbsrvname",
    "gsslib", "gssdelegation", "gssencmode", "service", "target_session_attrs",
    "load_balance_hosts", "oauth_issuer", "oauth_client_id", "oauth_client_secret", "oauth_scope",
)  # fmt: skip
POSTGRES_PARAMETERS = dict.fromkeys(LIBPQ_KEYWORDS, UrlParameter("text"))
# memoric sends and reads text as UTF-8 (and sets it on every connection): another client
# encoding cannot carry every string it accepts.
POSTGRES_PARAMETERS["client_encoding"] = UrlParameter("utf8")
UTF8_NAMES = ("utf8", "unicode")  # as PostgreSQL spells them, case, dashes and underscores aside
# Why memoric refuses parameters its drivers would take.
REFUSED_PARAMETERS = {
    "uri": "SQLite would read the file name as a URI, which can name an in-memory database or another file",
    "detect_types": "it changes the types stored values are read back as",
    "check_same_thread": "memoric gives each thread its own connection, and a pool hands them on itself",
    "autoconnect": "memoric reconnects after a lost connection and connects in every thread",
    "thread_safe": "false shares one connection, and its transactions, between threads",
    "replication": "a replication connection cannot run memoric's queries",
}
# Every parameter name some scheme takes: one of them after a password setting ends its value.
KNOWN_PARAMETERS = {*POOL_PARAMETERS, *SQLITE_PARAMETERS, *POSTGRES_PARAMETERS}


def query_pairs(query: str) -> list[tuple[str, str]]:
    """(name, value) of a URL's query, percent-decoded as libpq decodes it: a `+` is a plus (a
    form's space to `parse_qsl`, which sent `dbname=a+b` to the database `a b`)."""
    return parse_qsl(query.replace("+", "%2B"), keep_blank_values=True)
