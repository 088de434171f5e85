"""Database URLs: which dialect a URL names, where a SQLite URL's file is, and its query
parameters checked and converted."""

from __future__ import annotations

import math
import re
from urllib.parse import SplitResult, urlsplit

from memoric.db.masking import mask_password, mask_url
from memoric.db.url_parts import (
    MAX_URL_COUNT,
    POOL_PARAMETERS,
    POOLED_SUFFIX,
    POSTGRES_PARAMETERS,
    POSTGRES_SCHEMES,
    REFUSED_PARAMETERS,
    SQLITE_PARAMETERS,
    SQLITE_SCHEMES,
    UTF8_NAMES,
    UrlParameter,
    query_pairs,
)
from memoric.errors import ConfigError

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
UNENCODED = "percent-encode @ / ? # [ ] and : in the user name and the password (%40 %2F %3F %23 ...)"
URL_EXAMPLES = "e.g. sqlite:///memoric.db or postgresql://user@host:5432/db"
DROPPED_BY_URL_PARSING = "\t\n\r"  # what `urlsplit` removes from anywhere in a URL
SECONDS = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"


def dialect_of(url: str) -> str:
    """`"sqlite"` or `"postgresql"` for a memoric URL; ConfigError for anything else."""
    if not isinstance(url, str):
        raise ConfigError(
            f"invalid database URL: expected a string ({URL_EXAMPLES}), got {type(url).__name__}"
        )
    if any(character in url for character in DROPPED_BY_URL_PARSING):
        raise ConfigError(  # not quoted: cut at such a character, a password would not be masked whole
            "invalid database URL: it holds a tab, newline or carriage return, which URL parsing drops "
            "(another database would be opened, or another password sent); in a PostgreSQL URL write "
            "them as %09, %0A, %0D; a SQLite file name cannot hold them (its URL is not decoded)"
        )
    scheme = _SCHEME.match(url)
    if scheme is None or not url[scheme.end() :].startswith("//"):
        raise ConfigError(f"invalid database URL '{mask_url(url)}': expected scheme://..., {URL_EXAMPLES}")
    base = scheme.group()[:-1].lower().removesuffix(POOLED_SUFFIX)
    if base in SQLITE_SCHEMES:
        return "sqlite"
    if base in POSTGRES_SCHEMES:
        return "postgresql"
    raise ConfigError(
        f"unsupported database URL '{mask_url(url)}': the scheme must be "
        "sqlite://, postgresql:// (or postgres://, postgresext://)"
    )


def file_url(path) -> str:
    """The URL of a database in the file at `path` (memoric's embedded default, SQLite)."""
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> str:
    """The file path of a sqlite:// URL (relative with three slashes, absolute with four)."""
    return file_path(split_url(url))


def file_path(parts: SplitResult) -> str:
    """The file path of a split sqlite:// URL (see `sqlite_path`)."""
    path = parts.path
    return path[1:] if path.startswith("/") else path


def split_url(url: str) -> SplitResult:
    """`urlsplit(url)`; ConfigError (masked) where Python cannot split it (e.g. an unclosed `[`)."""
    try:
        return urlsplit(url)
    except ValueError:
        raise ConfigError(f"invalid database URL '{mask_url(url)}': {UNENCODED}") from None


def accepted_parameters(url: str, parts: SplitResult) -> dict[str, UrlParameter]:
    """The query parameters `url` (split into `parts`) may carry: its dialect's, and a pool's."""
    accepted = dict(SQLITE_PARAMETERS if dialect_of(url) == "sqlite" else POSTGRES_PARAMETERS)
    if parts.scheme.lower().endswith(POOLED_SUFFIX):
        accepted.update(POOL_PARAMETERS)
    return accepted


def url_parameters(url: str, parts: SplitResult) -> dict[str, str | int | float | None]:
    """The query parameters of `url` (split into `parts`), checked and converted; ConfigError
    (masked) naming one the URL does not accept, one given twice or one of another form."""
    accepted = accepted_parameters(url, parts)
    given = query_pairs(parts.query)
    names = [name for name, _ in given]
    for name in names:
        if "@" in name:  # the query string split a password
            raise invalid_url(url, UNENCODED)
        if name not in accepted:
            why = f" ({REFUSED_PARAMETERS[name]})" if name in REFUSED_PARAMETERS else ""
            listed = ", ".join(sorted(accepted))
            raise invalid_url(url, f"it does not accept the parameter {name!r}{why}; it accepts: {listed}")
        if names.count(name) > 1:
            raise invalid_url(url, f"the parameter {name} is given twice")
    return {name: _typed(url, name, value, accepted[name]) for name, value in given}


def invalid_url(url: str, problem: str) -> ConfigError:
    """The ConfigError "invalid database URL '<url>': <problem>", every secret of `url` masked."""
    return ConfigError(mask_password(f"invalid database URL '{url}': {problem}", url))


def _typed(url: str, name: str, value: str, parameter: UrlParameter) -> str | int | float | None:
    """`value` of the parameter `name` converted, or ConfigError saying what form it must have."""
    converted = _converted(value, parameter)
    if converted is not _INVALID:
        return converted
    least = "above 0" if parameter.positive else "from 0"
    most = f" to {parameter.maximum:.15g}" if math.isfinite(parameter.maximum) else ""
    expected = {
        "count": f"a whole number from {parameter.minimum} to {MAX_URL_COUNT}",
        "seconds": f"a number of seconds {least}{most}, e.g. ?{name}=30 or ?{name}=2.5",
        "utf8": "UTF8: memoric sends and reads text as UTF-8",
    }[parameter.kind]
    also = " (or none: no limit)" if parameter.nullable else ""
    raise invalid_url(url, f"the parameter {name} must be {expected}{also}, got {value!r}")


_INVALID = object()


def _converted(value: str, parameter: UrlParameter):
    """`value` as the parameter's type, or _INVALID."""
    if parameter.kind == "text":
        return value
    if parameter.kind == "utf8":
        return "UTF8" if re.sub(r"[-_]", "", value).lower() in UTF8_NAMES else _INVALID
    if parameter.nullable and value.lower() in ("none", "null"):
        return None
    if parameter.kind == "count":
        digits = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_URL_COUNT))
        return int(value) if digits and parameter.minimum <= int(value) <= MAX_URL_COUNT else _INVALID
    seconds = float(value) if re.fullmatch(SECONDS, value) else math.inf
    too_few = seconds <= 0 if parameter.positive else seconds < 0
    return seconds if math.isfinite(seconds) and not too_few and seconds <= parameter.maximum else _INVALID
