"""Bad input through the Memoric facade and the CLI, on both dialects: refused, named, nothing written.

The library raises a MemoricError (ValidationError, ConfigError, MigrationError) naming the field
or value at fault; the CLI prints it as one line on stderr and exits 1, without a traceback.
Injection-shaped ids, keys and values are stored and matched literally and harm nothing.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math

import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import main
from memoric.errors import ConfigError, MemoricError, MigrationError, ValidationError
from tests.helpers import one_line_error as any_one_line_error
from tests.helpers import snapshot


def deeply_nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"k": value}
    return value


@pytest.fixture(scope="module")
def module_memoric(dialect, tmp_path_factory, request):
    """A database built through the chain, with a control memory and cluster no bad input may touch."""
    if dialect == "sqlite":
        dsn = f"sqlite:///{tmp_path_factory.mktemp('bad') / 'memoric.db'}"
    else:
        dsn = request.getfixturevalue("new_postgres_url")()
    memoric = Memoric(dsn)
    memoric.save("control", "the control memory", thread_id="t", metadata={"topic": "x", "n": 1})
    memoric.rebuild_clusters()
    yield memoric
    memoric.close()


def state(memoric: Memoric) -> tuple:
    """Everything a bad input must leave alone: tables, memories, clusters, schema version."""
    tables = sorted(memoric.db.database.get_tables())
    return tables, snapshot(memoric.db), memoric.migrations.current()


@pytest.fixture
def m(module_memoric, monkeypatch):
    """The module's Memoric; asserts after the test that nothing was written."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    before = state(module_memoric)
    yield module_memoric
    assert state(module_memoric) == before


# --- the library: Memoric.save and Memoric.retrieve ---------------------------------------------

GOOD_SAVE = {"user_id": "ada", "content": "a memory"}
BAD_SAVES = [
    ({"user_id": ""}, "user_id must be a non-empty string"),
    ({"user_id": "   "}, "user_id must be a non-empty string"),
    ({"user_id": "x" * 129}, "user_id must be at most 128 characters, got 129"),
    ({"user_id": "x" * 1_000_000}, "user_id must be at most 128 characters"),
    ({"user_id": None}, "user_id must be a string, got NoneType"),
    ({"user_id": 42}, "user_id must be a string, got int"),
    ({"user_id": b"ada"}, "user_id must be a string, got bytes"),
    ({"user_id": "a\x00b"}, "user_id contains a NUL character"),
    ({"content": ""}, "content must be a non-empty string"),
    ({"content": None}, "content must be a string"),
    ({"content": b"bytes"}, "content must be a string, got bytes"),
    ({"content": "nul \x00 inside"}, "content contains a NUL character"),
    ({"content": "lone \ud800 surrogate"}, "content is not valid Unicode"),
    ({"thread_id": ""}, "thread_id must be a non-empty string"),
    ({"thread_id": 7}, "thread_id must be a string, got int"),
    ({"thread_id": "t\x00"}, "thread_id contains a NUL character"),
    ({"thread_id": "t" * 129}, "thread_id must be at most 128 characters"),
    ({"namespace": "n\x00"}, "namespace contains a NUL character"),
    ({"namespace": "n" * 129}, "namespace must be at most 128 characters"),
    ({"namespace": 3}, "namespace must be a string, got int"),
    ({"tier": "forever"}, "tier must be one of .*got 'forever'"),
    ({"tier": ""}, "tier must be one of"),
    ({"tier": 1}, "tier must be one of"),
    ({"score": 101}, "score must be from 0 to 100, got 101"),
    ({"score": -1}, "score must be from 0 to 100, got -1"),
    ({"score": 10**20}, "score must be from 0 to 100"),
    ({"score": True}, "score must be an int from 0 to 100, got True"),
    ({"score": False}, "score must be an int from 0 to 100, got False"),
    ({"score": 50.0}, "score must be an int from 0 to 100, got 50.0"),
    ({"score": math.nan}, "score must be an int from 0 to 100, got nan"),
    ({"score": "50"}, "score must be an int from 0 to 100, got '50'"),
    ({"metadata": []}, "metadata must be a dict, got list"),
    ({"metadata": "{}"}, "metadata must be a dict, got str"),
    ({"metadata": 5}, "metadata must be a dict, got int"),
    ({"metadata": {1: "a"}}, "metadata has a non-string key 1"),
    ({"metadata": {None: "a"}}, "metadata has a non-string key None"),
    ({"metadata": {("t",): 1}}, r"metadata has a non-string key \('t',\)"),
    ({"metadata": {"x": math.nan}}, r"metadata\['x'\] holds nan; JSON numbers must be finite"),
    ({"metadata": {"x": math.inf}}, r"metadata\['x'\] holds inf; JSON numbers must be finite"),
    ({"metadata": {"x": -math.inf}}, r"metadata\['x'\] holds -inf"),
    ({"metadata": {"x": [1, {"y": math.nan}]}}, r"metadata\['x'\]\[1\]\['y'\] holds nan"),
    ({"metadata": {"x": {1, 2}}}, r"metadata\['x'\] holds a set"),
    ({"metadata": {"x": frozenset()}}, "holds a frozenset"),
    ({"metadata": {"x": b"raw"}}, "holds a bytes"),
    ({"metadata": {"x": bytearray(b"raw")}}, "holds a bytearray"),
    ({"metadata": {"x": dt.datetime(2026, 1, 1)}}, "holds a datetime"),
    ({"metadata": {"x": dt.date(2026, 1, 1)}}, "holds a date"),
    ({"metadata": {"x": decimal.Decimal("1.5")}}, "holds a Decimal"),
    ({"metadata": {"x": (1, 2)}}, "holds a tuple"),
    ({"metadata": {"x": object()}}, "holds a object"),
    ({"metadata": {"nul\x00key": 1}}, "metadata key 'nul\\\\x00key' contains a NUL character"),
    ({"metadata": {"k": "nul\x00value"}}, r"metadata\['k'\] contains a NUL character"),
    ({"metadata": {"k": ["ok", "nul\x00"]}}, r"metadata\['k'\]\[1\] contains a NUL character"),
    ({"metadata": {"k": {"nested\x00": 1}}}, "contains a NUL character"),
    ({"metadata": {"k": "lone \udfff"}}, "not valid Unicode"),
    ({"metadata": deeply_nested(70)}, "nested deeper than 64 levels"),
]


@pytest.mark.parametrize(("change", "message"), BAD_SAVES)
def test_save_refuses_bad_input_and_writes_nothing(m, change, message):
    with pytest.raises(ValidationError, match=message):
        m.save(**{**GOOD_SAVE, **change})


BAD_RETRIEVES = [
    ({"user_id": ""}, "user_id must be a non-empty string"),
    ({"user_id": None}, "user_id must be a string"),
    ({"user_id": 7}, "user_id must be a string"),
    ({"user_id": "x" * 129}, "user_id must be at most 128 characters"),
    ({"user_id": "a\x00"}, "user_id contains a NUL character"),
    ({"thread_id": "t\x00"}, "thread_id contains a NUL character"),
    ({"thread_id": 5}, "thread_id must be a string"),
    ({"namespace": "n\x00"}, "namespace contains a NUL character"),
    ({"metadata_filter": ["topic"]}, "where_metadata must be a dict, got list"),
    ({"metadata_filter": "topic"}, "where_metadata must be a dict, got str"),
    ({"metadata_filter": {"k": math.nan}}, "holds nan; JSON numbers must be finite"),
    ({"metadata_filter": {"k": math.inf}}, "holds inf; JSON numbers must be finite"),
    ({"metadata_filter": {"k": {1, 2}}}, "holds a set"),
    ({"metadata_filter": {"k": b"v"}}, "holds a bytes"),
    ({"metadata_filter": {"k": dt.datetime(2026, 1, 1)}}, "holds a datetime"),
    ({"metadata_filter": {1: "v"}}, "non-string key 1"),
    ({"metadata_filter": {"k\x00": 1}}, "contains a NUL character"),
    ({"metadata_filter": {"k": "v\x00"}}, "contains a NUL character"),
    ({"scope": "world"}, "scope must be one of"),
    ({"scope": "topic"}, 'scope "topic" needs metadata_filter'),
    ({"top_k": -1}, "must be a non-negative int, got -1"),
    ({"top_k": "10"}, "must be a non-negative int, got '10'"),
    ({"top_k": True}, "must be a non-negative int, got True"),
    ({"top_k": 2.5}, "must be a non-negative int, got 2.5"),
    ({"include_summarized": "yes"}, "include_summarized must be True, False or None"),
]


@pytest.mark.parametrize(("change", "message"), BAD_RETRIEVES)
def test_retrieve_refuses_bad_input(m, change, message):
    arguments = {"user_id": "control", **change}
    with pytest.raises(ValidationError, match=message):
        m.retrieve(arguments.pop("user_id"), **arguments)


BAD_CALLS = [
    ("run_policies", {"user_id": ""}, "user_id"),
    ("run_policies", {"user_id": 5}, "user_id"),
    ("run_policies", {"user_id": "u\x00"}, "NUL"),
    ("rebuild_clusters", {"user_id": "x" * 129}, "user_id"),
    ("rebuild_clusters", {"user_id": b"ada"}, "user_id"),
    ("get_clusters", {"topic": ""}, "topic"),
    ("get_clusters", {"category": "c\x00"}, "NUL"),
    ("get_clusters", {"limit": -1}, "limit"),
    ("stats", {"user_id": ""}, "user_id"),
    ("stats", {"user_id": ["ada"]}, "user_id"),
]


@pytest.mark.parametrize(("method", "arguments", "message"), BAD_CALLS)
def test_policies_clusters_and_stats_refuse_bad_input(m, method, arguments, message):
    with pytest.raises(ValidationError, match=message):
        getattr(m, method)(**arguments)


BAD_MEMORY_IDS = [
    ("get_memory", ("1",), {}),
    ("get_memory", (1.0,), {}),
    ("get_memory", (True,), {}),
    ("get_memory", (None,), {}),
    ("update_tier", (), {"memory_ids": ["1"], "new_tier": "mid_term"}),
    ("update_tier", (), {"memory_ids": 1, "new_tier": "mid_term"}),
    ("mark_summarized", (), {"memory_ids": [True]}),
    ("delete_memories", (), {"memory_ids": [1.0]}),
    ("delete_memories", (), {"memory_ids": "1"}),
    ("update_content", (), {"memory_id": "1", "new_content": "x"}),
    ("update_metadata", (), {"memory_id": None, "new_metadata": {}}),
]


@pytest.mark.parametrize(("method", "args", "kwargs"), BAD_MEMORY_IDS)
def test_non_int_memory_ids_are_refused(m, method, args, kwargs):
    with pytest.raises(ValidationError, match="memory_id"):
        getattr(m.db, method)(*args, **kwargs)


BAD_SETUPS = [
    ({"dsn": "not a url"}, ConfigError, "invalid database URL"),
    ({"dsn": "mysql://u:secret@localhost/db"}, ConfigError, "unsupported database URL 'mysql://u:\\*\\*\\*@"),
    ({"dsn": "sqlite://"}, ConfigError, "in-memory"),
    ({"dsn": "sqlite:///:memory:"}, ConfigError, "in-memory"),
    (
        {"dsn": "postgresql://u:secret@127.0.0.1:1/db"},
        ConfigError,
        "cannot open database postgresql://u:\\*\\*\\*@",
    ),
    ({"dsn": "postgresql://u:secret@host:port/db"}, ConfigError, "invalid database URL"),
    ({"dsn": "postgresql:///"}, ConfigError, "invalid database URL"),
    ({"dsn": "postgresql://u:secret@localhost"}, ConfigError, "has no database name"),
    ({"config": {"colour": "blue"}}, ConfigError, "unknown config key 'colour'"),
    ({"config": {"scoring": {"weight": 1}}}, ConfigError, "unknown config key 'scoring.weight'"),
    (
        {"config": {"tiers": [{"name": "a", "expire": 3}]}},
        ConfigError,
        r"unknown config key 'tiers\[0\].expire'",
    ),
    ({"config": {"tiers": "short"}}, ConfigError, "tiers must be a list"),
    ({"config": {"summarization": {"min_records": 0}}}, ConfigError, "summarization.min_records"),
    ({"config": {"scoring": {"importance": math.nan}}}, ConfigError, "scoring.importance"),
]


@pytest.mark.parametrize(("arguments", "error", "message"), BAD_SETUPS)
def test_malformed_dsns_and_configs_are_config_errors(arguments, error, message, monkeypatch):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    with pytest.raises(error, match=message) as raised:
        Memoric(**arguments)
    assert "secret" not in str(raised.value)


BAD_YAML = [
    ("tiers: [\n", "is not valid YAML"),
    ("colour: blue\n", "unknown config key 'colour'"),
    ("scoring: {decay: 3}\n", "unknown config key 'scoring.decay'"),
    ("- just\n- a list\n", "must be a mapping"),
    ("scoring: high\n", "scoring must be a mapping"),
    ("\tkey: tab-indented\n", "is not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_YAML)
def test_malformed_yaml_is_a_config_error(tmp_path, text, message):
    path = tmp_path / "memoric.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Memoric(f"sqlite:///{tmp_path / 'm.db'}", config_path=path)
    assert not (tmp_path / "m.db").exists()


BAD_TARGETS = [
    ("upgrade", "999"),
    ("upgrade", "head~1"),
    ("upgrade", "+1"),
    ("upgrade", "-1"),
    ("upgrade", ""),
]


@pytest.mark.parametrize(("method", "target"), BAD_TARGETS)
def test_unknown_migration_targets_are_migration_errors(m, method, target):
    with pytest.raises(MigrationError):
        getattr(m.migrations, method)(target)


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


# --- the CLI: one line on stderr, exit 1, nothing written ---------------------------------------

HEADER = '{"type": "header", "format": "memoric-export", "format_version": 1}'
MEMORY = {"type": "memory", "id": 1000, "user_id": "ada", "content": "imported"}


def one_line_error(result) -> str:
    """`conftest.one_line_error`, and nothing on stdout, the error the last line, "Error: " spaced."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.stderr)
    error = any_one_line_error(result)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert error.startswith("Error: ") and error == result.stderr.splitlines()[-1], result.stderr
    return error


def memory_line(**change) -> str:
    return json.dumps({**MEMORY, **change})


NUL = "\x00"
CLI_BAD_ARGUMENTS = [
    (["recall", "--user", ""], "user_id must be a non-empty string"),
    (["recall", "--user", "   "], "user_id must be a non-empty string"),
    (["recall", "--user", "x" * 129], "user_id must be at most 128 characters"),
    (["recall", "--user", f"a{NUL}b"], "user_id contains a NUL character"),
    (["recall", "--user", "ada", "--thread", f"t{NUL}"], "thread_id contains a NUL character"),
    (["recall", "--user", "ada", "--thread", ""], "thread_id must be a non-empty string"),
    (["recall", "--user", "ada", "--namespace", f"n{NUL}"], "namespace contains a NUL character"),
    (["recall", "--user", "ada", "--metadata", "{not json"], "--metadata is not valid JSON"),
    (["recall", "--user", "ada", "--metadata", ""], "--metadata is not valid JSON"),
    (["recall", "--user", "ada", "--metadata", "[1, 2]"], "--metadata must be a JSON object"),
    (["recall", "--user", "ada", "--metadata", '"travel"'], "--metadata must be a JSON object"),
    (["recall", "--user", "ada", "--metadata", "null"], "--metadata must be a JSON object"),
    (["recall", "--user", "ada", "--metadata", "42"], "--metadata must be a JSON object"),
    (["recall", "--user", "ada", "--metadata", '{"a": NaN}'], "JSON numbers must be finite"),
    (["recall", "--user", "ada", "--metadata", '{"a": -Infinity}'], "JSON numbers must be finite"),
    (["recall", "--user", "ada", "--metadata", '{"k\\u0000": 1}'], "contains a NUL character"),
    (["recall", "--user", "ada", "--metadata", '{"k": "v\\u0000"}'], "contains a NUL character"),
    (["recall", "--user", "ada", "--scope", "topic"], 'scope "topic" needs metadata_filter'),
    (["stats", "--user", ""], "user_id must be a non-empty string"),
    (["stats", "--user", "x" * 200], "user_id must be at most 128 characters"),
    (["run-policies", "--user", f"u{NUL}"], "user_id contains a NUL character"),
    (["run-policies", "--user", "", "--dry-run"], "user_id must be a non-empty string"),
    (["clusters", "--user", ""], "user_id must be a non-empty string"),
    (["clusters", "--topic", ""], "topic must be a non-empty string"),
    (["clusters", "--category", f"c{NUL}"], "category contains a NUL character"),
    (["clusters", "--rebuild", "--user", " "], "user_id must be a non-empty string"),
    (["export", "--user", ""], "user_id must be a non-empty string"),
    (["export", "--user", "x" * 129], "user_id must be at most 128 characters"),
    (["migrate", "upgrade", "999"], "unknown migration target '999'"),
    (["migrate", "upgrade", "head~1"], "unknown migration target 'head~1'"),
    (["migrate", "upgrade", "+1"], "cannot upgrade +1: only 0 migration(s) pending"),
    (["migrate", "upgrade", "-1"], "goes backwards"),
    (["migrate", "downgrade", "+1"], "goes forwards"),
    (["migrate", "downgrade", "-5"], "cannot downgrade -5: only 3 migration(s) applied"),
    (["migrate", "downgrade", "nope"], "unknown migration target 'nope'"),
    (["migrate", "stamp", "004"], "unknown migration target '004'"),
    (["migrate", "upgrade", "--sql", "999"], "unknown migration target '999'"),
]


@pytest.mark.parametrize(("args", "message"), CLI_BAD_ARGUMENTS)
def test_cli_refuses_bad_arguments_in_one_line(m, args, message):
    error = one_line_error(CliRunner().invoke(main, ["--dsn", m.db.dsn, *args]))
    assert message in error


CLI_BAD_IMPORTS = [
    ("", "the export is empty: no header line"),
    ("\n\n", "the export is empty: no header line"),
    (memory_line() + "\n", "not a memoric export"),
    ('{"type": "header", "format": "other-tool", "format_version": 1}\n', "not a memoric export"),
    ('{"type": "header", "format": "memoric-export", "format_version": 2}\n', "format version 2 is newer"),
    ('{"type": "header", "format": "memoric-export", "format_version": "1"}\n', "format version '1'"),
    ("[1, 2]\n", "line 1 is not a JSON object"),
    ("{oops\n", "line 1 is not valid JSON"),
    (f"{HEADER}\n{{oops\n", "line 2 is not valid JSON"),
    (f"{HEADER}\n[1]\n", "line 2 is not a JSON object"),
    (f'{HEADER}\n"memory"\n', "line 2 is not a JSON object"),
    (f'{HEADER}\n{{"type": "alien"}}\n', "line 2: unknown record type 'alien'"),
    (f'{HEADER}\n{{"user_id": "ada", "content": "x"}}\n', "line 2: unknown record type None"),
    (f"{HEADER}\n{memory_line(user_id='')}\n", "line 2: user_id must be a non-empty string"),
    (f"{HEADER}\n{memory_line(user_id='x' * 129)}\n", "line 2: user_id must be at most 128 characters"),
    (f"{HEADER}\n{memory_line(user_id=7)}\n", "line 2: user_id must be a string, got int"),
    (f"{HEADER}\n{memory_line(user_id=None)}\n", "line 2: user_id must be a string"),
    (f"{HEADER}\n{memory_line(user_id='a' + NUL)}\n", "line 2: user_id contains a NUL character"),
    (f"{HEADER}\n{memory_line(content='')}\n", "line 2: content must be a non-empty string"),
    (f"{HEADER}\n{memory_line(content='n' + NUL)}\n", "line 2: content contains a NUL character"),
    (f"{HEADER}\n{memory_line(content=['x'])}\n", "line 2: content must be a string, got list"),
    (f"{HEADER}\n{memory_line(thread_id='t' + NUL)}\n", "line 2: thread_id contains a NUL character"),
    (f"{HEADER}\n{memory_line(namespace=3)}\n", "line 2: namespace must be a string"),
    (f"{HEADER}\n{memory_line(tier='forever')}\n", "line 2: tier must be one of"),
    (f"{HEADER}\n{memory_line(score=101)}\n", "line 2: score must be from 0 to 100, got 101"),
    (f"{HEADER}\n{memory_line(score=-1)}\n", "line 2: score must be from 0 to 100, got -1"),
    (f"{HEADER}\n{memory_line(score=True)}\n", "line 2: score must be an int from 0 to 100, got True"),
    (f"{HEADER}\n{memory_line(score=5.5)}\n", "line 2: score must be an int from 0 to 100, got 5.5"),
    (f"{HEADER}\n{memory_line(score='50')}\n", "line 2: score must be an int from 0 to 100, got '50'"),
    (f"{HEADER}\n{memory_line(metadata=[1])}\n", "line 2: metadata must be a dict, got list"),
    (f"{HEADER}\n{memory_line(metadata='{}')}\n", "line 2: metadata must be a dict, got str"),
    (f'{HEADER}\n{memory_line()[:-1]}, "metadata": {{"x": NaN}}}}\n', "line 2: metadata['x'] holds nan"),
    (f'{HEADER}\n{memory_line()[:-1]}, "metadata": {{"x": Infinity}}}}\n', "line 2: metadata['x'] holds inf"),
    (f"{HEADER}\n{memory_line(metadata={'k' + NUL: 1})}\n", "line 2: metadata key"),
    (
        f"{HEADER}\n{memory_line(metadata={'k': 'v' + NUL})}\n",
        "line 2: metadata['k'] contains a NUL character",
    ),
    (f"{HEADER}\n{memory_line(id='1')}\n", "line 2: id must be an int, got '1'"),
    (f"{HEADER}\n{memory_line(id=1.5)}\n", "line 2: id must be an int, got 1.5"),
    (f"{HEADER}\n{memory_line(id=True)}\n", "line 2: id must be an int, got True"),
    (
        f"{HEADER}\n{memory_line(created_at='yesterday')}\n",
        "line 2: created_at 'yesterday' is not an ISO 8601",
    ),
    (f"{HEADER}\n{memory_line(updated_at=12)}\n", "line 2: updated_at must be a datetime, got int"),
    (f"{HEADER}\n{memory_line(summarized='yes')}\n", "line 2: summarized must be True, False or None"),
    (f"{HEADER}\n{memory_line(related_threads='t1')}\n", "line 2: related_threads must be a list"),
    (f"{HEADER}\n{memory_line(colour='blue')}\n", "line 2: unexpected field"),
    (f'{HEADER}\n{{"type": "cluster", "cluster_id": 9}}\n', "line 2: missing"),
    (
        f'{HEADER}\n{{"type": "cluster", "cluster_id": 9, "user_id": "ada", "topic": "t", "category": "c", '
        '"memory_ids": ["x"], "memory_count": 1, "summary": ""}\n',
        "line 2: memory_ids[0] must be an int",
    ),
    (
        f"{HEADER}\n{memory_line()}\n{memory_line(id=1001, score=500)}\n",
        "line 3: score must be from 0 to 100",
    ),
    (
        f"{HEADER}\n{memory_line(id=1, user_id='intruder')}\n",
        "memory id 1 is already in the target with other",
    ),
    (f"{HEADER}\n".encode() + b'{"type": "memory", "content": "\xff\xfe"}\n', "line 2 is not UTF-8 text"),
]


@pytest.mark.parametrize(("text", "message"), CLI_BAD_IMPORTS)
def test_cli_import_refuses_a_bad_file_whole(m, text, message):
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    result = CliRunner().invoke(main, ["--dsn", m.db.dsn, "import", "-"], input=data)
    assert message in one_line_error(result)


def test_cli_import_of_a_missing_file(m, tmp_path):
    error = one_line_error(
        CliRunner().invoke(main, ["--dsn", m.db.dsn, "import", str(tmp_path / "no.jsonl")])
    )
    assert "cannot read" in error and "No such file or directory" in error


CLI_BAD_DSNS = [
    ("not a url", "invalid database URL"),
    ("mysql://agent:s3cret@localhost/db", "unsupported database URL 'mysql://agent:***@localhost/db'"),
    ("oracle://x", "unsupported database URL"),
    ("sqlite://", "in-memory SQLite"),
    ("sqlite:///:memory:", "in-memory SQLite"),
    ("sqlite:////no/such/directory/m.db", "directory '/no/such/directory' does not exist"),
    (
        "postgresql://agent:s3cret@127.0.0.1:1/memoric",
        "cannot open database postgresql://agent:***@127.0.0.1:1",
    ),
    ("postgresql://agent:s3cret@host:port/memoric", "invalid database URL 'postgresql://agent:***@host:port"),
    ("postgresql:///", "invalid database URL"),
    ("postgresql://agent:s3cret@localhost", "has no database name"),
    (
        "postgresql+pool://agent:s3cret@127.0.0.1:1/memoric",
        "cannot open database postgresql+pool://agent:***@",
    ),
]


@pytest.mark.parametrize(("dsn", "message"), CLI_BAD_DSNS)
def test_cli_refuses_a_malformed_dsn_in_one_line_password_masked(dsn, message, monkeypatch, tmp_path):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    unused = f"sqlite:///{tmp_path / 'unused.db'}"
    for command in (
        ["stats"],
        ["export"],
        ["copy", "--from", dsn, "--to", unused],
        ["copy", "--from", unused, "--to", dsn],
    ):
        result = CliRunner().invoke(main, ["--dsn", dsn, *command])
        error = one_line_error(result)
        assert "s3cret" not in result.output + result.stderr
        if command[0] != "copy":
            assert message in error
    assert list(tmp_path.iterdir()) == []


CLI_BAD_CONFIGS = BAD_YAML + [
    ("tiers: []\n", "tiers must not be empty"),
    ("tiers:\n  - {name: a, expire_after_days: 1}\n", "has no next tier"),
    ("policies: {lock_timeout: -1}\n", "policies.lock_timeout must be at least 0"),
    ("database: {dsn: 42}\n", "database.dsn must be a database URL string"),
]


@pytest.mark.parametrize(("text", "message"), CLI_BAD_CONFIGS)
def test_cli_refuses_a_bad_config_file_in_one_line(m, tmp_path, text, message):
    path = tmp_path / "memoric.yaml"
    path.write_text(text)
    for command in (["stats"], ["run-policies"], ["import", "-"]):
        result = CliRunner().invoke(main, ["--dsn", m.db.dsn, "--config", str(path), *command], input=HEADER)
        assert message in one_line_error(result)


def test_cli_refuses_a_missing_or_unreadable_config(m, tmp_path):
    for path, message in ((tmp_path / "missing.yaml", "does not exist"), (tmp_path, "is a directory")):
        result = CliRunner().invoke(main, ["--dsn", m.db.dsn, "--config", str(path), "stats"])
        assert message in one_line_error(result)


def test_cli_copy_refuses_bad_ends_and_writes_nothing(m, tmp_path):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Memoric(empty).store.close()
    cases = [
        ([m.db.dsn, m.db.dsn], "the source and the target are the same database"),
        ([f"sqlite:///{tmp_path / 'missing.db'}", f"sqlite:///{tmp_path / 't.db'}"], "does not exist"),
        ([empty, f"sqlite:///{tmp_path / 't.db'}"], "holds no memoric schema"),
        ([m.db.dsn, "nonsense"], "invalid database URL"),
    ]
    for (source, target), message in cases:
        result = CliRunner().invoke(main, ["copy", "--from", source, "--to", target])
        assert message in one_line_error(result)
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "t.db").exists()
