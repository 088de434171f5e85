"""Statements a PostgreSQL connection plans once: `PREPARE` on first use, `EXECUTE` after.

Planning memoric's one-user filter statement cost about half a millisecond of every call, and a
save's a quarter of its time; a prepared statement keeps its plan on the connection (PostgreSQL
settles on one generic plan after five runs when it costs no more). Only a statement whose plan
its structure fixes is run this way, and only outside a transaction, where it is a transaction of
its own: an error of the prepared form itself (a pooler that handed the session to another
client, a table changed under the plan) left nothing behind, and the statement runs as it is.
psycopg2 prepares nothing by itself.
"""

from __future__ import annotations

import re
import secrets
import weakref
from collections import OrderedDict

import peewee

from memoric.db.dialects.base import driver_error

PREPARED_PER_CONNECTION = 64  # the oldest is deallocated past this many
# SQLSTATEs of the prepared form failing where the statement itself would not.
MISSING_OR_TAKEN = ("26000", "42P05")  # no such prepared statement / the name is taken: a pooler
PLAN_OUTDATED = "0A000"  # "cached plan must not change result type": the table changed
NOT_PREPARABLE = ("42P18", "42P08")  # a parameter's type cannot be inferred from the statement
_PLACEHOLDER = re.compile(r"%([%s])")


class _Session:
    """What one connection has prepared: names by statement, most recently used last."""

    def __init__(self) -> None:
        self.prefix = f"memoric_{secrets.token_hex(4)}_"  # no other client's name, behind a pooler
        self.names: OrderedDict[str, str] = OrderedDict()
        self.refused: set[str] = set()  # statements PostgreSQL would not prepare
        self.counter = 0
        self.plain = False  # a pooler moves this session: prepare nothing more on it


_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def execute(database: peewee.Database, sql: str, params):
    """The cursor of one statement `sql` (psycopg2 placeholders), prepared on its connection
    outside a transaction."""
    connection = database.cursor().connection  # cursor(): a lost connection is replaced first
    session = _session(connection)
    if session.plain or sql in session.refused or not _idle(connection):
        return database.execute_sql(sql, params)
    name = session.names.get(sql) or _prepare(database, session, sql)
    if name is None:
        return database.execute_sql(sql, params)
    session.names.move_to_end(sql)
    arguments = f"({', '.join(['%s'] * len(params))})" if params else ""
    try:
        return database.execute_sql(f"EXECUTE {name}{arguments}", params)
    except peewee.DatabaseError as error:
        if not _answered_plainly(database, session, sql, error):
            raise
    return database.execute_sql(sql, params)


def _prepare(database: peewee.Database, session: _Session, sql: str) -> str | None:
    """The name `sql` is now prepared under, or None when it is to run unprepared."""
    session.counter += 1
    name = f"{session.prefix}{session.counter}"
    try:
        database.execute_sql(f"PREPARE {name} AS {numbered(sql)}")
    except peewee.DatabaseError as error:
        code = _code(error)
        if code in NOT_PREPARABLE:
            session.refused.add(sql)
        elif code in MISSING_OR_TAKEN:
            session.plain = True
        else:
            raise
        return None
    session.names[sql] = name
    if len(session.names) > PREPARED_PER_CONNECTION:
        _deallocate(database, session.names.popitem(last=False)[1])
    return name


def _answered_plainly(database: peewee.Database, session: _Session, sql: str, error: BaseException) -> bool:
    """Whether `error` of an EXECUTE is the prepared form's own, so the statement runs as it is
    (forgotten, or this connection prepares nothing more)."""
    code = _code(error)
    if code in MISSING_OR_TAKEN:
        session.plain = True
        session.names.clear()
        return True
    if code == PLAN_OUTDATED:
        _deallocate(database, session.names.pop(sql))
        return True
    return False


def _deallocate(database: peewee.Database, name: str) -> None:
    """Free a prepared statement; one the session no longer has is no error."""
    try:
        database.execute_sql(f"DEALLOCATE {name}")
    except peewee.DatabaseError as error:
        if _code(error) not in MISSING_OR_TAKEN:
            raise


def numbered(sql: str) -> str:
    """`sql` with psycopg2's `%s` placeholders as PREPARE's `$1, $2, ...` (`%%` left for psycopg2)."""
    count = 0

    def renumber(match: re.Match) -> str:
        nonlocal count
        if match.group(1) == "%":
            return "%%"
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(renumber, sql)


def _session(connection) -> _Session:
    session = _sessions.get(connection)
    if session is None:
        session = _sessions[connection] = _Session()
    return session


def _idle(connection) -> bool:
    """Whether the connection is outside any transaction (psycopg2 knows without asking)."""
    from psycopg2.extensions import TRANSACTION_STATUS_IDLE

    return connection.get_transaction_status() == TRANSACTION_STATUS_IDLE


def _code(error: BaseException) -> str | None:
    return getattr(driver_error(error), "pgcode", None)
