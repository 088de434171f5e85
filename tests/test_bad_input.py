"""Bad input through the Memoric facade, on both dialects: refused, named, nothing written.

The library raises a MemoricError (ValidationError, ConfigError, MigrationError) naming the field
or value at fault.
Injection-shaped ids, keys and values are stored and matched literally and harm nothing.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math

import pytest
from click.testing import CliRunner

from memoric import Memoric, arguments
from memoric import json_input as j
from memoric import validation as v
from memoric.cli import main
from memoric.errors import ConfigError, MemoricError, MigrationError, ValidationError
from memoric.transfer import copy_database, export_jsonl, import_jsonl
from memoric.validation import MAX_TIMESTAMP
from tests.helpers.bad_input import control_memoric, left_alone
from tests.helpers.dialects import refusal


@pytest.fixture(scope="module")
def module_memoric(module_dsn):
    yield from control_memoric(module_dsn)


@pytest.fixture
def m(module_memoric, monkeypatch):
    """The module's Memoric; asserts after the test that nothing was written."""
    yield from left_alone(module_memoric, monkeypatch)


# --- the library: every entry point is wired to the validators ------------------------------------
# The rules themselves, their boundaries and messages, are tested once in test_validation.py, and
# every integer argument in test_integer_arguments.py. Here each entry point refuses one bad value
# per validated argument with the validator's own message; the `m` fixture checks nothing changed.

TIERS = ["short_term", "mid_term", "long_term"]
LATE = MAX_TIMESTAMP + dt.timedelta(microseconds=1)
GOOD = {"user_id": "ada", "content": "a memory"}


def entry(label: str, call, check):
    """A case: `call(memoric)` must refuse with the message of the validator call `check()`."""
    return pytest.param(call, check, id=label)


STORE_CALLS = [
    entry("insert_memory user_id", lambda m: m.db.insert_memory(**{**GOOD, "user_id": "x" * 129}),
          lambda: v.user_id("x" * 129)),
    entry("insert_memory content", lambda m: m.db.insert_memory(user_id="ada", content="nul\x00"),
          lambda: v.content("nul\x00")),
    entry("insert_memory thread_id", lambda m: m.db.insert_memory(**GOOD, thread_id=""),
          lambda: v.optional_text("thread_id", "")),
    entry("insert_memory namespace", lambda m: m.db.insert_memory(**GOOD, namespace=3),
          lambda: v.optional_text("namespace", 3)),
    entry("insert_memory tier", lambda m: m.db.insert_memory(**GOOD, tier="forever"),
          lambda: v.tier("forever", TIERS)),
    entry("insert_memory metadata", lambda m: m.db.insert_memory(**GOOD, metadata={"x": math.nan}),
          lambda: j.metadata({"x": math.nan})),
    entry("insert_memory related_threads", lambda m: m.db.insert_memory(**GOOD, related_threads="t1"),
          lambda: v.thread_list("related_threads", "t1")),
    entry("insert_memory summarized", lambda m: m.db.insert_memory(**GOOD, summarized="yes"),
          lambda: v.flag("summarized", "yes")),
    entry("insert_memory created_at", lambda m: m.db.insert_memory(**GOOD, created_at="2026-01-01"),
          lambda: v.timestamp("created_at", "2026-01-01")),
    entry("insert_memory updated_at", lambda m: m.db.insert_memory(**GOOD, updated_at=LATE),
          lambda: v.timestamp("updated_at", LATE)),
    entry("update_tier", lambda m: m.db.update_tier(memory_ids=[1], new_tier="nope"),
          lambda: v.tier("nope", TIERS)),
    entry("update_tier memory_ids", lambda m: m.db.update_tier(memory_ids=1, new_tier="mid_term"),
          lambda: v.memory_ids(1)),
    entry("delete_memories", lambda m: m.db.delete_memories(memory_ids="12"), lambda: v.memory_ids("12")),
    entry("update_content", lambda m: m.db.update_content(memory_id=1, new_content=""),
          lambda: v.content("", "new_content")),
    entry("update_metadata", lambda m: m.db.update_metadata(memory_id=1, new_metadata={"x": math.inf}),
          lambda: j.metadata({"x": math.inf}, "new_metadata")),
    entry("set_related_threads", lambda m: m.db.set_related_threads(memory_id=1, related_threads=[None]),
          lambda: v.thread_list("related_threads", [None])),
    entry("get_memories where_metadata", lambda m: m.db.get_memories(where_metadata=["topic"]),
          lambda: j.metadata_filter(["topic"])),
    entry("get_memories user_id", lambda m: m.db.get_memories(user_id=""), lambda: v.user_id("")),
    entry("get_memories thread_id", lambda m: m.db.get_memories(thread_id=5),
          lambda: v.optional_text("thread_id", 5)),
    entry("get_memories namespace", lambda m: m.db.get_memories(namespace="n\x00"),
          lambda: v.optional_text("namespace", "n\x00")),
    entry("get_memories tier", lambda m: m.db.get_memories(tier="nope"), lambda: v.tier("nope", TIERS)),
    entry("get_memories summarized", lambda m: m.db.get_memories(summarized="yes"),
          lambda: v.flag("summarized", "yes")),
    entry("get_memories related_threads_any_of", lambda m: m.db.get_memories(related_threads_any_of="t1"),
          lambda: v.thread_list("related_threads_any_of", "t1")),
    entry("count_memories", lambda m: m.db.count_memories(where_metadata={"k": b"v"}),
          lambda: j.metadata_filter({"k": b"v"})),
    entry("upsert_cluster topic",
          lambda m: m.db.upsert_cluster(user_id="ada", topic="", category="c", memory_ids=[]),
          lambda: v.cluster_key("topic", "")),
    entry("upsert_cluster category",
          lambda m: m.db.upsert_cluster(user_id="ada", topic="t", category="c" * 256, memory_ids=[]),
          lambda: v.cluster_key("category", "c" * 256)),
    entry("upsert_cluster summary",
          lambda m: m.db.upsert_cluster(user_id="ada", topic="t", category="c", memory_ids=[], summary=3),
          lambda: v.clean_text("summary", 3)),
    entry("get_clusters topic", lambda m: m.db.get_clusters(topic="t" * 256),
          lambda: v.cluster_key("topic", "t" * 256)),
    entry("lock timeout", lambda m: m.db.lock("x", timeout=math.nan).__enter__(),
          lambda: v.non_negative_number("timeout", math.nan)),
]  # fmt: skip


@pytest.mark.parametrize(("call", "check"), STORE_CALLS)
def test_the_store_refuses_with_the_validators_message_and_writes_nothing(m, call, check):
    assert refusal(call, m) == refusal(check)


FACADE_CALLS = [
    entry("save user_id", lambda m: m.save("", "x"), lambda: v.user_id("")),
    entry("save content", lambda m: m.save("ada", b"bytes"), lambda: v.content(b"bytes")),
    entry("save thread_id", lambda m: m.save("ada", "x", thread_id="t" * 129),
          lambda: v.optional_text("thread_id", "t" * 129)),
    entry("save namespace", lambda m: m.save("ada", "x", namespace="n\x00"),
          lambda: v.optional_text("namespace", "n\x00")),
    entry("save tier", lambda m: m.save("ada", "x", tier=1), lambda: v.tier(1, TIERS)),
    entry("save metadata", lambda m: m.save("ada", "x", metadata={1: "a"}), lambda: j.metadata({1: "a"})),
    entry("retrieve user_id", lambda m: m.retrieve(None), lambda: v.user_id(None)),
    entry("retrieve thread_id", lambda m: m.retrieve("control", thread_id="t\x00"),
          lambda: v.optional_text("thread_id", "t\x00")),
    entry("retrieve namespace", lambda m: m.retrieve("control", namespace=7),
          lambda: v.optional_text("namespace", 7)),
    entry("retrieve metadata_filter", lambda m: m.retrieve("control", metadata_filter={"k": {1, 2}}),
          lambda: j.metadata_filter({"k": {1, 2}}, "metadata_filter")),
    entry("retrieve include_summarized", lambda m: m.retrieve("control", include_summarized="yes"),
          lambda: v.flag("include_summarized", "yes")),
    entry("run_policies", lambda m: m.run_policies(user_id="u\x00"), lambda: v.user_id("u\x00")),
    entry("run_policies on_progress", lambda m: m.run_policies(on_progress=5),
          lambda: arguments.progress("on_progress", 5)),
    entry("rebuild_clusters", lambda m: m.rebuild_clusters("x" * 129), lambda: v.user_id("x" * 129)),
    entry("rebuild_clusters on_progress", lambda m: m.rebuild_clusters(on_progress=[]),
          lambda: arguments.progress("on_progress", [])),
    entry("get_clusters user_id", lambda m: m.get_clusters(b"ada"), lambda: v.user_id(b"ada")),
    entry("get_clusters category", lambda m: m.get_clusters(category="c\x00"),
          lambda: v.optional_text("category", "c\x00")),
    entry("stats", lambda m: m.stats(["ada"]), lambda: v.user_id(["ada"])),
    entry("forget", lambda m: m.forget(" "), lambda: v.user_id(" ")),
    entry("forget without a user", lambda m: m.forget(None, [m.retrieve("control")[0]["id"]]),
          lambda: v.user_id(None)),
]  # fmt: skip


@pytest.mark.parametrize(("call", "check"), FACADE_CALLS)
def test_the_facade_refuses_with_the_validators_message_and_writes_nothing(m, call, check):
    assert refusal(call, m) == refusal(check)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scope": "world"}, "scope must be one of"),
        ({"scope": "topic"}, 'scope "topic" needs metadata_filter'),
        ({"scope": "topic", "metadata_filter": {"x": 1}}, r'needs metadata_filter=\{"topic": \.\.\.\}'),
        ({"scope": "topic", "metadata_filter": {"topic": None}}, "string topic in metadata_filter, got None"),
        ({"scope": "topic", "metadata_filter": {"topic": 3}}, "a string topic in metadata_filter, got 3"),
    ],
)
def test_retrieve_refuses_an_unknown_scope_or_a_topic_without_one(m, change, message):
    with pytest.raises(ValidationError, match=message):
        m.retrieve("control", **change)


def test_a_bulk_row_that_is_not_a_dict_is_named_by_its_index(m):
    with pytest.raises(ValidationError, match=r"rows\[0\] must be a dict"):
        m.db.insert_memories(["not a row"])


# The URL rules are tested once in test_connection.py and the config rules in test_config.py;
# the facade and the CLI show they are wired to them.


def test_the_facade_refuses_a_bad_url_or_config_before_opening_anything(monkeypatch, tmp_path):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match=r"unsupported database URL 'mysql://u:\*\*\*@") as raised:
        Memoric("mysql://u:secret@localhost/db")
    assert "secret" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"scoring\.importance"):
        Memoric(f"sqlite:///{tmp_path / 'm.db'}", config={"scoring": {"importance": math.nan}})
    path = tmp_path / "memoric.yaml"
    path.write_text("tiers: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        Memoric(f"sqlite:///{tmp_path / 'm.db'}", config_path=path)
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("callback", ["summarizer", "enricher"])
def test_the_facade_refuses_a_callback_that_is_no_function_before_opening_anything(tmp_path, callback):
    with pytest.raises(ValidationError, match=rf"^{callback} must be a function .*, got str$"):
        Memoric(f"sqlite:///{tmp_path / 'm.db'}", **{callback: "summary"})
    assert not (tmp_path / "m.db").exists()


def test_every_error_is_a_memoric_error():
    assert all(issubclass(kind, MemoricError) for kind in (ValidationError, ConfigError, MigrationError))


# --- injection-shaped text -----------------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE memories; --",
    '"; DROP TABLE memories; --',
    "' OR '1'='1",
    ") OR 1=1 --",
    "%s",
    "%(user_id)s",
    "50%",
    "%",
    "_",
    "$.a[0]",
    '$."a"',
    "$1",
    "?",
    ":name",
    "a.b",
    "it's",
    'say "hi"',
    "back\\slash",
    "\\",
    "\\x00 written out",
    "*",
    "{}",
    "[]",
    "null",
    "ünï 🐢",
    "tab\tand\nnewline",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_shaped_text_is_stored_and_matched_literally(m, text):
    saved = m.save(
        text,
        text,
        thread_id=text,
        namespace=text,
        metadata={text: text, "nested": {text: [text]}, "topic": text},
    )
    decoy = m.save(
        text, "decoy", thread_id=text + "z", namespace=text, metadata={text + "z": text, "z" + text: text}
    )
    try:
        where = {"namespace": text, "thread_id": text}
        assert [r["id"] for r in m.retrieve(text, metadata_filter={text: text}, **where)] == [saved]
        assert [r["id"] for r in m.retrieve(text, metadata_filter={"nested": {text: [text]}}, **where)] == [
            saved
        ]
        assert [r["id"] for r in m.retrieve(text, metadata_filter={text: text + "x"}, **where)] == []
        topic = m.retrieve(text, namespace=text, scope="topic", metadata_filter={"topic": text})
        assert [r["id"] for r in topic] == [saved]
        assert sorted(r["id"] for r in m.retrieve(text, scope="user", namespace=text)) == [saved, decoy]
        assert m.retrieve("control", scope="user", metadata_filter={text: text}) == []
        memory = m.db.get_memory(saved)
        assert (memory["user_id"], memory["thread_id"], memory["namespace"], memory["content"]) == (text,) * 4
        assert memory["metadata"] == {text: text, "nested": {text: [text]}, "topic": text}
        assert m.rebuild_clusters(text) == 2
        assert [c["memory_ids"] for c in m.get_clusters(text, topic=text)] == [[saved]]
        assert m.stats(text)["total"] == 2
        assert m.run_policies(user_id=text)["summaries_created"] == 0

        cli = ["--dsn", m.db.dsn, "recall", "--user", text, "--thread", text, "--namespace", text]
        result = CliRunner().invoke(main, [*cli, "--metadata", json.dumps({text: text}), "--json"])
        assert result.exit_code == 0, result.output + result.stderr
        assert [r["id"] for r in json.loads(result.stdout)] == [saved]
    finally:
        m.db.delete_memories(memory_ids=[saved, decoy])
        for cluster in m.get_clusters(text):
            m.db.delete_cluster(cluster_id=cluster["cluster_id"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"progress": 5}, "progress must be a function .*, got int"),
        ({"progress": lambda: 1}, "progress must be a function .*: it cannot be called with 1 arguments"),
        ({"batch_size": "x"}, "batch_size must be"),
    ],
    ids=["not a function", "no argument", "not a number"],
)
def test_an_import_or_a_copy_refuses_a_bad_option_before_writing_a_row(dsn, new_dsn, option, message):
    """The progress callback was first called after a batch was written: a TypeError, the rest
    of the file left out (found by a hostile run)."""
    source = Memoric(dsn)
    source.db.insert_memories([{"user_id": "ada", "content": f"memory {n}"} for n in range(5)])
    export = io.StringIO()
    export_jsonl(source.db, export)
    target = Memoric(new_dsn())
    options = {"batch_size": 2, **option}
    with pytest.raises(ValidationError, match=message):
        import_jsonl(target.db, io.StringIO(export.getvalue()), **options)
    with pytest.raises(ValidationError, match=message):
        copy_database(source.db, target.db, **options)
    assert target.db.count_memories() == 0


@pytest.mark.parametrize("callback", ["on_progress", "summarizer"])
def test_a_policy_callback_taking_the_wrong_arguments_is_refused_before_the_run(dsn, callback):
    memoric = Memoric(dsn)
    with pytest.raises(ValidationError, match=f"^{callback} must be a function .*: it cannot be called with"):
        if callback == "on_progress":
            memoric.run_policies(on_progress=lambda: None)
        else:
            Memoric(dsn, summarizer=lambda memories: "").run_policies()
