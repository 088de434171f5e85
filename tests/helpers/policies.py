"""Policy runs for the tests of them: a run with a config, the counts of a run that changes
nothing, memories put in a tier, a thread of old long-term memories."""

from __future__ import annotations

from memoric.config import load_config
from memoric.policies import run_policies
from tests.helpers.reference import ago


def run(store, config: dict | None = None, **options) -> dict:
    return run_policies(store, load_config(data=config or {}), **options)


def no_changes(config: dict | None = None) -> dict:
    tiers = (config or {}).get("tiers") or load_config()["tiers"]
    migrated = {tier["name"]: 0 for tier in tiers[:-1]}
    return {"migrated": migrated, "trimmed": 0, "summarized": 0, "summaries_created": 0}


def put(store, tier: str, user: str = "ada", thread: str | None = "t1", content: str = "a memory", **fields):
    return store.insert_memory(user_id=user, thread_id=thread, content=content, tier=tier, **fields)


def long_term_thread(store, user: str, thread: str, count: int, namespace: str | None = None, days: int = 90):
    rows = [
        {
            "user_id": user,
            "namespace": namespace,
            "thread_id": thread,
            "tier": "long_term",
            "content": f"Fact {i} about {thread}. More detail that the summary leaves out.",
            "score": 40 + i % 60,
            **ago(days=days, minutes=-i),
        }
        for i in range(count)
    ]
    store.insert_memories(rows)
    return [
        m["id"] for m in store.get_memories(user_id=user, thread_id=thread, namespace=namespace, limit=None)
    ]
