"""Which dialects and targets a run tests, and what a refusal says (a validator's message, the
CLI's one error line)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from urllib.parse import quote

import pytest

from memoric.errors import ValidationError
from memoric.testing_citus import CITUS_SOURCE_VARIABLE, citus_version

ALL_DIALECTS = ("sqlite", "postgresql")
# A third target: PostgreSQL distributed by Citus, for the modules marked `citus`.
CITUS = "citus"


def selected_targets() -> list[str]:
    """The targets MEMORIC_TEST_DIALECTS names; unset: both dialects, and Citus where it is to be had."""
    raw = os.environ.get("MEMORIC_TEST_DIALECTS")
    if raw is None:
        return [*ALL_DIALECTS, *([CITUS] if citus_to_be_had() else [])]
    chosen = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = set(chosen) - {*ALL_DIALECTS, CITUS}
    if unknown:
        raise pytest.UsageError(f"MEMORIC_TEST_DIALECTS: unknown dialect(s) {sorted(unknown)}")
    return chosen


def selected_dialects() -> list[str]:
    """The dialects every database test runs on (sqlite, postgresql)."""
    return [name for name in selected_targets() if name != CITUS]


@functools.cache
def citus_to_be_had() -> bool:
    """Whether Citus is installed for the embedded PostgreSQL, or a source tree to build it is named."""
    return bool(os.environ.get(CITUS_SOURCE_VARIABLE)) or citus_version() is not None


requires_postgres = pytest.mark.skipif(
    "postgresql" not in selected_dialects(), reason="PostgreSQL not selected in MEMORIC_TEST_DIALECTS"
)


def with_search_path(dsn: str, search_path: str) -> str:
    """`dsn` with the PostgreSQL search path `search_path` (libpq's `options`)."""
    options = quote(f"-c search_path={search_path}", safe="")
    return f"{dsn}{'&' if '?' in dsn else '?'}options={options}"


def refusal(check: Callable, *args, **kwargs) -> str:
    """The message of the ValidationError `check(*args, **kwargs)` raises: what an entry point must say."""
    with pytest.raises(ValidationError) as raised:
        check(*args, **kwargs)
    return str(raised.value)


def one_line_error(result) -> str:
    """The CLI's one `Error:` line of a failed command (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]
