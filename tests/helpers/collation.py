"""A PostgreSQL database whose text sorts by a locale's rules (en_US), as the official Docker image's
databases do, rather than by code point.

The test server is asked first (ICU, then the operating system's en_US locale). An embedded server
has neither, so then one is started of its own, with an en_US locale generated from the operating
system's locale sources by `localedef` and handed to it through LOCPATH.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoric.testing import admin_sql, database_url, start_postgres, stop_postgres

LOCALE = "en_US.UTF-8"
WAYS = (
    "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'",
    f"LC_COLLATE '{LOCALE}' LC_CTYPE '{LOCALE}'",
)


def collated_database(server_url: str) -> str | None:
    """A new database on the server that sorts text by en_US's rules; None if the server cannot."""
    import psycopg2

    name = f"memoric_collated_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    for way in WAYS:
        try:
            admin_sql(server_url, f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' {way}")
        except psycopg2.Error:
            continue
        return database_url(server_url, name)
    return None


@contextlib.contextmanager
def server_with_en_us() -> Iterator[str]:
    """An embedded server of its own that has an en_US locale to sort by; its URL for the block."""
    if shutil.which("localedef") is None:
        _unavailable("localedef, to generate an en_US locale, is not installed")
    locales = Path(tempfile.mkdtemp(prefix="memoric-locales-"))
    data = Path(tempfile.mkdtemp(prefix="memoric-pg-collated-"))
    try:
        made = subprocess.run(
            ["localedef", "-i", "en_US", "-f", "UTF-8", str(locales / LOCALE)], capture_output=True, text=True
        )
        if not (locales / LOCALE / "LC_COLLATE").exists():
            _unavailable(f"localedef could not generate {LOCALE}: {made.stderr.strip()}")
        for path in (locales, *locales.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)  # read by the server's own user too
        data.chmod(0o755)
        previous = os.environ.get("LOCPATH")
        os.environ["LOCPATH"] = str(locales)
        try:
            url = start_postgres(data / "pgdata")
        finally:
            if previous is None:
                del os.environ["LOCPATH"]
            else:
                os.environ["LOCPATH"] = previous
        try:
            yield url
        finally:
            stop_postgres(data / "pgdata")
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(locales, ignore_errors=True)


def _unavailable(reason: str) -> None:
    message = f"no PostgreSQL database sorting by a locale: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
