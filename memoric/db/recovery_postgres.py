"""peewee's PostgreSQL databases, plain and pooled, recovering from a lost connection.

`recovery.Recovering` drops a connection found lost; here is how psycopg2's connections are
judged lost (closed, their state unknown, or failing a round trip after an immediate restart
psycopg2 has not noticed), let go of in a forked child, and set up (JSONB reader, UTF-8).
"""

from __future__ import annotations

import contextlib
import select
import threading
import weakref

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from memoric import forking
from memoric.db import interrupts
from memoric.db.jsoncodec import load_json
from memoric.db.recovery import Pooled, Recovering
from memoric.errors import ConfigError


class PostgresRecovering(Recovering):
    """A PostgreSQL connection is lost when the driver closed it or lost track of its state."""

    # memoric speaks psycopg2 (COPY, its error classes): peewee would pick psycopg 3 when psycopg2
    # is missing; its psycopg2 adapter then says the driver is missing instead.
    psycopg3_adapter = peewee.Psycopg2Adapter

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Every connection opened, by any thread: peewee keeps each thread's in that thread's state.
        self._opened: weakref.WeakSet = weakref.WeakSet()
        # The sessions holding memoric's locks: connection -> its `_KeptSession`.
        self._kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._kept_lock = threading.Lock()

    def keep_session(self) -> None:
        """Keep this thread's session from ending for idleness while it holds a memoric lock
        (one more now): its `idle_session_timeout` is off until it holds none. A block may idle
        longer (a policy run waits on its summarizer), and the lock would end with the session."""
        kept = self._kept_session() or self._keep(self.connection())
        kept.locks += 1
        if kept.locks == 1 and kept.limited:
            self._set_idle_limit(kept, "0")

    def let_session_idle(self) -> None:
        """One memoric lock fewer on this thread's session; with none left, its own
        `idle_session_timeout` is back."""
        kept = self._kept_session()
        if kept is None:
            return
        kept.locks -= 1
        if kept.locks == 0:
            if kept.limited:
                self._set_idle_limit(kept, kept.limit)
            if not kept.set_in_transaction:
                self._forget(self._state.conn)

    def _kept_session(self):
        """The `_KeptSession` of this thread's connection, if it holds or held memoric locks."""
        connection = None if self.is_closed() else self._state.conn
        with self._kept_lock:
            return None if connection is None else self._kept.get(connection)

    def _keep(self, connection) -> _KeptSession:
        limit = self.execute_sql("SELECT current_setting('idle_session_timeout', true)").fetchone()[0]
        with self._kept_lock:
            kept = self._kept[connection] = _KeptSession(limit)
        return kept

    def _forget(self, connection) -> None:
        with self._kept_lock:
            self._kept.pop(connection, None)

    def _set_idle_limit(self, kept: _KeptSession, value: str) -> None:
        """Set the session's limit, noting whether a transaction is open (its ROLLBACK, or a
        savepoint's, would undo the setting: it is set again when the transaction ends)."""
        self.execute_sql("SELECT set_config('idle_session_timeout', %s, false)", (value,))
        kept.set_in_transaction = self._in_transaction(self._state.conn)  # the server's word

    def commit(self) -> None:
        super().commit()
        self._idle_limit_after_transaction()

    def rollback(self) -> None:
        super().rollback()
        self._idle_limit_after_transaction()

    def _idle_limit_after_transaction(self) -> None:
        """A limit set inside the transaction just ended is set again, as it should now stand:
        off while memoric's locks are held, the session's own once none is."""
        kept = self._kept_session()
        if kept is None or not kept.set_in_transaction or self._lost(self._state.conn):
            return
        # The transaction's outcome is what its caller learns: a setting that fails after it
        # (the connection lost just then) is not reported in its place.
        with contextlib.suppress(Exception):
            self._set_idle_limit(kept, "0" if kept.locks else kept.limit)
        if not kept.locks:
            self._forget(self._state.conn)

    def _other_threads_connections(self) -> list:
        """The open connections of every thread: a child lets go of their sockets too, so the
        locks other threads of the parent hold end with the parent."""
        return [connection for connection in self._opened if not connection.closed]

    def after_fork_in_child(self) -> None:
        """Set the parent's connections aside; none of them is this process's own any more."""
        super().after_fork_in_child()
        self._opened = weakref.WeakSet()
        self._kept = weakref.WeakKeyDictionary()  # the parent's sessions, and a lock it may have held
        self._kept_lock = threading.Lock()

    def _lost(self, connection) -> bool:
        """Whether psycopg closed the connection or lost track of its state (the server went away)."""
        return bool(connection.closed) or self._adapter.txn_status(connection) == self._adapter.txn_unknown

    def _ended_by_server(self, connection) -> bool:
        """Whether the server has ended this idle connection: it said something unasked (the
        notice of a terminated backend, the end of the stream), and a round trip fails."""
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
        return bool(readable) and self._probe_lost(connection)

    def _probe_lost(self, connection) -> bool:
        """Whether `connection` fails a round trip (it is in autocommit: the probe begins nothing).
        The failure decides: after an immediate restart psycopg2 may still call it open."""
        try:
            connection.cursor().execute("SELECT 1")
        except Exception:
            return True
        return self._lost(connection)

    def _lost_unnoticed(self, connection) -> bool:
        """Whether a round trip fails on a connection psycopg2 still calls usable, as it does
        after the first failure an immediate restart causes. Only where a statement may be sent:
        not in a failed transaction (every statement fails there) nor while one is running."""
        from psycopg2 import extensions  # the optional driver: present once a connection exists

        status = self._adapter.txn_status(connection)
        idle_or_in_transaction = (extensions.TRANSACTION_STATUS_IDLE, extensions.TRANSACTION_STATUS_INTRANS)
        return status in idle_or_in_transaction and self._probe_lost(connection)

    def _in_transaction(self, connection) -> bool:
        """Whether the server has a transaction open on the connection (in progress or failed)."""
        return self._adapter.txn_status(connection) != self._adapter.txn_idle

    def _let_go_in_child(self, connection) -> None:
        """Let go of the parent's socket here: the parent's session, and the advisory locks it
        holds, then end with the parent, not with a child that outlives it."""
        if not connection.closed:
            forking.let_go(connection.fileno())

    def _initialize_connection(self, connection) -> None:
        """Read JSONB with memoric's reader on this connection only (not psycopg2's global
        `json.loads`): same values, a third of a read's time on 1,000 rows of metadata. Talk
        UTF-8, whatever the database's or role's default client encoding; refuse a database
        that does not store UTF-8."""
        import psycopg2.extras  # the optional driver: present once a connection exists

        encoding = connection.get_parameter_status("server_encoding")
        if encoding != "UTF8":  # SQL_ASCII counts bytes where SQLite counts characters
            name = connection.info.dbname
            connection.close()
            raise ConfigError(
                f"the database's encoding is {encoding} (database {name!r}): memoric stores text as "
                "Unicode, the same on every dialect, and needs a UTF8 database (CREATE DATABASE ... "
                "ENCODING 'UTF8' TEMPLATE template0)"
            )
        super()._initialize_connection(connection)
        self._opened.add(connection)
        interrupts.watch(connection)
        psycopg2.extras.register_default_jsonb(connection, loads=load_json)
        if connection.encoding != "UTF8":  # psycopg2 decodes by what it was told, not by a SET
            connection.set_client_encoding("UTF8")


class _KeptSession:
    """A session holding memoric's locks: how many, and its own `idle_session_timeout`."""

    def __init__(self, limit: str | None) -> None:
        self.limit = limit  # None where the server has no such setting (before PostgreSQL 14)
        self.locks = 0
        self.set_in_transaction = False  # turned off inside a transaction, which may undo it

    @property
    def limited(self) -> bool:
        return self.limit not in (None, "0")


class Postgres(PostgresRecovering, peewee.PostgresqlDatabase):
    """peewee's PostgreSQL database, recovering from a lost connection."""


class PooledPostgres(Pooled, PostgresRecovering, PooledPostgresqlDatabase):
    """playhouse's PostgreSQL pool, recovering from a lost connection."""
