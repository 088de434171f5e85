"""A database bad input must leave alone, and the check that it did (the bad-input tests)."""

from __future__ import annotations

from memoric import Memoric
from tests.helpers.transfer_data import snapshot


def control_memoric(dsn: str):
    """A database built through the chain, with a control memory and cluster no bad input may touch
    (a module fixture's body)."""
    memoric = Memoric(dsn)
    memoric.save("control", "the control memory", thread_id="t", metadata={"topic": "x", "n": 1})
    memoric.rebuild_clusters()
    yield memoric
    memoric.close()


def state(memoric: Memoric) -> tuple:
    """Everything a bad input must leave alone: tables, memories, clusters, schema version."""
    tables = sorted(memoric.db.database.get_tables())
    return tables, snapshot(memoric.db), memoric.migrations.current()


def left_alone(memoric: Memoric, monkeypatch):
    """`memoric` for one test, then the assertion that nothing was written (a fixture's body)."""
    monkeypatch.delenv("MEMORIC_DATABASE_URL", raising=False)
    before = state(memoric)
    yield memoric
    assert state(memoric) == before
