"""Every integer argument, option and config key: a clear error or a correct answer, alike on both dialects.

Each is tried with the same awkward values. A value outside the argument's documented range is a
ValidationError (ConfigError for config, a usage error for the CLI) naming it, with nothing
written; a value inside it answers, and SQLite answers exactly as PostgreSQL. Before, 2**63 was a
raw OverflowError on SQLite and a "bigint out of range" MemoricError on PostgreSQL where SQLite
answered [], and an explicit id of 2**31 was stored by SQLite and refused by PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from memoric import Memoric
from memoric.cli import COUNT, main
from memoric.config import load_config
from memoric.db import cluster_queries, policy_queries, recall_queries, transfer_queries
from memoric.db.policy_queries import (
    count_in_slices,
    move_expired,
    summary_groups,
    trim_content,
    write_summaries,
)
from memoric.db.recall_queries import ranked_memories
from memoric.db.store import MemoryStore
from memoric.db.transfer_queries import (
    clusters_after,
    delete_ids,
    has_ids,
    iter_clusters,
    iter_memories,
    memories_after,
    reserve_ids,
    stored_rows,
)
from memoric.errors import ConfigError, ValidationError
from memoric.scoring import ScoreFormula
from memoric.validation import MAX_INT, MAX_STORED_ID, MIN_INT
from tests.helpers.dialects import selected_dialects
from tests.helpers.reference import NOW, Clock, ago, cluster_snapshot, memory_snapshot

VALUES = [-1, 0, 2**31, 2**63 - 1, 2**63, 10**30, True, 1.5, "3"]
FORMULA = ScoreFormula.from_config({"importance": 0.5, "recency": 0.3, "thread": 0.2, "decay_days": 60})
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def int_in(low: int, high: int) -> Callable[[object], bool]:
    """Whether a value is an int (never a bool) from `low` to `high`."""
    return lambda value: type(value) is int and low <= value <= high


COUNT_RANGE = int_in(0, MAX_INT)
ID_RANGE = int_in(MIN_INT, MAX_INT)


def is_days(value) -> bool:
    """A non-negative finite number; an int also within the 64-bit range."""
    if type(value) is int:
        return 0 <= value <= MAX_INT
    return type(value) is float and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class Argument:
    """One integer argument: how to pass it a value, which values it takes, the name errors use."""

    owner: str
    method: str
    parameter: str
    call: Callable
    valid: Callable[[object], bool]
    named: str
    returns_new_id: bool = False

    def __str__(self) -> str:
        return f"{self.owner}.{self.method}({self.parameter})"


def memory_row(**change) -> dict:
    return {"user_id": "ints", "content": "new memory", **change}


def summary_item(value) -> tuple[dict, list]:
    return {"user_id": "ints", "content": "summary", "thread_id": "t1", "tier": "long_term"}, [value]


S, M = "MemoryStore", "Memoric"
ARGUMENTS = [
    Argument(
        S,
        "insert_memory",
        "score",
        lambda m, v: m.db.insert_memory(**memory_row(score=v)),
        int_in(0, 100),
        "score",
        True,
    ),
    Argument(
        S,
        "insert_memory",
        "id",
        lambda m, v: m.db.insert_memory(**memory_row(id=v)),
        int_in(1, MAX_STORED_ID),
        "id",
        True,
    ),
    Argument(
        S,
        "insert_memories",
        "rows[].score",
        lambda m, v: m.db.insert_memories([memory_row(score=v)]),
        int_in(0, 100),
        "score",
    ),
    Argument(
        S,
        "insert_memories",
        "rows[].id",
        lambda m, v: m.db.insert_memories([memory_row(id=v)]),
        int_in(1, MAX_STORED_ID),
        "id",
    ),
    Argument(
        S,
        "insert_memories",
        "batch_size",
        lambda m, v: m.db.insert_memories([memory_row()], batch_size=v),
        COUNT_RANGE,
        "batch_size",
    ),
    Argument(S, "get_memory", "memory_id", lambda m, v: m.db.get_memory(v), ID_RANGE, "memory_id"),
    Argument(S, "get_memories", "limit", lambda m, v: m.db.get_memories(limit=v), COUNT_RANGE, "limit"),
    Argument(S, "get_memories", "offset", lambda m, v: m.db.get_memories(offset=v), COUNT_RANGE, "offset"),
    Argument(
        S,
        "get_memories",
        "limit (metadata filter)",
        lambda m, v: m.db.get_memories(
            user_id="ada",
            where_metadata={"topic": "x"},
            limit=v,
            offset=v if type(v) is int and v >= 0 else 0,
        ),
        COUNT_RANGE,
        "limit",
    ),
    Argument(
        S,
        "update_tier",
        "memory_ids",
        lambda m, v: m.db.update_tier(memory_ids=[v], new_tier="mid_term"),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(
        S,
        "mark_summarized",
        "memory_ids",
        lambda m, v: m.db.mark_summarized(memory_ids=[v]),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(
        S,
        "delete_memories",
        "memory_ids",
        lambda m, v: m.db.delete_memories(memory_ids=[v]),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(
        S,
        "update_content",
        "memory_id",
        lambda m, v: m.db.update_content(memory_id=v, new_content="x"),
        ID_RANGE,
        "memory_id",
    ),
    Argument(
        S,
        "update_metadata",
        "memory_id",
        lambda m, v: m.db.update_metadata(memory_id=v, new_metadata={}),
        ID_RANGE,
        "memory_id",
    ),
    Argument(
        S,
        "set_related_threads",
        "memory_id",
        lambda m, v: m.db.set_related_threads(memory_id=v, related_threads=[]),
        ID_RANGE,
        "memory_id",
    ),
    Argument(
        S, "distinct_threads", "limit", lambda m, v: m.db.distinct_threads(limit=v), COUNT_RANGE, "limit"
    ),
    Argument(S, "find_older_than", "days", lambda m, v: m.db.find_older_than(days=v), is_days, "days"),
    Argument(
        S,
        "find_older_than",
        "limit",
        lambda m, v: m.db.find_older_than(days=1, limit=v),
        COUNT_RANGE,
        "limit",
    ),
    Argument(
        S,
        "upsert_cluster",
        "memory_ids",
        lambda m, v: m.db.upsert_cluster(user_id="ints", topic=f"t{v!r}", category="c", memory_ids=[v]),
        ID_RANGE,
        "memory_ids[0]",
        True,
    ),
    Argument(
        S,
        "upsert_clusters",
        "clusters",
        lambda m, v: m.db.upsert_clusters(
            user_id="ints", clusters=[{"topic": f"u{v!r}", "category": "c", "memory_ids": [v]}]
        ),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(S, "get_clusters", "limit", lambda m, v: m.db.get_clusters(limit=v), COUNT_RANGE, "limit"),
    Argument(
        S,
        "delete_cluster",
        "cluster_id",
        lambda m, v: m.db.delete_cluster(cluster_id=v),
        ID_RANGE,
        "cluster_id",
    ),
    Argument(S, "memories_after", "after_id", lambda m, v: memories_after(m.db, v), ID_RANGE, "after_id"),
    Argument(S, "clusters_after", "after_id", lambda m, v: clusters_after(m.db, v), ID_RANGE, "after_id"),
    Argument(
        S, "clusters_after", "limit", lambda m, v: clusters_after(m.db, 0, limit=v), COUNT_RANGE, "limit"
    ),
    Argument(
        S,
        "iter_clusters",
        "batch_size",
        lambda m, v: list(iter_clusters(m.db, batch_size=v)),
        int_in(1, MAX_INT),
        "batch_size",
    ),
    Argument(S, "has_ids", "low", lambda m, v: has_ids(m.db, "memory", v, -1), ID_RANGE, "low"),
    Argument(S, "has_ids", "high", lambda m, v: has_ids(m.db, "memory", 2**62, v), ID_RANGE, "high"),
    Argument(S, "delete_ids", "ids", lambda m, v: delete_ids(m.db, "memory", [v]), ID_RANGE, "ids[0]"),
    Argument(S, "stored_rows", "ids", lambda m, v: stored_rows(m.db, "memory", [v]), ID_RANGE, "ids[0]"),
    Argument(
        S,
        "reserve_ids",
        "claims",
        lambda m, v: reserve_ids(m.db, {"memory": (v, 0)}, check=lambda: None, holding_rows=lambda tops: {}),
        int_in(0, MAX_STORED_ID),
        "claims",
    ),
    Argument(
        S, "memories_after", "limit", lambda m, v: memories_after(m.db, 0, limit=v), COUNT_RANGE, "limit"
    ),
    Argument(
        S,
        "iter_memories",
        "batch_size",
        lambda m, v: list(iter_memories(m.db, batch_size=v)),
        int_in(1, MAX_INT),
        "batch_size",
    ),
    Argument(
        S,
        "move_expired",
        "batch_size",
        lambda m, v: move_expired(
            m.db, from_tier="short_term", to_tier="mid_term", updated_before=LONG_AGO, batch_size=v
        ),
        COUNT_RANGE,
        "batch_size",
    ),
    Argument(
        S,
        "trim_content",
        "max_chars",
        lambda m, v: trim_content(m.db, tier="short_term", max_chars=v),
        int_in(2, MAX_INT),
        "max_chars",
    ),
    Argument(
        S,
        "trim_content",
        "batch_size",
        lambda m, v: trim_content(m.db, tier="short_term", max_chars=1000, batch_size=v),
        COUNT_RANGE,
        "batch_size",
    ),
    Argument(
        S,
        "summary_groups",
        "min_records",
        lambda m, v: summary_groups(
            m.db, slices=[("short_term", None, None)], min_records=v, exclude_metadata={"kind": "s"}
        ),
        COUNT_RANGE,
        "min_records",
    ),
    Argument(
        S,
        "count_in_slices",
        "longer_than",
        lambda m, v: count_in_slices(m.db, slices=[("short_term", None, None)], longer_than=v),
        COUNT_RANGE,
        "longer_than",
    ),
    Argument(
        S,
        "ranked_memories",
        "limit",
        lambda m, v: ranked_memories(m.db, user_id="ada", formula=FORMULA, limit=v, now=NOW),
        COUNT_RANGE,
        "limit",
    ),
    Argument(
        S,
        "write_summaries",
        "items",
        lambda m, v: write_summaries(m.db, [summary_item(v)]),
        ID_RANGE,
        "memory_ids[0]",
    ),
    Argument(
        M, "save", "score", lambda m, v: m.save("ints", "saved", score=v), int_in(0, 100), "score", True
    ),
    Argument(
        M, "retrieve", "top_k", lambda m, v: m.retrieve("ada", scope="user", top_k=v), COUNT_RANGE, "top_k"
    ),
    Argument(M, "get_clusters", "limit", lambda m, v: m.get_clusters(limit=v), COUNT_RANGE, "limit"),
    Argument(M, "forget", "memory_ids", lambda m, v: m.forget("nobody", [v]), ID_RANGE, "memory_ids[0]"),
]
UNTYPED_INTEGER_PARAMETERS = {"memory_id", "memory_ids", "cluster_id", "days"}


def integer_parameters(cls) -> set[tuple[str, str]]:
    """(method, parameter) of each public method (or, of a module, function) parameter that takes an int.

    Found by its annotation or default, or by name where the signature has neither, so that a
    new integer parameter fails `test_every_integer_parameter_is_covered` until it is listed.
    """
    found = set()
    for method, function in inspect.getmembers(cls, inspect.isfunction):
        if method.startswith("_") or (inspect.ismodule(cls) and function.__module__ != cls.__name__):
            continue
        for parameter in inspect.signature(function).parameters.values():
            annotation = str(parameter.annotation)
            default = parameter.default
            if (
                (re.search(r"\bint\b", annotation) and "Callable" not in annotation)
                or (type(default) is int)
                or parameter.name in UNTYPED_INTEGER_PARAMETERS
            ):
                found.add((method, parameter.name))
    return found


def test_every_integer_parameter_is_covered():
    listed = {(argument.owner, argument.method, argument.parameter) for argument in ARGUMENTS}
    query_modules = (cluster_queries, policy_queries, recall_queries, transfer_queries)
    for owner, cls in ((S, MemoryStore), *((S, module) for module in query_modules), (M, Memoric)):
        missing = {(owner, *key) for key in integer_parameters(cls)} - listed
        assert not missing, f"integer parameters without a test: {sorted(missing)}"


@pytest.fixture(scope="module")
def memorics(tmp_path_factory, request):
    """A Memoric per selected dialect, built through the chain, clock stopped at NOW."""
    opened = {}
    for dialect in selected_dialects():
        if dialect == "sqlite":
            dsn = f"sqlite:///{tmp_path_factory.mktemp('ints') / 'memoric.db'}"
        else:
            dsn = request.getfixturevalue("new_postgres_url")()
        opened[dialect] = Memoric(dsn, clock=Clock(NOW))
        opened[dialect].ensure_schema()
        opened[dialect].db.clock = Clock(NOW)
    yield opened
    for memoric in opened.values():
        memoric.close()


def seed(memoric: Memoric) -> None:
    """The same few memories and clusters on every dialect (ids restart at 1)."""
    memoric.db.truncate()
    for i in range(6):
        memoric.db.insert_memory(
            user_id="ada",
            thread_id=f"t{i % 2}",
            content=f"memory {i} " * (i + 1),
            tier=("short_term", "mid_term", "long_term")[i % 3],
            score=i * 10,
            metadata={"topic": "x" if i % 2 else "y", "n": i},
            **ago(days=i * 400),
        )
    memoric.rebuild_clusters()


def outcome(memoric: Memoric, argument: Argument, value):
    """What one call did: ("ok", its answer) or ("refused", the message); any other error fails."""
    try:
        result = argument.call(memoric, value)
    except ValidationError as exc:
        return "refused", str(exc)
    if argument.returns_new_id:
        assert type(result) is int and result > 0
        return "ok", "a new id"
    return "ok", result


def state(memoric: Memoric) -> tuple:
    return memory_snapshot(memoric.db), cluster_snapshot(memoric.db)


@pytest.mark.parametrize("argument", ARGUMENTS, ids=str)
def test_every_integer_argument_answers_or_refuses_alike_on_both_dialects(memorics, argument):
    outcomes = {}
    for dialect, memoric in memorics.items():
        seed(memoric)
        outcomes[dialect] = []
        for value in VALUES:
            before = state(memoric)
            kind, detail = outcome(memoric, argument, value)
            outcomes[dialect].append((value, kind, detail))
            if argument.valid(value):
                assert kind == "ok", (dialect, value, detail)
            else:
                assert kind == "refused", (dialect, value, detail)
                assert argument.named in detail, (dialect, value, detail)
                assert len(detail.splitlines()) == 1 and len(detail) < 300, detail
                assert state(memoric) == before, (dialect, value)
    first, *others = outcomes.values()
    for other in others:
        assert other == first


# --- config: every integer key ------------------------------------------------------------------

CONFIG_KEYS = {
    "policies.batch_size": (lambda v: {"policies": {"batch_size": v}}, int_in(1, MAX_INT)),
    "policies.lock_timeout": (lambda v: {"policies": {"lock_timeout": v}}, is_days),
    "summarization.min_records": (lambda v: {"summarization": {"min_records": v}}, int_in(1, MAX_INT)),
    "summarization.max_chars": (lambda v: {"summarization": {"max_chars": v}}, int_in(1, MAX_INT)),
    "clustering.min_size": (lambda v: {"clustering": {"min_size": v}}, int_in(1, MAX_INT)),
    "tiers[0].expire_after_days": (
        lambda v: {
            "tiers": [
                {"name": "short_term", "expire_after_days": v},
                {"name": "mid_term"},
                {"name": "long_term"},
            ]
        },
        is_days,
    ),
    "tiers[0].trim_chars": (
        lambda v: {
            "tiers": [{"name": "short_term", "trim_chars": v}, {"name": "mid_term"}, {"name": "long_term"}]
        },
        int_in(2, MAX_INT),
    ),
    "scoring.decay_days": (
        lambda v: {"scoring": {"decay_days": v}},
        lambda v: is_days(v) and 0 < v <= 36500,
    ),
    "scoring.bm25_k1": (lambda v: {"scoring": {"bm25_k1": v}}, lambda v: is_days(v) and v <= 1000),
}


def test_every_integer_config_key_is_covered():
    defaults = load_config()
    keys = {
        f"{section}.{key}"
        for section in ("policies", "summarization", "clustering", "scoring")
        for key, value in defaults[section].items()
        if type(value) in (int, float)
    }
    keys |= {f"tiers[0].{key}" for key in ("expire_after_days", "trim_chars")}
    weights = {
        "scoring.importance",
        "scoring.recency",
        "scoring.thread",
        "scoring.relevance",
        "scoring.bm25_b",
    }  # fractions 0-1, tested in test_config and test_keyword_recall
    assert keys - weights == set(CONFIG_KEYS)


def config_outcome(dsn: str, config: dict):
    """What a Memoric with `config` does over the seeded memories: the counts and answers, or the error."""
    try:
        memoric = Memoric(dsn, config=config, clock=Clock(NOW))
    except ConfigError as exc:
        return "refused", str(exc)
    seed(memoric)
    try:
        return "ok", (
            memoric.run_policies(dry_run=True),
            memoric.run_policies(),
            memoric.rebuild_clusters(),
            [(m["id"], m["_score"]) for m in memoric.retrieve("ada", scope="user", top_k=20)],
            memory_snapshot(memoric.db),
        )
    finally:
        memoric.close()


@pytest.mark.parametrize("key", sorted(CONFIG_KEYS))
def test_every_integer_config_key_answers_or_refuses_alike_on_both_dialects(memorics, key):
    build, valid = CONFIG_KEYS[key]
    outcomes = {}
    for dialect, memoric in memorics.items():
        outcomes[dialect] = []
        for value in VALUES:
            kind, detail = config_outcome(memoric.db.dsn, build(value))
            outcomes[dialect].append((value, kind, detail))
            if valid(value):
                assert kind == "ok", (dialect, value, detail)
            else:
                assert kind == "refused" and key.split(".")[-1] in detail, (dialect, value, detail)
                assert len(detail.splitlines()) == 1 and len(detail) < 300, detail
    first, *others = outcomes.values()
    for other in others:
        assert other == first


def test_a_tier_expiring_after_more_days_than_the_calendar_holds_moves_nothing(memorics):
    """A cut-off before year 1 once made every run fail with OverflowError; now nothing is that old."""
    for days in (10**6, 2**63 - 1, 1e300, 739_000):
        config = {
            "tiers": [
                {"name": "short_term", "expire_after_days": days},
                {"name": "mid_term"},
                {"name": "long_term"},
            ]
        }
        for dialect, memoric in memorics.items():
            kind, detail = config_outcome(memoric.db.dsn, config)
            assert kind == "ok", (dialect, days, detail)
            dry_run, run, *_ = detail
            assert dry_run["migrated"] == run["migrated"] == {"short_term": 0, "mid_term": 0}, (dialect, days)


# --- the CLI: every integer option ---------------------------------------------------------------


def integer_options(command: click.Command, path: tuple[str, ...] = ()):
    """(command path, command, parameter) of every integer parameter of the CLI, found by walking it."""
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from integer_options(sub, (*path, name))
    for parameter in command.params:
        if isinstance(parameter.type, click.types.IntParamType):
            yield path, command, parameter


CLI_OPTIONS = list(integer_options(main))


def test_the_cli_has_integer_options_and_they_all_share_one_bounded_type():
    assert {path[0] for path, _, _ in CLI_OPTIONS} >= {"recall", "clusters"}
    for path, _, parameter in CLI_OPTIONS:
        assert parameter.type is COUNT, (path, parameter.name)


def cli_arguments(
    path: tuple[str, ...], command: click.Command, parameter: click.Parameter, value: str
) -> list:
    """The command line giving `parameter` the `value`, with "ada" for the other required options."""
    arguments = list(path)
    for other in command.params:
        if other.required and other is not parameter:
            arguments += [other.opts[0], "ada"] if isinstance(other, click.Option) else ["ada"]
    if any("--json" in other.opts for other in command.params):
        arguments.append("--json")
    option = parameter.opts[0] if isinstance(parameter, click.Option) else None
    return [*arguments, *([option] if option else []), value]


@pytest.mark.parametrize(("path", "command", "parameter"), CLI_OPTIONS, ids=lambda x: getattr(x, "name", x))
def test_every_integer_option_answers_or_is_a_usage_error_alike_on_both_dialects(
    memorics, monkeypatch, path, command, parameter
):
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    outputs = {}
    for dialect, memoric in memorics.items():
        seed(memoric)
        outputs[dialect] = []
        for value in map(str, VALUES):
            arguments = cli_arguments(path, command, parameter, value)
            result = CliRunner().invoke(main, ["--dsn", memoric.db.dsn, *arguments])
            assert "Traceback" not in result.output + result.stderr, result.stderr
            if re.fullmatch(r"-?\d+", value) and 0 <= int(value) <= MAX_INT:
                assert result.exit_code == 0, (dialect, arguments, result.stderr)
                outputs[dialect].append(json.loads(result.stdout))
            else:
                assert result.exit_code == 2, (dialect, arguments, result.stderr)
                errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
                assert len(errors) == 1 and parameter.opts[0] in errors[0], result.stderr
                outputs[dialect].append(errors[0])
    first, *others = outputs.values()
    for other in others:
        assert other == first
