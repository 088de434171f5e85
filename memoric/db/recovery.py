"""peewee Databases that recover from a lost connection, and create a SQLite file owner-only.

peewee keeps a thread's connection until it is closed; after a server restart, a terminated
backend or a closed SQLite handle every later call would fail on it. These classes drop such a
connection: the call that meets it fails once, the next one reconnects. Once one thread's
connection is found lost, the other threads' connections open at that moment are probed at
their next call (a restart broke them all; a terminated backend only its own), and replaced if
lost, so a lost server costs one failed call, not one per thread. A pool never takes a lost
connection back and fails like any connection error when it is exhausted. A process forked
from one that had connected sets the parent's connections aside and opens its own: two processes
talking over one socket or one SQLite handle read each other's answers. PostgreSQL's classes
are in `recovery_postgres`, SQLite's in `recovery_sqlite`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import peewee
from playhouse.pool import MaxConnectionsExceeded

from memoric import forking
from memoric.errors import MemoricError

# The attribute marking a driver error raised by a COMMIT that lost its connection.
COMMIT_IN_DOUBT = "memoric_commit_in_doubt"
# The connections a forked child inherited: never used, and never closed there (closing a SQLite
# handle could checkpoint or unlock the parent's database; closing a psycopg2 connection ends the
# parent's session); a PostgreSQL one's socket is let go of (`forking.let_go`).
_inherited: list = []
INHERITED_TRANSACTION = (
    "this process was forked inside a transaction of the process it was forked from: that "
    "transaction stays the parent's, so nothing can be read or written in it here; leave the "
    "transaction block first (or fork outside it)"
)


class NotSent(peewee.OperationalError):
    """A statement not sent: its connection was found lost first, so nothing of it was saved."""


class Recovering:
    """A peewee Database that drops a connection the server has closed instead of keeping it.

    peewee keeps a thread's connection until it is closed, so once a server restart or a
    terminated backend broke it, every later call failed ("connection already closed"). Here
    the call that meets the broken connection fails, and the next statement outside a
    transaction finds it lost, drops it (with the transaction state peewee kept for it) and
    connects anew. A transaction the engine has already ended (lost with its connection, or
    rolled back by SQLite itself on SQLITE_FULL, IOERR, NOMEM or BUSY) is not rolled back again:
    there is nothing left to roll back, and trying would replace the error that ended it
    ("cannot rollback - no transaction is active" instead of "database or disk is full").
    Nothing is retried.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._connections_opened = 0  # numbers each connection as it opens (under peewee's lock)
        self._suspect_up_to = 0  # connections numbered up to this were open when one was found lost
        forking.register(self)

    def _initialize_connection(self, connection) -> None:
        """Number the new connection (`connect` holds the Database's lock while it runs)."""
        super()._initialize_connection(connection)
        self._connections_opened += 1
        self._state.number = self._connections_opened

    def after_fork_in_child(self) -> None:
        """In a forked child: set aside every connection the parent had opened, untouched, so the
        parent's sessions go on; the next call here connects anew, once outside any transaction
        the parent had begun (`cursor`)."""
        depth = len(self._state.transactions) + self.inherited_transactions()
        taken = {id(each): each for each in self._take_the_parents_connections()}
        taken.update((id(each), each) for each in self._other_threads_connections())
        for connection in taken.values():
            self._let_go_in_child(connection)
            _inherited.append(connection)
        if self.thread_safe:
            self._lock = threading.Lock()  # another thread of the parent may have held it
        self._state = type(self._state)()
        self._state.inherited_transactions = depth

    def pop_transaction(self):
        """Leave a transaction block; one the parent began before this process was forked from
        it has nothing to pop here."""
        if not self._state.transactions and self.inherited_transactions():
            self._state.inherited_transactions -= 1
            return None
        return super().pop_transaction()

    def inherited_transactions(self) -> int:
        """How deep in transaction blocks the parent had begun this thread is (0 unless this
        process was forked inside one; a thread started here has none)."""
        return getattr(self._state, "inherited_transactions", 0)

    def _take_the_parents_connections(self) -> list:
        """This thread's connection (the only thread a forked child has)."""
        return [] if self._state.conn is None else [self._state.conn]

    def _other_threads_connections(self) -> list:
        """Nothing: the other threads' SQLite handles hold no lock a child could keep."""
        return []

    def _let_go_in_child(self, connection) -> None:
        """Nothing: a SQLite handle holds no lock for a child (SQLite's locks are per process)."""

    def connection_lost(self, probe: bool = False) -> bool:
        """Whether this thread holds a connection that can no longer be used; `probe`, after a
        failed call, asks the server where the driver has not noticed. If so, every connection
        open now is suspect: the restart or outage that broke this one broke them too."""
        if self.is_closed():
            return False
        connection = self._state.conn
        if not (self._lost(connection) or (probe and self._lost_unnoticed(connection))):
            return False
        if self._number() > self._suspect_up_to:  # a loss no earlier one covers
            self._suspect_up_to = self._connections_opened
        return True

    def _suspect_and_lost(self) -> bool:
        """Whether this thread's connection was open when another was found lost, and a probe
        finds it lost too. One that answers is kept, with what its session holds (a lock), and
        is not probed again for that loss."""
        if self.is_closed() or self._number() > self._suspect_up_to:
            return False
        self._state.number = self._suspect_up_to + 1
        return self._probe_lost(self._state.conn)

    def _probe_lost(self, connection) -> bool:
        """Whether `connection` turns out lost when used (SQLite: a handle is lost only when closed)."""
        return self._lost(connection)

    def _lost_unnoticed(self, connection) -> bool:
        """Whether a connection the driver calls usable is lost (SQLite's handles: never)."""
        return False

    def _number(self) -> int:
        return getattr(self._state, "number", 0)

    def transaction_open(self) -> bool:
        """Whether the engine still has a transaction open on this thread's connection."""
        connection = None if self.is_closed() else self._state.conn
        return connection is not None and not self._lost(connection) and self._in_transaction(connection)

    def transaction_ended(self) -> bool:
        """Whether this thread's connection is known to be outside any transaction (whatever
        peewee counts): one a COMMIT or ROLLBACK sent as a statement ended. False for a closed
        or lost connection, where that is not known."""
        connection = None if self.is_closed() else self._state.conn
        return connection is not None and not self._lost(connection) and not self._in_transaction(connection)

    def cursor(self, named_cursor=None):
        """A cursor, on a new connection when this thread's was found lost (outside a transaction);
        MemoricError inside a transaction block a parent process began before forking this one."""
        if self.inherited_transactions():
            raise MemoricError(INHERITED_TRANSACTION)
        replaceable = not (self.in_transaction() or self._transaction_begun_here())
        # A connection kept for a block relying on it (`bound_to_connection`: a PostgreSQL lock
        # lives on it) is never replaced unseen; a statement on it once the server ended it is
        # not sent. Elsewhere a connection the server ended is replaced before it fails a call.
        bound = getattr(self._state, "bound", 0)
        lost = replaceable and (self.connection_lost() or self._suspect_and_lost())
        if lost or (replaceable and not bound and self._ended_here()):
            self._drop_connection()
        elif bound and self._ended_here():
            raise NotSent("the connection was lost before the statement was sent: nothing was written")
        return super().cursor(named_cursor)

    def begin(self, *args, **kwargs) -> None:
        """BEGIN, noting the connection it began on: that connection is not replaced before its
        COMMIT or ROLLBACK (peewee leaves its block before sending COMMIT: sent on a new
        connection, it would commit nothing, silently)."""
        super().begin(*args, **kwargs)
        self._state.began_on = self._state.conn

    def _transaction_begun_here(self) -> bool:
        """Whether this thread's connection has a transaction begun and not yet ended."""
        began_on = getattr(self._state, "began_on", None)
        return began_on is not None and began_on is self._state.conn

    def _ended_here(self) -> bool:
        """Whether the server ended this thread's open connection (an idle timeout, a terminated
        backend): a statement sent on it would fail."""
        return not self.is_closed() and self._ended_by_server(self._state.conn)

    def commit(self) -> None:
        """COMMIT. One that fails with the connection lost is marked `COMMIT_IN_DOUBT`: the
        server may have committed before its answer was lost, or not."""
        try:
            if self._transaction_begun_here() and (self.connection_lost() or self._ended_here()):
                raise peewee.OperationalError(
                    "the connection was lost before COMMIT: nothing of the transaction was saved"
                )
            with self._in_doubt_if_lost():
                super().commit()
        finally:
            self._state.began_on = None

    @contextlib.contextmanager
    def autocommitted(self) -> Iterator[None]:
        """A write of one statement, which commits by itself outside a transaction: one that
        loses its connection there may have been saved too, and its error is marked so."""
        if self.in_transaction():
            yield
            return
        with self._in_doubt_if_lost():
            yield

    def _ended_by_server(self, connection) -> bool:
        """Whether the server has ended an idle connection (SQLite: there is no server)."""
        return False

    @contextlib.contextmanager
    def bound_to_connection(self) -> Iterator[None]:
        """A block relying on this thread's connection staying the one it is (a PostgreSQL lock
        lives on it): a connection the server ended is not replaced unseen, its next call fails."""
        self._state.bound = getattr(self._state, "bound", 0) + 1
        try:
            yield
        finally:  # a child forked inside the block starts with a state of its own
            self._state.bound = max(getattr(self._state, "bound", 0) - 1, 0)

    @contextlib.contextmanager
    def _in_doubt_if_lost(self) -> Iterator[None]:
        """Mark an error of the block `COMMIT_IN_DOUBT` when the connection was lost with it."""
        try:
            yield
        except NotSent:
            raise
        except Exception as exc:
            if self.connection_lost(probe=True):
                setattr(exc, COMMIT_IN_DOUBT, True)
            raise

    def rollback(self) -> None:
        """ROLLBACK, unless the engine has already ended the transaction."""
        try:
            if self.is_closed() or self.transaction_open():
                super().rollback()
        finally:
            self._state.began_on = None

    def savepoint(self) -> peewee._savepoint:
        """A savepoint that, on leaving it, is not rolled back when the whole transaction is gone."""
        return _Savepoint(self)

    def end_session(self) -> None:
        """Close this thread's connection, ending its session (a pool does not take it back)."""
        if not self.is_closed():
            self.close()

    def _drop_connection(self) -> None:
        """Forget this thread's connection and its transaction state, then close it."""
        with self._lock:
            connection, contexts = self._state.conn, self._state.ctx
            self._state.reset()
            self._state.ctx = contexts
        self._discard(connection)

    def _discard(self, connection) -> None:
        """Close a lost connection (which may fail: it is broken)."""
        with contextlib.suppress(Exception):
            connection.close()


class _Savepoint(peewee._savepoint):
    """peewee's savepoint, not rolled back on leaving it when the engine ended the whole
    transaction, nor released in a process forked inside it (the transaction is the parent's)."""

    def commit(self, begin: bool = True) -> None:
        """RELEASE the savepoint, unless this process was forked inside its transaction."""
        if not self.db.inherited_transactions():
            super().commit(begin)

    def rollback(self, begin: bool = True) -> None:
        """ROLLBACK TO the savepoint, unless leaving it after the engine ended the transaction."""
        if begin or self.db.transaction_open():
            super().rollback(begin)


class Pooled:
    """A pool that never takes a lost connection back, and fails like any connection error when exhausted."""

    def connect(self, reuse_if_open: bool = False) -> bool:
        """Check a connection out; an OperationalError when none frees up within the wait timeout."""
        try:
            return super().connect(reuse_if_open)
        except MaxConnectionsExceeded as exc:
            raise peewee.OperationalError(
                f"connection pool exhausted: all {self._max_connections} connections in use ({exc})"
            ) from exc

    def end_session(self) -> None:
        """Close this thread's connection for good: what its session holds (a lock) ends with it."""
        self.manual_close()

    def _discard(self, connection) -> None:
        """Close the lost connection and the idle ones: the restart that broke it broke them too."""
        self._close(connection, close_conn=True)
        self.close_idle()

    def _take_the_parents_connections(self) -> list:
        """Every connection of the pool, idle or checked out by any of the parent's threads; the
        pool left empty, with locks no thread of the parent can hold."""
        idle = [connection for _, _, connection in self._connections]
        in_use = [pooled.connection for pooled in self._in_use.values()]
        self._connections, self._in_use = [], {}
        self._pool_lock = threading.RLock()
        self._pool_available = threading.Condition(self._pool_lock)
        return [*idle, *in_use]
