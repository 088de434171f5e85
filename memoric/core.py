"""Memoric: the facade agent scripts use (save, retrieve, policies, clusters, stats, migrate)."""

from __future__ import annotations

import os

from memoric.config import load_config, resolve_dsn, tier_names
from memoric.db.store import MemoryStore


class Memoric:
    """One memory store for an agent: `Memoric().save(...)` works with no setup."""

    def __init__(
        self,
        dsn: str | None = None,
        config_path: str | os.PathLike | None = None,
        config: dict | None = None,
        auto_migrate: bool = False,
    ) -> None:
        self.config = load_config(config_path, config)
        self.db = MemoryStore(resolve_dsn(dsn, self.config), tiers=tier_names(self.config))
        self.auto_migrate = auto_migrate
