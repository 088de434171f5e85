"""Timestamps and cut-offs at and beyond the calendar: refused clearly, or stored and answered alike.

A timestamp whose UTC form overflows, or that a PostgreSQL session in another time zone could not
hand back, is a ValidationError; a cut-off reaching before year 1 finds nothing instead of raising
OverflowError, on both dialects.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db.store import MemoryStore, utc_now
from memoric.errors import ValidationError
from memoric.validation import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
)
from tests.conftest import requires_postgres
from tests.engine_helpers import NOW, Clock

# --- timestamps ----------------------------------------------------------------------------------

EAST = dt.timezone(dt.timedelta(hours=14))
WEST = dt.timezone(dt.timedelta(hours=-12))
OUT_OF_RANGE_TIMESTAMPS = [
    (dt.datetime.max.replace(tzinfo=WEST), "lies outside the datetime range in UTC"),
    (dt.datetime.min.replace(tzinfo=EAST), "lies outside the datetime range in UTC"),
    (dt.datetime.max.replace(tzinfo=dt.UTC), "must lie from 0001-01-02 to 9999-12-30 (UTC)"),
    (dt.datetime.min, "must lie from 0001-01-02 to 9999-12-30 (UTC)"),
    (MIN_TIMESTAMP - dt.timedelta(microseconds=1), "must lie from 0001-01-02"),
    (MAX_TIMESTAMP + dt.timedelta(microseconds=1), "must lie from 0001-01-02"),
]


@pytest.mark.parametrize(("moment", "message"), OUT_OF_RANGE_TIMESTAMPS)
def test_out_of_range_timestamps_are_refused(db, moment, message):
    for field in ("created_at", "updated_at"):
        with pytest.raises(ValidationError, match=re.escape(message)) as raised:
            db.insert_memory(user_id="ada", content="x", **{field: moment})
        assert str(raised.value).startswith(field)
        with pytest.raises(ValidationError, match=re.escape(message)):
            db.insert_memories([{"user_id": "ada", "content": "x", field: moment}])
    assert db.count_memories() == 0


def test_the_earliest_and_latest_timestamps_are_stored_and_read_back(db):
    moments = [MIN_TIMESTAMP, MAX_TIMESTAMP, MIN_TIMESTAMP.astimezone(EAST), MAX_TIMESTAMP.astimezone(WEST)]
    ids = [db.insert_memory(user_id="ada", content="x", created_at=moment) for moment in moments]
    assert [db.get_memory(memory_id)["created_at"] for memory_id in ids] == [
        MIN_TIMESTAMP,
        MAX_TIMESTAMP,
        MIN_TIMESTAMP,
        MAX_TIMESTAMP,
    ]
    db.clock = Clock(NOW)
    try:
        assert [m["id"] for m in db.find_older_than(days=0)] == [ids[0], ids[2]]
        assert [m["id"] for m in db.find_older_than(days=(NOW - MIN_TIMESTAMP).days)] == [ids[0], ids[2]]
        assert db.find_older_than(days=(NOW - MIN_TIMESTAMP).days + 1) == []
    finally:
        db.clock = utc_now


@requires_postgres
@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_the_extreme_timestamps_read_back_in_a_postgresql_session_of_any_zone(new_postgres_url, zone):
    """A session west of UTC once failed to hand back year 1 ("year -1 is out of range")."""
    url = new_postgres_url()
    separator = "&" if "?" in url else "?"
    store = MemoryStore(f"{url}{separator}options={quote(f'-c TimeZone={zone}')}")
    store.create_schema()
    ids = [
        store.insert_memory(user_id="ada", content="x", created_at=m) for m in (MIN_TIMESTAMP, MAX_TIMESTAMP)
    ]
    assert [store.get_memory(memory_id)["created_at"] for memory_id in ids] == [MIN_TIMESTAMP, MAX_TIMESTAMP]
    store.close()


@pytest.mark.parametrize("days", [10**6, 2**63 - 1, 1e300, 10**9, 800_000.5])
def test_find_older_than_reaching_before_the_calendar_finds_nothing(db, days):
    db.insert_memory(user_id="ada", content="old", created_at=MIN_TIMESTAMP)
    assert db.find_older_than(days=days) == []
    assert db.find_older_than(days=days, limit=None, user_id="ada", from_tier="short_term") == []


def test_cli_run_policies_with_a_tier_expiring_after_a_million_days(m_dsn_config):
    dsn, config = m_dsn_config
    for extra in ([], ["--dry-run"]):
        result = CliRunner().invoke(
            main, ["--dsn", dsn, "--config", str(config), "run-policies", "--json", *extra]
        )
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["migrated"] == {"short_term": 0, "mid_term": 0}


@pytest.fixture
def m_dsn_config(dsn, tmp_path, monkeypatch):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    path = tmp_path / "memoric.yaml"
    path.write_text(
        "tiers:\n"
        "  - {name: short_term, expire_after_days: 1000000}\n"
        "  - {name: mid_term, expire_after_days: 1000000}\n"
        "  - {name: long_term}\n"
    )
    memoric = Memoric(dsn, config_path=path)
    memoric.save("ada", "a memory")
    memoric.close()
    return dsn, path
