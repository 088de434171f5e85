"""Every integer argument of the API: a clear error or a correct answer, alike on both dialects.

Each is tried with the same awkward values. A value outside the argument's documented range is a
ValidationError naming it, with nothing
written; a value inside it answers, and SQLite answers exactly as PostgreSQL. Before, 2**63 was a
raw OverflowError on SQLite and a "bigint out of range" MemoricError on PostgreSQL where SQLite
answered [], and an explicit id of 2**31 was stored by SQLite and refused by PostgreSQL.
"""

from __future__ import annotations

import inspect
import re

import pytest

from memoric import Memoric
from memoric.db import cluster_queries, policy_queries, recall_queries, transfer_queries
from memoric.db.store import MemoryStore
from memoric.errors import ValidationError
from tests.helpers.integer_arguments import ARGUMENTS, VALUES, Argument, M, S, open_memorics, seed
from tests.helpers.reference import cluster_snapshot, memory_snapshot

UNTYPED_INTEGER_PARAMETERS = {"memory_id", "memory_ids", "cluster_id", "days"}


def integer_parameters(cls) -> set[tuple[str, str]]:
    """(method, parameter) of each public method (or, of a module, function) parameter that takes an int.

    Found by its annotation (not a callable's, nor a mapping's keyed by ids) or default, or by
    name where the signature has neither, so that a new integer parameter fails
    `test_every_integer_parameter_is_covered` until it is listed.
    """
    found = set()
    for method, function in inspect.getmembers(cls, inspect.isfunction):
        if method.startswith("_") or (inspect.ismodule(cls) and function.__module__ != cls.__name__):
            continue
        for parameter in inspect.signature(function).parameters.values():
            annotation = str(parameter.annotation)
            default = parameter.default
            if (
                (re.search(r"\bint\b", annotation) and not re.search(r"Callable|Mapping", annotation))
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
    yield from open_memorics(tmp_path_factory, request)


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
