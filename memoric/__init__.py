"""memoric: a persistent, deterministic memory store for AI agents (SQLite or PostgreSQL)."""

from memoric.aio import AsyncMemoric
from memoric.core import Memoric
from memoric.db.store import MemoryStore
from memoric.errors import (
    CommitInDoubt,
    ConfigError,
    LockTimeout,
    MemoricError,
    MigrationError,
    PartlyInserted,
    SummarizerFailed,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncMemoric",
    "CommitInDoubt",
    "ConfigError",
    "LockTimeout",
    "Memoric",
    "MemoricError",
    "MemoryStore",
    "MigrationError",
    "PartlyInserted",
    "SummarizerFailed",
    "ValidationError",
    "__version__",
]
