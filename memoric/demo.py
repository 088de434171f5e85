"""The data and steps of `memoric demo`: a short, repeatable tour of the engine.

Two demo users (`demo-ada`, `demo-ben`) get a handful of agent memories across several threads,
plus an older trip-planning thread that the tier policies move to the last tier and summarize.
Running it again first deletes what an earlier demo left for those two users, so the output
stays the same. It works with any valid configuration (ages follow the configured tiers).
"""

from __future__ import annotations

import datetime as dt
from itertools import cycle, islice

from memoric.core import Memoric

USERS = ("demo-ada", "demo-ben")
FRESH = [
    ("demo-ada", "onboarding", "Prefers to be called Ada and writes in British English.",
     {"topic": "profile", "category": "preferences"}, 80),
    ("demo-ada", "onboarding", "Works as a data engineer at a logistics start-up.",
     {"topic": "profile", "category": "work"}, 60),
    ("demo-ada", "trip-porto", "Wants a direct flight to Porto on 14 June, aisle seat.",
     {"topic": "travel", "category": "booking", "tags": ["flight", "booking"]}, 90),
    ("demo-ada", "trip-porto", "Budget for the hotel is 120 EUR a night, near the river.",
     {"topic": "travel", "category": "booking", "tags": ["hotel", "booking"]}, 70),
    ("demo-ada", "trip-porto", "Asked for vegetarian restaurant ideas in Ribeira.",
     {"topic": "food", "category": "restaurants", "tags": ["vegetarian"]}, 50),
    ("demo-ada", "weekly-review", "Ships the pipeline migration before the trip.",
     {"topic": "work", "category": "deadlines"}, 75),
    ("demo-ben", "support-4411", "Cannot log in since the password reset email expired.",
     {"topic": "account", "category": "incident", "tags": ["login"]}, 85),
    ("demo-ben", "support-4411", "Reset link re-sent; login confirmed working.",
     {"topic": "account", "category": "incident", "tags": ["login", "resolved"]}, 40),
    ("demo-ben", "trip-berlin", "Travelling to Berlin by train in September.",
     {"topic": "travel", "category": "booking", "tags": ["train", "booking"]}, 65),
]  # fmt: skip
OLD_THREAD = "trip-lisbon"
OLD_FACTS = [
    "Planning a long weekend in Lisbon in April.",
    "Booked the 07:10 flight from London Gatwick.",
    "Chose a guesthouse in Alfama with a terrace.",
    "Wants to try the custard tarts in Belém.",
    "Prefers trams and walking to taxis.",
    "Asked for a day trip to Sintra.",
    "Reserved a fado evening for Saturday.",
    "Needs a power adapter for Portugal.",
    "Travel insurance bought through the bank.",
    "Will work remotely on the Monday morning.",
    "Return flight lands at 21:40.",
    "Shared the itinerary with a friend.",
]
SHORT_LIVED = [
    ("demo-ben", "small-talk", "Mentioned it was raining in Manchester."),
    ("demo-ben", "small-talk", "Said the coffee machine at work is broken again."),
]


def reset(memoric: Memoric) -> int:
    """Delete everything an earlier demo left for the demo users; how many memories that was."""
    return sum(memoric.forget(user) for user in USERS)


def seed(memoric: Memoric) -> int:
    """Save the demo memories: fresh ones through `save`, older ones with their past timestamps."""
    for user, thread, content, metadata, score in FRESH:
        memoric.save(user, content, thread_id=thread, metadata=metadata, score=score)
    rows = _old_thread_rows(memoric) + _short_lived_rows(memoric)
    memoric.db.insert_memories(rows)
    return len(FRESH) + len(rows)


def _old_thread_rows(memoric: Memoric) -> list[dict]:
    """Enough old memories in one thread to be summarized once they reach the last tier."""
    tiers = memoric.config["tiers"]
    source = tiers[-2] if len(tiers) > 1 and tiers[-2]["expire_after_days"] is not None else tiers[-1]
    age = dt.timedelta(days=(source["expire_after_days"] or 0) + 5)
    count = memoric.config["summarization"]["min_records"] + 2
    now = memoric.db.clock()
    facts = islice(cycle(OLD_FACTS), count)
    return [
        {
            "user_id": "demo-ada",
            "thread_id": OLD_THREAD,
            "content": fact,
            "tier": source["name"],
            "score": 60,
            "metadata": {"topic": "travel", "category": "itinerary"},
            "created_at": now - age - dt.timedelta(minutes=count - i),
            "updated_at": now - age,
        }
        for i, fact in enumerate(facts)
    ]


def _short_lived_rows(memoric: Memoric) -> list[dict]:
    """Small talk old enough to leave the first tier."""
    first = memoric.config["tiers"][0]
    age = dt.timedelta(days=(first["expire_after_days"] or 0) + 1)
    moment = memoric.db.clock() - age
    return [
        {"user_id": user, "thread_id": thread, "content": content, "tier": first["name"], "score": 20,
         "created_at": moment, "updated_at": moment}
        for user, thread, content in SHORT_LIVED
    ]  # fmt: skip


def combined(results: list[dict]) -> dict:
    """The counts of several policy runs added up."""
    total = {"migrated": {}, "trimmed": 0, "summarized": 0, "summaries_created": 0}
    for result in results:
        for tier, moved in result["migrated"].items():
            total["migrated"][tier] = total["migrated"].get(tier, 0) + moved
        for key in ("trimmed", "summarized", "summaries_created"):
            total[key] += result[key]
    return total


def run(memoric: Memoric) -> dict:
    """The whole tour (only the demo users' memories are written); every step's result, in order."""
    memoric.ensure_schema()
    tour = {"removed_from_earlier_demo": reset(memoric), "saved": seed(memoric)}
    tour["filtered"] = memoric.db.get_memories(
        user_id="demo-ada", where_metadata={"topic": "travel", "tags": ["booking"]}, limit=10
    )
    tour["recall"] = {
        "thread": memoric.retrieve("demo-ada", thread_id="trip-porto", scope="thread", top_k=5),
        "topic": memoric.retrieve(
            "demo-ada", thread_id="trip-porto", scope="topic", metadata_filter={"topic": "travel"}, top_k=5
        ),
        "user": memoric.retrieve("demo-ada", thread_id="trip-porto", scope="user", top_k=5),
    }
    tour["policies_dry_run"] = combined([memoric.run_policies(user_id=u, dry_run=True) for u in USERS])
    tour["policies"] = combined([memoric.run_policies(user_id=u) for u in USERS])
    tour["recall_after_policies"] = memoric.retrieve("demo-ada", thread_id=OLD_THREAD, top_k=3)
    tour["clusters_built"] = sum(memoric.rebuild_clusters(user) for user in USERS)
    tour["clusters"] = [cluster for user in USERS for cluster in memoric.get_clusters(user)]
    tour["stats"] = memoric.stats()
    return tour
