"""Configuration: defaults, YAML loading, validation and DSN resolution.

A configuration is a plain dict of sections (database, tiers, summarization, clustering,
scoring, policies, migrations). The YAML file (`config_path`)
and then the `config=` dict are merged over the defaults section by section (mapping sections
key by key; the `tiers` list is replaced as a whole, each tier completed with its defaults).
Anything unknown or malformed raises `ConfigError` naming the key and the value at fault.
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path

import yaml

from memoric import arguments, yaml12
from memoric.db.masking import mask_password
from memoric.db.urls import file_url
from memoric.errors import ConfigError, ValidationError
from memoric.json_input import MAX_JSON_DEPTH
from memoric.validation import MAX_INT, MAX_TIER_NAME, MIN_INT, clean_text, shown

ENV_DATABASE_URL = "MEMORIC_DATABASE_URL"
ENV_APP_MIGRATIONS = "MEMORIC_APP_MIGRATIONS"
MAX_DECAY_DAYS = 36500
WEIGHT_KEYS = ("importance", "recency", "thread")
PRIVATE_DIRECTORY_MODE = 0o700
MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few hundred bytes
QUOTED_TEXT = re.compile(r"'[^']*'|\"[^\"]*\"")  # text of the file a YAML message may quote
# What YAML messages quote of their own: token names (`'<stream end>'`) and syntax (`','`, `'}'`).
YAML_SYNTAX = re.compile(r"'(?:<[a-z ]+>|[,{}\[\]:?|>-])'")

MAX_BM25_K1 = 1000  # far past any useful value (1.2 to 2 in practice); keeps the arithmetic finite

DEFAULTS: dict = {
    "database": {"dsn": None, "sqlite_warning": True},
    "tiers": [
        {"name": "short_term", "expire_after_days": 7},
        {"name": "mid_term", "expire_after_days": 30, "trim_chars": None},
        {"name": "long_term"},
    ],
    "summarization": {"enabled": True, "min_records": 10, "max_chars": 1000},
    "clustering": {"min_size": 1},
    "scoring": {
        "importance": 0.5,
        "recency": 0.3,
        "thread": 0.2,
        "decay_days": 60,
        # keyword recall (`retrieve(query=...)`): the relevance's weight in the rank, BM25's k1 and b
        "relevance": 0.7,
        "bm25_k1": 1.2,
        "bm25_b": 0.75,
    },
    "policies": {"batch_size": 10000, "lock_timeout": 600},
    "migrations": {"app_dir": None},
}
TIER_DEFAULTS = {"name": None, "expire_after_days": None, "trim_chars": None}
# A float as YAML 1.2 writes it. PyYAML reads YAML 1.1, where an exponent needs a dot before it
# and a sign after the `e`, and a leading-dot number no sign: it reads 1e-7, 1.0e7 or -.5 as text.


def default_database_path() -> Path:
    return Path.home() / ".memoric" / "memoric.db"


def load_config(path: str | os.PathLike | None = None, data: dict | None = None) -> dict:
    """The defaults, overlaid with the YAML file at `path` and then with `data`, validated."""
    config = copy.deepcopy(DEFAULTS)
    given = []  # what the file and `data` hold: any string of theirs may be a URL with a password
    try:
        if path is not None:
            path = _config_path(path)
            given.append(_read_yaml(path))
            config = merge(config, _relative_to_file(given[-1], path), source=str(path))
        if data is not None:
            given.append(data)
            config = merge(config, data, source="config")
        return validate(config)
    except ConfigError as exc:
        raise ConfigError(mask_password(str(exc), *_strings(given))) from None


def _strings(value) -> list[str]:
    """Every string in `value` (keys too), walked without recursion, MAX_JSON_DEPTH deep at most."""
    found, pending = [], [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            found.append(item)
        elif depth < MAX_JSON_DEPTH and isinstance(item, dict):
            pending += [(part, depth + 1) for pair in item.items() for part in pair]
        elif depth < MAX_JSON_DEPTH and isinstance(item, (list, tuple)):
            pending += [(part, depth + 1) for part in item]
    return found


def merge(base: dict, overlay, *, source: str = "config") -> dict:
    """`overlay` merged over `base`: mapping sections key by key, anything else replaced."""
    if not isinstance(overlay, dict):
        raise ConfigError(f"{source} must be a mapping of sections, got {type(overlay).__name__}")
    _check_depth(overlay, source)
    merged = copy.deepcopy(base)
    for section, value in overlay.items():
        if section not in DEFAULTS:
            raise _unknown_key(section, DEFAULTS)
        if isinstance(DEFAULTS[section], dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{section} must be a mapping, got {type(value).__name__}")
            merged[section] = {**merged[section], **copy.deepcopy(value)}
        else:
            merged[section] = copy.deepcopy(value)
    return merged


def _check_depth(value, source: str) -> None:
    """ConfigError when mappings and lists nest deeper than MAX_JSON_DEPTH (copying them would
    exhaust the stack long before validation could name what is wrong); walked without recursion.
    """
    pending, seen = [(value, 0)], set()
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise ConfigError(f"{source} is nested deeper than {MAX_JSON_DEPTH} levels")
        if not isinstance(item, (dict, list)) or id(item) in seen:  # YAML aliases share containers
            continue
        seen.add(id(item))
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)


def _relative_to_file(loaded, path: Path):
    """The file's settings with a relative `migrations.app_dir` taken from the file's directory.

    Anything malformed is left for `merge` and `validate` to name.
    """
    section = loaded.get("migrations") if isinstance(loaded, dict) else None
    app_dir = section.get("app_dir") if isinstance(section, dict) else None
    if not isinstance(app_dir, str) or not app_dir.strip() or "\0" in app_dir:
        return loaded
    located = Path(app_dir).expanduser()
    if not located.is_absolute():
        located = path.parent.absolute() / located
    return {**loaded, "migrations": {**section, "app_dir": str(located)}}


def _config_path(path) -> Path:
    """`path` as a Path; ConfigError unless it is a str or os.PathLike naming a file."""
    try:
        return Path(arguments.path_text("config_path", path, "a file path"))
    except ValidationError as exc:
        raise ConfigError(str(exc)) from None


def _read_yaml(path: Path) -> dict:
    text = _config_text(path)
    try:
        loaded = yaml12.load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{_yaml_fault(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r} is nested too deeply to read") from None
    except Exception:  # a constructor of an explicit tag (!!bool, !!timestamp) failing its own way
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML: a value of an explicit tag (!!...) cannot be read"
        ) from None
    return {} if loaded is None else loaded


def _config_text(path: Path) -> str:
    """The file's text, at most MAX_CONFIG_BYTES (a device that never ends is not read forever)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {str(path)!r} is larger than {MAX_CONFIG_BYTES:,} bytes")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(path)!r} is a directory") from None
    except UnicodeDecodeError as exc:  # its text would quote the bytes around the fault
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {exc.start + 1})") from None
    except (OSError, ValueError) as exc:  # a name holding NUL or a lone surrogate
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc}") from None


def _yaml_fault(exc: yaml.YAMLError) -> str:
    """Where the YAML is wrong and what is wrong there, without the file's text: PyYAML's own
    message quotes the lines around the fault, its scanner the characters and its constructor
    the tags, any of which may be the database password's."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f" at character {exc.position + 1}: {exc.reason}"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return ""
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = QUOTED_TEXT.sub(_syntax_only, exc.problem or exc.context or "").strip(" :")
    return f"{where}: {problem}" if problem else where


def _syntax_only(quoted: re.Match) -> str:
    """A quotation of a YAML message kept when it is YAML's syntax, dropped when it is the file's."""
    return quoted.group() if YAML_SYNTAX.fullmatch(quoted.group()) else ""


# --- validation ---------------------------------------------------------------------------


def validate(config: dict) -> dict:
    """`config` itself when every key and value is valid; ConfigError naming the first fault."""
    for section, value in config.items():
        if section not in DEFAULTS:
            raise _unknown_key(section, DEFAULTS)
        if isinstance(DEFAULTS[section], dict):
            _known_keys(section, value, DEFAULTS[section])
    dsn = config["database"]["dsn"]
    if dsn is not None and (not isinstance(dsn, str) or not dsn.strip()):
        got = "an empty string" if isinstance(dsn, str) else f"a {type(dsn).__name__}"  # may hold a password
        raise ConfigError(f"database.dsn must be a database URL string, got {got}")
    _boolean("database.sqlite_warning", config["database"]["sqlite_warning"])
    config["tiers"] = _tiers(config["tiers"])
    summarization = config["summarization"]
    _boolean("summarization.enabled", summarization["enabled"])
    _integer("summarization.min_records", summarization["min_records"], minimum=1)
    _integer("summarization.max_chars", summarization["max_chars"], minimum=1)
    _integer("clustering.min_size", config["clustering"]["min_size"], minimum=1)
    _scoring(config["scoring"])
    _integer("policies.batch_size", config["policies"]["batch_size"], minimum=1)
    timeout = config["policies"]["lock_timeout"]
    if timeout is not None:
        config["policies"]["lock_timeout"] = _number("policies.lock_timeout", timeout, minimum=0)
    _directory("migrations.app_dir", config["migrations"]["app_dir"])
    return config


def _directory(key: str, value) -> None:
    """None, or a non-empty path string (no NUL character)."""
    if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
        got = repr(value) if isinstance(value, str) else f"a value of type {type(value).__name__}"
        raise ConfigError(f"{key} must be a directory path, got {got}")


def _known_keys(section: str, value: dict, defaults: dict) -> None:
    for key in value:
        if key not in defaults:
            raise _unknown_key(key, defaults, section, maybe_cut=_maybe_a_piece(section, value, key))


def _maybe_a_piece(section: str, value: dict, key) -> bool:
    """Whether an unknown key of the database section may be a piece of its URL: a password with
    a comma in a YAML flow mapping (`{dsn: postgresql://u:ab,cd@h/db}`) makes a key without a
    value of what follows the comma, and leaves the dsn without its `@`."""
    if section != "database":
        return False
    dsn = value.get("dsn")
    return value[key] is None or (isinstance(dsn, str) and "://" in dsn and "@" not in dsn)


def _unknown_key(key, known, section: str = "", *, maybe_cut: bool = False) -> ConfigError:
    """The error for a key not in `known`: named when it is a name that cannot be a piece of the
    database URL, else not shown."""
    where = f"{section}." if section else ""
    named = isinstance(key, str) and yaml12.KEY_NAME.fullmatch(key) and not maybe_cut
    hidden = f"in {section or 'the file'} (not shown: it may be a piece of the database URL)"
    shown_key = shown(f"{where}{key}") if named else hidden
    return ConfigError(f"unknown config key {shown_key} (known: {', '.join(known)})")


def _tier_name(key: str, name) -> str:
    """The tier name `name` as the store checks it (`validation.clean_text`), or ConfigError."""
    if name is None:
        raise ConfigError(f"{key} is missing: every tier needs a name")
    try:
        return clean_text(key, name, max_length=MAX_TIER_NAME)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from None


def _tiers(tiers) -> list[dict]:
    if not isinstance(tiers, list):
        raise ConfigError(f"tiers must be a list of {{name: ...}} mappings, got {type(tiers).__name__}")
    if not tiers:
        raise ConfigError("tiers must not be empty: configure at least one tier")
    checked, seen = [], set()
    for index, tier in enumerate(tiers):
        where = f"tiers[{index}]"
        if not isinstance(tier, dict):
            raise ConfigError(f"{where} must be a mapping with a name, got {shown(tier)}")
        _known_keys(where, tier, TIER_DEFAULTS)
        tier = {**TIER_DEFAULTS, **tier}
        name = tier["name"] = _tier_name(f"{where}.name", tier["name"])
        if name in seen:
            raise ConfigError(f"{where}.name {shown(name)} is a duplicate tier name")
        seen.add(name)
        if tier["expire_after_days"] is not None:
            tier["expire_after_days"] = _number(
                f"{where}.expire_after_days", tier["expire_after_days"], minimum=0
            )
            if index == len(tiers) - 1:
                raise ConfigError(
                    f"{where}.expire_after_days is set on the last tier {shown(name)}, which has no next tier"
                )
        if tier["trim_chars"] is not None:
            _integer(f"{where}.trim_chars", tier["trim_chars"], minimum=2)
        checked.append(tier)
    return checked


def _scoring(scoring: dict) -> None:
    for key in WEIGHT_KEYS:
        scoring[key] = _number(f"scoring.{key}", scoring[key], minimum=0, maximum=1)
    if sum(round(scoring[key] * 1_000_000) for key in WEIGHT_KEYS) > 1_000_000:
        weights = ", ".join(f"{key}={scoring[key]}" for key in WEIGHT_KEYS)
        raise ConfigError(f"scoring weights must add up to at most 1, got {weights}")
    decay = _number("scoring.decay_days", scoring["decay_days"], minimum=0, maximum=MAX_DECAY_DAYS)
    scoring["decay_days"] = decay
    if decay * 86400 < 1:
        raise ConfigError(f"scoring.decay_days must be positive (at least one second), got {shown(decay)}")
    scoring["relevance"] = _number("scoring.relevance", scoring["relevance"], minimum=0, maximum=1)
    scoring["bm25_b"] = _number("scoring.bm25_b", scoring["bm25_b"], minimum=0, maximum=1)
    scoring["bm25_k1"] = _number("scoring.bm25_k1", scoring["bm25_k1"], minimum=0, maximum=MAX_BM25_K1)


def _number(key: str, value, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite int or float within the bounds; an int also within the signed 64-bit range.

    Every number option is read here; a config file's numbers are read as YAML 1.2 reads them
    (`memoric.yaml12`), and a quoted number (`"0.5"`) is text, refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {shown(value)}")
    if isinstance(value, int):
        _integer(key, value, minimum=MIN_INT)
    elif not math.isfinite(value):
        raise ConfigError(f"{key} must be a number, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key} must be at most {maximum}, got {shown(value)}")
    return value


def _integer(key: str, value, *, minimum: int) -> int:
    """An int (not a bool) from `minimum` to the signed 64-bit maximum every integer shares."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {shown(value)}")
    if value < minimum:
        raise ConfigError(f"{key} must be at least {minimum}, got {shown(value)}")
    if value > MAX_INT:
        raise ConfigError(f"{key} must be at most {MAX_INT}, got {shown(value)}")
    return value


def _boolean(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {shown(value)}")
    return value


# --- reading a validated config -----------------------------------------------------------


def resolve_dsn(dsn: str | None, config: dict, *, make_directory: bool = True) -> str:
    """The database URL: argument > $MEMORIC_DATABASE_URL > config > ~/.memoric/memoric.db.

    `~/.memoric` is created readable by its owner only (memories are private), unless not
    `make_directory` (a caller that only reads); an existing directory keeps its mode.
    """
    chosen = dsn or os.environ.get(ENV_DATABASE_URL) or (config.get("database") or {}).get("dsn")
    if chosen:
        return chosen
    path = default_database_path()
    if make_directory:
        path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    return file_url(path)


def from_environment(dsn: str | None, url: str) -> bool:
    """Whether `url`, resolved for the argument `dsn`, is the one $MEMORIC_DATABASE_URL gave."""
    return not dsn and os.environ.get(ENV_DATABASE_URL) == url


def resolve_app_dir(app_dir: str | os.PathLike | None, config: dict) -> Path | None:
    """The application's migrations directory: argument > $MEMORIC_APP_MIGRATIONS > config > none.

    A relative argument or environment value is taken from the working directory; the config
    file's own is already taken from the file's directory.
    """
    given = arguments.directory("app_dir", app_dir)
    chosen = given or os.environ.get(ENV_APP_MIGRATIONS) or config["migrations"]["app_dir"]
    if not chosen:
        return None
    if isinstance(chosen, str) and "\0" in chosen:
        raise ConfigError(f"the application migrations directory must be a path, got {chosen!r}")
    return Path(chosen).expanduser()


def tier_names(config: dict) -> list[str]:
    return [tier["name"] for tier in config["tiers"]]
