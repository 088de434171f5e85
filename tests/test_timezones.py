"""Timestamps are UTC instants whatever the session or input time zone."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import pytest

from memoric.db.models import UTC
from memoric.db.store import MemoryStore
from tests.helpers.dialects import requires_postgres

TOKYO = dt.timezone(dt.timedelta(hours=9))
INSTANT = dt.datetime(2026, 6, 1, 23, 30, 0, 250000, tzinfo=UTC)


def test_aware_input_in_another_zone_is_stored_as_the_same_instant(db):
    memory_id = db.insert_memory(user_id="ada", content="x", created_at=INSTANT.astimezone(TOKYO))
    created = db.get_memory(memory_id)["created_at"]
    assert created == INSTANT
    assert created.utcoffset() == dt.timedelta(0)


def test_naive_input_is_taken_as_utc(db):
    memory_id = db.insert_memory(user_id="ada", content="x", created_at=INSTANT.replace(tzinfo=None))
    assert db.get_memory(memory_id)["created_at"] == INSTANT


@requires_postgres
@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_postgresql_session_in_a_non_utc_zone_stores_and_returns_utc(new_postgres_url, zone):
    url = new_postgres_url()
    separator = "&" if "?" in url else "?"
    store = MemoryStore(f"{url}{separator}options={quote(f'-c TimeZone={zone}')}")
    store.create_schema()
    assert store.database.execute_sql("SHOW TimeZone").fetchone()[0] == zone

    memory_id = store.insert_memory(user_id="ada", content="x", created_at=INSTANT)
    memory = store.get_memory(memory_id)
    assert memory["created_at"] == INSTANT
    assert memory["created_at"].utcoffset() == dt.timedelta(0)
    stored_utc = store.database.execute_sql(
        "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM memories"
    ).fetchone()[0]
    assert stored_utc == "2026-06-01 23:30:00.250000"

    cutoff_store = MemoryStore(url)
    cutoff_store.clock = lambda: INSTANT + dt.timedelta(days=2, seconds=1)
    assert [m["id"] for m in cutoff_store.find_older_than(days=2)] == [memory_id]
    assert cutoff_store.find_older_than(days=2.0001) == []
    store.close()
    cutoff_store.close()
