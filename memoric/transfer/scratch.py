"""What the check pass of an import or a copy remembers, kept on disk: its memory stays the same
whatever the number of rows.

An unnamed SQLite database (SQLite keeps it in a temporary file, owner-only, deleted when it is
closed) holds each id's line and digest (`SeenRows`), each memory's user (`MemoryOwners`), the
clusters (`KeptClusters`) with the first id seen for each cluster key (`ClusterKeys`) and, for an
import with new ids, each id's rank (`SeenRows.ranks`). Rows go in by batches; an id
that comes in rising order, as an export writes them, is never looked up on the way in.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator

from memoric.errors import MemoricError

FLUSH_ROWS = 10_000  # rows remembered per INSERT batch
# Nothing to recover after a crash, so no journal and no flushes; SQLite's default 2 MiB cache.
PRAGMAS = ("journal_mode = OFF", "synchronous = OFF", "cache_size = -2048")
_SIGN = 1 << 63  # digests are unsigned 64-bit, SQLite's integers signed


class Scratch:
    """The temporary database the bookkeeping lives in; closed (and deleted) with `close`."""

    def __init__(self) -> None:
        with self.guard():
            self.connection = sqlite3.connect("", check_same_thread=False)
            for pragma in PRAGMAS:
                self.connection.execute(f"PRAGMA {pragma}")

    @staticmethod
    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        """A failure of the temporary file (a full or unwritable temporary directory) as a MemoricError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise MemoricError(
                f"could not keep the check's bookkeeping in a temporary file ({exc}): nothing was written"
            ) from exc

    def create(self, table: str, columns: str, key: str = "id INTEGER PRIMARY KEY") -> None:
        with self.guard():
            self.connection.execute(f"CREATE TABLE {table} ({key}, {columns})")

    def insert(self, table: str, rows: list[tuple]) -> None:
        marks = ", ".join("?" * len(rows[0]))
        with self.guard(), self.connection:
            self.connection.executemany(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", rows)

    def one(self, sql: str, params: tuple) -> tuple | None:
        with self.guard():
            return self.connection.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple) -> list[tuple]:
        with self.guard():
            return self.connection.execute(sql, params).fetchall()

    def run(self, sql: str) -> None:
        with self.guard(), self.connection:
            self.connection.execute(sql)

    def close(self) -> None:
        self.connection.close()


class _Table:
    """One table of the scratch database, its rows buffered and written a batch at a time."""

    def __init__(
        self, scratch: Scratch, table: str, columns: str, key: str = "id INTEGER PRIMARY KEY"
    ) -> None:
        self.scratch, self.table = scratch, table
        self._pending: list[tuple] = []
        scratch.create(table, columns, key)

    def buffer(self, row: tuple) -> None:
        self._pending.append(row)
        if len(self._pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.scratch.insert(self.table, self._pending)
            self._pending = []

    def find(self, columns: str, record_id: int) -> tuple | None:
        self.flush()
        return self.scratch.one(f"SELECT {columns} FROM {self.table} WHERE id = ?", (record_id,))


class SeenRows(_Table):
    """The (line, digest) of each id of one kind of record in a file."""

    def __init__(self, scratch: Scratch, kind: str) -> None:
        super().__init__(scratch, f"seen_{kind}", "line INTEGER NOT NULL, digest INTEGER NOT NULL")
        self._top: int | None = None  # the highest id remembered

    def get(self, record_id: int) -> tuple[int, int] | None:
        """The (line, digest) remembered under `record_id`, or None."""
        found = self.find("line, digest", record_id)
        return None if found is None else (found[0], found[1] + _SIGN)

    def remember(self, record_id: int, line: int, digest: int) -> tuple[int, int] | None:
        """Remember (line, digest) under `record_id` unless an earlier one is there; that one, or None.

        An id above every one before it is new, so it is buffered without a look-up.
        """
        earlier = None if self._top is None or record_id > self._top else self.get(record_id)
        if earlier is None:
            self.buffer((record_id, line, digest - _SIGN))
            self._top = record_id if self._top is None else max(self._top, record_id)
        return earlier

    def ranks(self) -> _Ranks:
        """Each id's place among the ids remembered, ascending from 1."""
        self.flush()
        return _Ranks(self.scratch, self.table)


class _Ranks:
    """The rank of each id of a `SeenRows` table, computed once, looked up by id."""

    def __init__(self, scratch: Scratch, seen_table: str) -> None:
        self.scratch, self.table = scratch, f"{seen_table}_ranks"
        scratch.create(self.table, "rank INTEGER NOT NULL")
        scratch.run(f"INSERT INTO {self.table} SELECT id, row_number() OVER (ORDER BY id) FROM {seen_table}")

    def __call__(self, record_id: int) -> int:
        """The rank of `record_id`, which must be one of the ids remembered."""
        return self.scratch.one(f"SELECT rank FROM {self.table} WHERE id = ?", (record_id,))[0]


class MemoryOwners(_Table):
    """The user_id of each memory of a source (the first one given for an id)."""

    def __init__(self, scratch: Scratch) -> None:
        super().__init__(scratch, "owners", "user_id TEXT NOT NULL")

    def add(self, memory_id: int, user_id: str) -> None:
        """Remember that memory `memory_id` is `user_id`'s."""
        self.buffer((memory_id, user_id))

    def get(self, memory_id: int) -> str | None:
        """The user_id of memory `memory_id`, or None when the source does not hold it."""
        found = self.find("user_id", memory_id)
        return None if found is None else found[0]


class KeptClusters(_Table):
    """A source's clusters in the order given, each as its line (None for a database's) and the
    text `Record.kept` makes of it, for the passes that check them after the first."""

    def __init__(self, scratch: Scratch) -> None:
        super().__init__(scratch, "clusters", "line INTEGER, kept TEXT NOT NULL")
        self._count = 0

    def add(self, line: int | None, kept: str) -> None:
        self._count += 1
        self.buffer((self._count, line, kept))

    def __iter__(self) -> Iterator[tuple[int | None, str]]:
        """(line, kept text) of each cluster, a page at a time (memory stays flat)."""
        self.flush()
        after = 0
        while page := self.scratch.all(
            f"SELECT id, line, kept FROM {self.table} WHERE id > ? ORDER BY id LIMIT {FLUSH_ROWS}", (after,)
        ):
            yield from ((line, kept) for _, line, kept in page)
            after = page[-1][0]


class ClusterKeys(_Table):
    """The first cluster (its id and how messages name it) seen for each (user_id, topic, category)."""

    def __init__(self, scratch: Scratch) -> None:
        super().__init__(
            scratch,
            "cluster_keys",
            "cluster_id INTEGER NOT NULL, place TEXT NOT NULL",
            "key TEXT PRIMARY KEY",
        )
        self._unwritten: dict[str, tuple[int, str]] = {}

    def claim(self, key: tuple, cluster_id: int, where: str) -> tuple[int, str]:
        """The (cluster id, where) of the first cluster given with `key`: this one if none was."""
        text = json.dumps(key)
        earlier = self._unwritten.get(text) or self.scratch.one(
            f"SELECT cluster_id, place FROM {self.table} WHERE key = ?", (text,)
        )
        if earlier is not None:
            return tuple(earlier)
        self._unwritten[text] = (cluster_id, where)
        self.buffer((text, cluster_id, where))
        return cluster_id, where

    def flush(self) -> None:
        super().flush()
        self._unwritten.clear()
