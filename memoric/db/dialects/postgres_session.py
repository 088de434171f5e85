"""The settings every PostgreSQL session of memoric's gets, through libpq's `options`, after any
of the URL's own so that they win: the defaults a DBA gives a server, database or role cannot
change what memoric answers."""

from __future__ import annotations

# Rows inserted into a GIN index go to its pending list first, which every search scans; the
# default 4 MB list made a containment search take 5 ms at 100k rows, 256 kB keeps it under one,
# and bulk inserts are no slower (they still merge the list in batches).
GIN_PENDING_LIST_LIMIT = "256kB"
SESSION_SETTINGS = {
    "gin_pending_list_limit": GIN_PENDING_LIST_LIMIT,
    # Floats printed in full: below 1 the server rounds them to 15 digits, and a relevance or
    # rank read back would no longer be the double the server computed (nor SQLite's).
    "extra_float_digits": "3",
    # Every match of a GIN index, not a random subset of about this many (0: no limit).
    "gin_fuzzy_search_limit": "0",
    # Text in and out as UTF-8, whatever the database or role default: another encoding cannot
    # carry every string memoric accepts.
    "client_encoding": "UTF8",
    # memoric's row locks and re-reads assume READ COMMITTED: under a database's default of
    # REPEATABLE READ or SERIALIZABLE, concurrent cluster upserts failed with serialization errors.
    "default_transaction_isolation": "read committed",
}


def with_session_settings(options: str | None) -> str:
    """The URL's `options` (None: none) followed by memoric's SESSION_SETTINGS."""
    settings = " ".join(_option(name, value) for name, value in SESSION_SETTINGS.items())
    given = _without_dangling_escape(options or "")
    return f"{given} {settings}" if given else settings


def _option(name: str, value: str) -> str:
    """`-c name=value` for libpq's `options`, which splits at spaces not escaped by a backslash."""
    return "-c " + f"{name}={value}".replace(" ", "\\ ")


def _without_dangling_escape(options: str) -> str:
    """The URL's `options` less a backslash that ends them unescaped: the server drops such a
    backslash, but followed by memoric's settings it would escape the space before them."""
    trailing = len(options) - len(options.rstrip("\\"))
    return options[:-1] if trailing % 2 else options
