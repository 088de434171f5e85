"""Values at memoric's limits are stored and answered alike by both dialects; beyond them, refused.

Huge ints, deep JSON, extreme timestamps, cut-offs before year 1, long identifiers, huge content:
what the rules accept is stored and answered alike on both dialects. The refusals beyond them
(a ValidationError naming what is wrong) are tested once in test_validation.py; here remain those
of the config (a ConfigError), of the CLI (one line, exit 1 or 2) and of the clock.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.db.jsonfilter import contains
from memoric.db.store import MemoryStore, utc_now
from memoric.errors import ConfigError, ValidationError
from memoric.json_input import JSON_INT_LIMIT, MAX_JSON_DEPTH
from memoric.transfer import export_jsonl, import_jsonl
from memoric.validation import MAX_CONTENT_LENGTH, MAX_JSON_LENGTH, MAX_TIMESTAMP, MIN_TIMESTAMP
from tests.helpers.dialects import requires_postgres
from tests.helpers.reference import NOW, Clock, cluster_snapshot, memory_snapshot


def nested(levels: int, leaf=1) -> dict:
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def state(store: MemoryStore) -> tuple:
    return memory_snapshot(store), cluster_snapshot(store)


# --- metadata ints: what round-trips through Python's JSON ----------------------------------------

LARGEST_INT = JSON_INT_LIMIT - 1  # 4300 nines


def test_the_largest_metadata_ints_are_stored_and_matched_alike(db):
    document = {"big": LARGEST_INT, "small": -LARGEST_INT, "mixed": [LARGEST_INT, 1]}
    memory_id = db.insert_memory(user_id="ada", content="big ints", metadata=document)
    other = db.insert_memory(user_id="ada", content="other", metadata={"big": LARGEST_INT - 1})
    assert db.get_memory(memory_id)["metadata"] == document
    stored = {memory_id: document, other: {"big": LARGEST_INT - 1}}
    for pattern in ({"big": LARGEST_INT}, {"small": -LARGEST_INT}, {"mixed": [LARGEST_INT]}, {"big": 1e308}):
        expected = sorted(i for i, doc in stored.items() if contains(doc, pattern))
        assert sorted(m["id"] for m in db.get_memories(where_metadata=pattern)) == expected, pattern
    assert db.count_memories(where_metadata={"big": LARGEST_INT}) == 1


# --- JSON nesting in the config (what metadata may hold is tested in test_wide_filters.py) ----------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
def test_a_config_nested_too_deep_is_a_config_error(tmp_path, depth):
    with pytest.raises(ConfigError, match="nested deeper than"):
        Memoric(f"sqlite:///{tmp_path / 'm.db'}", config={"scoring": {"importance": nested(depth)}})
    with pytest.raises(ConfigError, match="nested deeper than"):
        Memoric(f"sqlite:///{tmp_path / 'm.db'}", config={"tiers": [nested(depth)]})
    path = tmp_path / "deep.yaml"
    path.write_text("scoring: {importance: " + "[" * depth + "]" * depth + "}\n")
    with pytest.raises(ConfigError, match="nested"):
        Memoric(f"sqlite:///{tmp_path / 'm.db'}", config_path=path)
    assert not (tmp_path / "m.db").exists()


def test_a_yaml_config_referring_to_itself_is_a_config_error(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("scoring: {importance: &loop [*loop]}\n")
    with pytest.raises(ConfigError, match=r"scoring\.importance must be a number"):
        Memoric(f"sqlite:///{tmp_path / 'm.db'}", config_path=path)


def test_cli_recall_metadata_at_the_limits_answers(cli, dsn):
    Memoric(dsn).ensure_schema()  # recall reads: it refuses a database without memoric's schema
    for text in ('{"a": ' + "9" * 4300 + "}", json.dumps(nested(MAX_JSON_DEPTH))):
        result = cli("recall", "--user", "ada", "--metadata", text, "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == []


# --- timestamps ----------------------------------------------------------------------------------

EAST = dt.timezone(dt.timedelta(hours=14))
WEST = dt.timezone(dt.timedelta(hours=-12))


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


# --- lengths: strings and content ---------------------------------------------------------------


def test_content_at_the_limit_is_stored_and_one_more_character_is_refused(db):
    longest = "é" * MAX_CONTENT_LENGTH
    memory_id = db.insert_memory(user_id="ada", content=longest)
    assert db.get_memory(memory_id)["content"] == longest
    message = f"must be at most {MAX_CONTENT_LENGTH} characters, got {MAX_CONTENT_LENGTH + 1}"
    with pytest.raises(ValidationError, match=f"content {message}"):
        db.insert_memory(user_id="ada", content=longest + "x")
    assert db.count_memories() == 1
    assert db.get_memory(memory_id)["content"] == longest


def test_a_summary_is_never_longer_than_a_content_may_be(dsn):
    config = {"summarization": {"min_records": 2, "max_chars": 2**63 - 1}}
    memoric = Memoric(dsn, config=config, summarizer=lambda memories, limit: "x" * (MAX_CONTENT_LENGTH + 5))
    for i in range(2):
        memoric.save("ada", f"memory {i}", thread_id="t", tier="long_term")
    assert memoric.run_policies()["summaries_created"] == 1
    [summary] = memoric.db.get_memories(where_metadata={"kind": "thread_summary"})
    assert len(summary["content"]) == MAX_CONTENT_LENGTH and summary["content"].endswith("…")
    memoric.close()


# --- lengths: JSON columns ----------------------------------------------------------------------
# A JSONB value of 256 MB or more is refused by PostgreSQL and stored by SQLite; the rule stops
# JSON text well below that on both, so what one stores the other stores too.

LONGEST_TEXT = "é" * (MAX_JSON_LENGTH - len('{"k":""}'))  # `{"k":"éé…"}`: the limit exactly
OVER = {"k": LONGEST_TEXT + "é"}
TOO_LONG = f"takes {MAX_JSON_LENGTH + 1:,} characters as JSON; at most {MAX_JSON_LENGTH:,} fit both dialects"
TOO_MANY_THREADS = ["t" * 128] * (MAX_JSON_LENGTH // 131 + 1)


def over_the_limit(store: MemoryStore, memory_id: int):
    """Each write path with a JSON column one past the limit: (call, the message it must raise)."""
    export = io.StringIO()
    export_jsonl(store, export)
    header, saved = export.getvalue().splitlines()[:2]
    line = json.dumps({**json.loads(saved), "id": memory_id + 1, "metadata": OVER})
    rows = [{"user_id": "ada", "content": "fine"}, {"user_id": "ada", "content": "long", "metadata": OVER}]
    return [
        (lambda: store.insert_memory(user_id="ada", content="long", metadata=OVER), f"metadata {TOO_LONG}"),
        (lambda: store.insert_memories(rows), f"rows[1]: metadata {TOO_LONG}"),
        (lambda: store.update_metadata(memory_id=memory_id, new_metadata=OVER), f"new_metadata {TOO_LONG}"),
        (lambda: store.get_memories(where_metadata=OVER), f"where_metadata {TOO_LONG}"),
        (lambda: store.set_related_threads(memory_id=memory_id, related_threads=TOO_MANY_THREADS),
         "related_threads takes"),
        (lambda: store.insert_memory(user_id="ada", content="x", related_threads=TOO_MANY_THREADS),
         "related_threads takes"),
        (lambda: import_jsonl(store, io.StringIO("\n".join([header, saved, line]))),
         f"metadata {TOO_LONG}"),
    ]  # fmt: skip


def test_json_at_the_limit_is_stored_alike_and_one_character_more_is_refused_on_every_write_path(db):
    memory_id = db.insert_memory(user_id="ada", content="longest", metadata={"k": LONGEST_TEXT})
    assert db.get_memory(memory_id)["metadata"] == {"k": LONGEST_TEXT}
    assert [m["id"] for m in db.get_memories(where_metadata={"k": LONGEST_TEXT})] == [memory_id]
    before = state(db)
    for call, message in over_the_limit(db, memory_id):
        with pytest.raises(ValidationError, match=re.escape(message)) as refused:
            call()
        assert "characters as JSON" in str(refused.value)
        assert state(db) == before


STRING_LIMITS = [
    ("user_id", 128),
    ("thread_id", 128),
    ("namespace", 128),
]


@pytest.mark.parametrize(("field", "longest"), STRING_LIMITS)
def test_identifiers_at_their_column_length_are_stored_and_found(db, field, longest):
    row = {"user_id": "ada", "content": "x"}
    memory_id = db.insert_memory(**{**row, field: "é" * longest})
    assert db.get_memory(memory_id)[field] == "é" * longest
    assert db.count_memories(**{field: "é" * longest}) == 1


def test_cluster_keys_at_their_column_length_are_stored_and_found(db):
    member = db.insert_memory(user_id="ada", content="x")
    cluster_id = db.upsert_cluster(user_id="ada", topic="t" * 255, category="c" * 255, memory_ids=[member])
    assert [c["cluster_id"] for c in db.get_clusters(topic="t" * 255, category="c" * 255)] == [cluster_id]


def test_a_topic_longer_than_a_cluster_key_still_clusters(dsn):
    memoric = Memoric(dsn)
    memoric.save("ada", "long topic", metadata={"topic": "t" * 1000, "category": "c" * 300})
    assert memoric.rebuild_clusters() == 1
    assert [(c["topic"], c["category"]) for c in memoric.get_clusters()] == [("t" * 255, "c" * 255)]
    memoric.close()


# --- scores ---------------------------------------------------------------------------------------


def test_extreme_scores_and_ages_rank_alike(dsn):
    memoric = Memoric(dsn, clock=Clock(NOW))
    memoric.ensure_schema()
    saved = [
        memoric.db.insert_memory(user_id="ada", content="oldest", score=100, created_at=MIN_TIMESTAMP),
        memoric.db.insert_memory(user_id="ada", content="future", score=0, created_at=MAX_TIMESTAMP),
        memoric.db.insert_memory(user_id="ada", content="now", score=100, created_at=NOW),
        memoric.db.insert_memory(user_id="ada", content="now, zero", score=0, created_at=NOW),
    ]
    ranked = [(m["id"], m["_score"]) for m in memoric.retrieve("ada", scope="user")]
    assert ranked == [(saved[2], 80), (saved[0], 50), (saved[1], 30), (saved[3], 30)]
    memoric.close()


# --- lock timeouts: a number of seconds, never NaN or infinity -----------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_the_cli_refuses_a_lock_timeout_that_is_no_number_of_seconds(cli, value):
    result = cli("migrate", "upgrade", "--lock-timeout", value)
    assert result.exit_code == 2
    assert "--lock-timeout" in result.stderr and "Traceback" not in result.output
    assert cli("migrate", "current").stdout == "base\n"


# --- the clock: its readings follow the timestamp rule ------------------------------------


@pytest.mark.parametrize(
    "moment", [dt.datetime(1, 1, 2, tzinfo=dt.UTC), dt.datetime(9999, 12, 30, 23, 59, tzinfo=dt.UTC)]
)
def test_a_clock_at_either_end_of_time_saves_recalls_and_round_trips(new_dsn, moment):
    memoric = Memoric(new_dsn(), clock=lambda: moment)
    saved = memoric.save("edge", "at the edge of time", thread_id="t")
    assert [m["id"] for m in memoric.retrieve("edge", thread_id="t")] == [saved]
    assert memoric.run_policies()["migrated"] == {"short_term": 0, "mid_term": 0}
    copy = Memoric(new_dsn())
    copy.ensure_schema()
    text = io.StringIO()
    export_jsonl(memoric.db, text)
    import_jsonl(copy.db, io.StringIO(text.getvalue()))
    assert copy.db.get_memory(saved)["created_at"] == moment


@pytest.mark.parametrize(
    "moment", [dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, 12, tzinfo=dt.UTC)]
)
def test_a_clock_past_either_end_of_time_is_refused_before_anything_is_written(new_dsn, moment):
    memoric = Memoric(new_dsn(), clock=lambda: moment)
    with pytest.raises(ValidationError, match="the clock's time must lie from 0001-01-02 to 9999-12-30"):
        memoric.save("edge", "never written")
    assert memoric.store.count_memories() == 0


@pytest.mark.parametrize("clock", [5, "now", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)])
def test_a_clock_that_is_no_function_is_refused_when_given(new_dsn, clock):
    """It was taken, and every write then failed with Python's TypeError."""
    with pytest.raises(ValidationError, match="clock must be a function returning a datetime, got"):
        Memoric(new_dsn(), clock=clock)


def test_no_clock_is_the_default_one(new_dsn):
    memoric = Memoric(new_dsn(), clock=None)
    before = dt.datetime.now(dt.UTC)
    memory = memoric.store.get_memory(memoric.save("ada", "now"))
    assert before <= memory["created_at"] <= dt.datetime.now(dt.UTC)
    memoric.close()
