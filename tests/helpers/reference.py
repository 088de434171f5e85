"""A settable clock, snapshots of what a store holds, and reference rankings computed in Python."""

from __future__ import annotations

import datetime as dt

from memoric.db.jsonfilter import contains
from memoric.scoring import score_memory

NOW = dt.datetime(2024, 6, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)


class Clock:
    """A clock the test moves by hand (no sleeps)."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


def ago(now: dt.datetime = NOW, **delta) -> dict:
    """created_at/updated_at arguments for a memory last updated `delta` before `now`."""
    moment = now - dt.timedelta(**delta)
    return {"created_at": moment, "updated_at": moment}


def memory_snapshot(store) -> list[tuple]:
    """Every memory as a comparable tuple (ids included), in id order."""
    return [
        (
            memory["id"],
            memory["user_id"],
            memory["namespace"],
            memory["thread_id"],
            memory["content"],
            memory["tier"],
            memory["score"],
            sorted(memory["metadata"].items()),
            memory["summarized"],
            memory["created_at"],
            memory["updated_at"],
        )
        for memory in sorted(store.get_memories(limit=None), key=lambda m: m["id"])
    ]


def cluster_snapshot(store) -> list[tuple]:
    """Every cluster without its timestamps, sorted by key."""
    return sorted(
        (c["cluster_id"], c["user_id"], c["topic"], c["category"], tuple(c["memory_ids"]), c["summary"])
        for c in store.get_clusters(limit=None)
    )


def reference_ranking(memories, formula, now, *, bonus_thread_id=None, keep=lambda memory: True, top_k=10):
    """The exact top-k by brute force: score desc, then newest (created_at, id) first."""
    kept = [memory for memory in memories if keep(memory)]
    scored = [(score_memory(formula, memory, now, bonus_thread_id), memory) for memory in kept]
    scored.sort(key=lambda pair: (pair[0], pair[1]["created_at"], pair[1]["id"]), reverse=True)
    return [(memory["id"], score) for score, memory in scored[:top_k]]


def matches(memory, pattern) -> bool:
    return contains(memory["metadata"], pattern or {})
