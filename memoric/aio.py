"""AsyncMemoric: the `Memoric` facade for asyncio code, every method awaitable, the event loop never blocked.

Each call runs the synchronous facade on one of `max_workers` threads of its own. peewee keeps
one connection per thread, so at most `max_workers` connections are open, and `close()` has
every worker close its own before it exits. Why threads and not peewee's `playhouse.pwasyncio`
(peewee 4.5.3, tried): it needs greenlet plus aiosqlite and asyncpg (no psycopg2: asyncpg
refused the server URL, "connect() got an unexpected keyword argument 'options'"), and memoric's
own Database classes broke on its connection wrappers ("'AsyncSqliteConnection' object has no
attribute 'total_changes'" on a failed transaction); threads keep the one tested code path.

Cancelling a task that awaits a call never cuts the call short: a call that had not started
does not run; one that had started runs to its end on its thread (its transaction commits or
rolls back as if awaited) and only its result is dropped. `close()` waits for such calls. A
process forked from one using an AsyncMemoric starts threads of its own at its first call there.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from memoric import forking, validation
from memoric.core import Memoric
from memoric.db.connection import close_idle, pool_capacity
from memoric.errors import ConfigError, MemoricError

# asyncio's own default for thread pools; lowered to the connection pool's size for `+pool` URLs
DEFAULT_MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)
MAX_WORKERS_LIMIT = 256  # every worker thread is started at open and may hold a connection
CLOSED = "this AsyncMemoric is closed"
Result = TypeVar("Result")


class _Workers:
    """Threads running submitted calls in the order submitted; each runs `farewell` as it stops."""

    def __init__(self, farewell: Callable[[], None]) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._farewell = farewell
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._to_restart = 0  # threads to start afresh in a forked child, at its first call
        forking.register(self)

    def grow(self, count: int) -> None:
        """Start `count` more threads."""
        with self._lock:
            self._start(count)

    def _start(self, count: int) -> None:
        for _ in range(count):
            name = f"memoric-aio-{len(self._threads)}"
            self._threads.append(threading.Thread(target=self._serve, name=name, daemon=True))
            self._threads[-1].start()

    def after_fork_in_child(self) -> None:
        """In a forked child (one thread, before anything else runs): the threads did not come
        along, and the parent's queued calls are the parent's. Start as many afresh at the first call."""
        self._jobs, self._lock = queue.SimpleQueue(), threading.Lock()
        self._to_restart, self._threads = len(self._threads), []

    def submit(self, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Future:
        """Queue `function(*args, **kwargs)`; its future. MemoricError once stopping."""
        future: Future = Future()
        with self._lock:
            if self._stopping:
                raise MemoricError(CLOSED)
            if self._to_restart:
                self._start(self._to_restart)
                self._to_restart = 0
            self._jobs.put((future, function, args, kwargs))
        return future

    def _serve(self) -> None:
        """Run jobs until told to stop, then say farewell."""
        while (job := self._jobs.get()) is not None:
            self._run(*job)
            del job  # the next job may be long in coming: keep no result alive meanwhile
        try:
            self._farewell()
        except BaseException as error:  # raised by stop(), once every thread has stopped
            self._errors.append(error)

    @staticmethod
    def _run(future: Future, function: Callable, args: tuple, kwargs: dict) -> None:
        """Run one job into its future, unless it was cancelled before it started."""
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = function(*args, **kwargs)
        except BaseException as error:  # handed to the awaiting task, like concurrent.futures does
            future.set_exception(error)
        else:
            future.set_result(result)

    def stop(self) -> None:
        """Refuse new jobs, let every thread finish what is queued and say farewell, then join them."""
        with self._lock:
            self._stopping = True
            for _ in self._threads:
                self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]


class AsyncMemoric:
    """`Memoric` for asyncio: the same methods, awaitable; `async with AsyncMemoric(...) as m:`.

    Takes `Memoric`'s arguments, plus `max_workers`: how many threads (so connections) serve
    calls; by default asyncio's thread-pool default, at most the connection pool's size for a
    `+pool` URL. Nothing blocks in the constructor: the database is opened by the first await
    (entering `async with` included), which raises what `Memoric(...)` would (e.g. ConfigError).
    The synchronous objects (`db`, `store`, `migrations`, `config`) are reached with `run`.
    """

    def __init__(self, *args: Any, max_workers: int | None = None, **kwargs: Any) -> None:
        if max_workers is not None:
            validation.integer("max_workers", max_workers, minimum=1, maximum=MAX_WORKERS_LIMIT)
        self._arguments = (args, kwargs)
        self._max_workers = max_workers
        self._memoric: Memoric | None = None
        self._workers: _Workers | None = None
        self._opening: asyncio.Task | None = None
        self._closing: asyncio.Task | None = None

    def __repr__(self) -> str:
        return "AsyncMemoric(not opened)" if self._memoric is None else f"Async{self._memoric!r}"

    async def __aenter__(self) -> AsyncMemoric:
        await self._opened()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def run(self, function: Callable[..., Result], /, *args: Any, **kwargs: Any) -> Result:
        """`function(memoric, *args, **kwargs)` on a worker thread, with the `Memoric` underneath.

        The way to everything synchronous, e.g. `await m.run(lambda mem: mem.db.count_memories())`.
        """
        memoric = await self._opened()
        call = functools.partial(function, memoric, *args, **kwargs)
        future = self._workers.submit(contextvars.copy_context().run, call)
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Close every worker's connection (after its calls end) and stop the workers; for good."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _opened(self) -> Memoric:
        """The `Memoric`, opened once for every caller (a cancelled caller does not cancel it)."""
        if self._closing is not None:
            raise MemoricError(CLOSED)
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> Memoric:
        """Build the `Memoric` on a first worker (so no other thread ever connects), then start the rest."""
        self._workers = _Workers(farewell=self._close_connection)
        self._workers.grow(1)
        args, kwargs = self._arguments
        try:
            self._memoric = await asyncio.wrap_future(self._workers.submit(Memoric, *args, **kwargs))
            size = self._size(pool_capacity(self._memoric.store.database))
        except BaseException:
            await asyncio.to_thread(self._stop_workers)
            self._memoric = None
            raise
        self._workers.grow(size - 1)
        return self._memoric

    def _close_connection(self) -> None:
        """A worker's farewell: close its connection (it has none when the `Memoric` was not built)."""
        if self._memoric is not None:
            self._memoric.close()

    def _size(self, capacity: int | None) -> int:
        """How many workers: as asked (never more than the pool holds), or the default the pool allows."""
        if self._max_workers is None:
            return min(DEFAULT_MAX_WORKERS, capacity or DEFAULT_MAX_WORKERS)
        if capacity is not None and self._max_workers > capacity:
            raise ConfigError(
                f"max_workers={self._max_workers} is more than the connection pool holds "
                f"(max_connections={capacity}): lower max_workers or raise ?max_connections in the URL"
            )
        return self._max_workers

    async def _close(self) -> None:
        """Once opening is over, shut the workers down (nothing to do when opening failed)."""
        if self._opening is not None and not self._opening.done():
            await asyncio.wait([self._opening])
        if self._memoric is not None:
            await asyncio.to_thread(self._stop_workers)

    def _stop_workers(self) -> None:
        """Stop the workers (each closes its connection), then close the connections a pool keeps idle."""
        try:
            self._workers.stop()
        finally:
            if self._memoric is not None:
                close_idle(self._memoric.store.database)


def _awaitable(method: Callable) -> Callable:
    """The coroutine function running `method` of the `Memoric` on a worker (signature and doc kept)."""

    @functools.wraps(method)
    async def call(self: AsyncMemoric, *args: Any, **kwargs: Any) -> Any:
        return await self.run(method, *args, **kwargs)

    call.__module__ = __name__
    call.__qualname__ = f"{AsyncMemoric.__name__}.{method.__name__}"
    return call


def _facade_methods() -> dict[str, Callable]:
    """The public methods of `Memoric`: the ones `AsyncMemoric` must offer awaitable."""
    methods = inspect.getmembers(Memoric, inspect.isfunction)
    return {name: method for name, method in methods if not name.startswith("_")}


for _name, _method in _facade_methods().items():
    if _name not in vars(AsyncMemoric):
        setattr(AsyncMemoric, _name, _awaitable(_method))
del _name, _method


def _constructor_signature() -> inspect.Signature:
    """`Memoric(...)`'s parameters, then `max_workers`: what `AsyncMemoric(...)` takes."""
    facade = inspect.signature(Memoric.__init__)
    workers = inspect.signature(AsyncMemoric.__init__).parameters["max_workers"]
    return facade.replace(parameters=[*facade.parameters.values(), workers])


AsyncMemoric.__init__.__signature__ = _constructor_signature()
