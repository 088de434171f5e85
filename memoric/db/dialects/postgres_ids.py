"""PostgreSQL's ids: each id column draws from a sequence, which memoric reads, raises past
explicit ids and draws from ahead of a bulk insert, in the lock order every write of the table keeps."""

from __future__ import annotations

import peewee

from memoric.db.dialects.base import driver_error, ids_left, no_id_left, reserved_end

SEQUENCE_LIMIT_EXCEEDED = "2200H"  # the SQLSTATE of nextval past the sequence's maximum


class SequenceIds:
    """The id methods of `Dialect` for tables whose ids come from a sequence (a mixin of the
    PostgreSQL dialect, which supplies `hold_writes`)."""

    def has_id_counter(self, database: peewee.Database, table: str) -> bool:
        """Always: every id column of memoric's tables draws from a sequence."""
        return True

    def id_top(self, database: peewee.Database, table: str, column: str) -> int:
        """The highest id handed out by the table's sequence or stored."""
        sequence = self._sequence(database, table, column)
        return max(self._handed_out_and_stored(database, sequence, table, column))

    def reserve_ids(
        self, database: peewee.Database, table: str, column: str, *, above: int, count: int
    ) -> int:
        """Keep the id sequence from handing out ids up to max(`above`, top + `count`); top.

        top is the highest id handed out or stored. `LOCK ... IN EXCLUSIVE MODE` waits for every
        transaction that is inserting or has drawn ids (an INSERT and `new_ids` lock the table
        before they draw from the sequence) and holds new ones back for this short transaction,
        so no id drawn before the lock is higher than the sequence says; the sequence is then
        raised, never lowered.
        """
        with database.atomic():
            database.execute_sql(f'LOCK TABLE "{table}" IN EXCLUSIVE MODE')
            sequence = self._sequence(database, table, column)
            handed_out, stored = self._handed_out_and_stored(database, sequence, table, column)
            top = max(handed_out, stored)
            wanted = reserved_end(table, top, above, count)
            if wanted > handed_out:
                database.execute_sql("SELECT setval(%s, %s, true)", (sequence, wanted))
        return top

    def _handed_out_and_stored(
        self, database: peewee.Database, sequence: str, table: str, column: str
    ) -> tuple[int, int]:
        """The highest id `sequence` has handed out, and the highest stored in `table` (0 for none)."""
        last, called = database.execute_sql(f"SELECT last_value, is_called FROM {sequence}").fetchone()
        stored = database.execute_sql(f'SELECT COALESCE(MAX("{column}"), 0) FROM "{table}"').fetchone()[0]
        return (last if called else last - 1), stored

    def _sequence(self, database: peewee.Database, table: str, column: str) -> str:
        """The name of the sequence `column` of `table` draws its ids from."""
        return database.execute_sql(
            "SELECT pg_get_serial_sequence(%s, %s)", (f'"{table}"', column)
        ).fetchone()[0]

    def new_ids(self, database: peewee.Database, table: str, column: str, count: int) -> list[int]:
        """`count` values of the id sequence (`nextval`, as an INSERT draws them: never handed out
        twice, even to concurrent transactions), ascending. Like an INSERT, it takes the table's
        write lock before it draws, so `reserve_ids` (which waits for that lock's holders) never
        reads the sequence between a draw and its rows. One lock, taken by both in the same
        order as every write: no deadlock between them (an advisory lock beside it made one)."""
        self.hold_writes(database, table)
        sequence = self._sequence(database, table, column)
        with ids_left(self, database, table):
            rows = database.execute_sql(
                "SELECT nextval(%s) FROM generate_series(1, %s)", (sequence, count)
            ).fetchall()
        return sorted(value for (value,) in rows)

    def refuse_exhausted_ids(self, database: peewee.Database, table: str, error: BaseException) -> None:
        """MemoricError "no id left" for a sequence at its maximum ("nextval: reached maximum value")."""
        if getattr(driver_error(error), "pgcode", None) == SEQUENCE_LIMIT_EXCEEDED:
            raise no_id_left(table) from error
