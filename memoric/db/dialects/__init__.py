"""The SQL dialects memoric speaks, each an implementation of `Dialect` (see `base`)."""

from __future__ import annotations

from memoric.db.dialects.base import Dialect
from memoric.db.dialects.postgres_ddl import GUARD_NOTE, gin_index_code
from memoric.db.dialects.postgresql import PostgresDialect
from memoric.db.dialects.sqlite import SqliteDialect

DIALECTS: dict[str, Dialect] = {dialect.name: dialect for dialect in (SqliteDialect(), PostgresDialect())}

__all__ = ["DIALECTS", "GUARD_NOTE", "Dialect", "dialect_for", "gin_index_code"]


def dialect_for(name: str) -> Dialect:
    """The dialect of that name ("sqlite" or "postgresql", as `urls.dialect_of` gives it)."""
    return DIALECTS[name]
