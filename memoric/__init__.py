"""memoric: a persistent, deterministic memory store for AI agents (SQLite or PostgreSQL)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from memoric.aio import AsyncMemoric
    from memoric.core import Memoric
    from memoric.db.store import MemoryStore

__version__ = "0.1.0"

# The classes that load peewee, the drivers and asyncio, each imported on first use (PEP 562):
# `import memoric` stays quick, and the CLI can answer a Ctrl-C during its start in one line.
_LOADED_ON_USE = {"AsyncMemoric": "memoric.aio", "Memoric": "memoric.core", "MemoryStore": "memoric.db.store"}

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


def __getattr__(name: str):
    """`memoric.Memoric` and the other classes loaded on use, imported the first time one is asked for."""
    if name not in _LOADED_ON_USE:
        raise AttributeError(f"module 'memoric' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LOADED_ON_USE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
