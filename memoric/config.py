"""Configuration: defaults, YAML loading and DSN resolution."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from memoric.errors import ConfigError

ENV_DATABASE_URL = "MEMORIC_DATABASE_URL"

DEFAULTS: dict = {
    "database": {"dsn": None},
    "tiers": [
        {"name": "short_term", "expire_after_days": 7},
        {"name": "mid_term", "expire_after_days": 30, "trim_chars": None},
        {"name": "long_term"},
    ],
    "summarization": {"enabled": True, "min_records": 10, "max_chars": 1000},
    "clustering": {"min_size": 1},
    "scoring": {"importance": 0.5, "recency": 0.3, "thread": 0.2, "decay_days": 60},
}


def default_database_path() -> Path:
    return Path.home() / ".memoric" / "memoric.db"


def load_config(path: str | os.PathLike | None = None, data: dict | None = None) -> dict:
    """The defaults, overlaid with the YAML file at `path` and then with `data`."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        config.update(_read_yaml(Path(path)))
    if data is not None:
        config.update(copy.deepcopy(data))
    return config


def _read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    return loaded or {}


def resolve_dsn(dsn: str | None, config: dict) -> str:
    """The database URL: argument > $MEMORIC_DATABASE_URL > config > ~/.memoric/memoric.db."""
    chosen = dsn or os.environ.get(ENV_DATABASE_URL) or (config.get("database") or {}).get("dsn")
    if chosen:
        return chosen
    path = default_database_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def tier_names(config: dict) -> list[str]:
    return [tier["name"] for tier in config["tiers"]]
