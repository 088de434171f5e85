"""The deterministic benchmark workload: seeded memories, their clusters and a Python reference.

`generate(rows, seed)` yields the same memories on every run: 100 users × 10 threads, tiers
60/30/10 %, metadata with a topic (20), a category (5), a priority, two tags (of 10) and a
nested customer tier, content of 20–250 characters. Memories come in the order an agent saves
them: `created_at` rises evenly over the 90 days before `NOW` and `updated_at` lies between it
and `NOW`. Loaded into a fresh database in order, memory `i` (0-based) gets id `i + 1`.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import string
from array import array
from collections.abc import Iterator

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
USERS = 100
THREADS_PER_USER = 10
TOPICS = tuple(f"topic-{n:02d}" for n in range(20))
CATEGORIES = ("billing", "support", "product", "feedback", "account")
PRIORITIES = ("high", "medium", "low")
TAGS = tuple(f"tag{n}" for n in range(10))
CUSTOMER_TIERS = ("premium", "basic")
TIER_WEIGHTS = (("short_term", 60), ("mid_term", 30), ("long_term", 10))
SPREAD_SECONDS = 90 * 86400
CONTENT_LENGTHS = (20, 250)
TEXT_POOL_SIZE = 1 << 16


def user_name(number: int) -> str:
    return f"user-{number:03d}"


def thread_name(user: int, thread: int) -> str:
    return f"{user_name(user)}-thread-{thread}"


def fixed_clock() -> dt.datetime:
    """The benchmark's clock: every run sees the same `now`."""
    return NOW


def _text_pool(rng: random.Random) -> str:
    """A long run of pseudo-words that contents are cut from."""
    letters = string.ascii_lowercase
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(TEXT_POOL_SIZE // 5)]
    return " ".join(words)


@functools.cache
def pool_words(seed: int = 42) -> list[str]:
    """The distinct words memory contents are cut from (what keyword recall queries ask for)."""
    return sorted(set(_text_pool(random.Random(seed)).split()))


def _tier(rng: random.Random) -> str:
    """short_term, mid_term or long_term, 60/30/10 %."""
    draw = rng.randrange(100)
    for name, weight in TIER_WEIGHTS:
        if draw < weight:
            return name
        draw -= weight
    raise AssertionError("TIER_WEIGHTS must add up to 100")


def _metadata(rng: random.Random) -> dict:
    return {
        "topic": rng.choice(TOPICS),
        "category": rng.choice(CATEGORIES),
        "priority": rng.choice(PRIORITIES),
        "tags": sorted(rng.sample(TAGS, 2), key=TAGS.index),
        "customer": {"tier": rng.choice(CUSTOMER_TIERS)},
    }


def _memory(rng: random.Random, pool: str, created: dt.datetime) -> dict:
    user = rng.randrange(USERS)
    tier = _tier(rng)
    updated = created + dt.timedelta(seconds=rng.randrange(max(1, int((NOW - created).total_seconds()))))
    length = rng.randint(*CONTENT_LENGTHS)
    start = rng.randrange(len(pool) - length)
    return {
        "user_id": user_name(user),
        "thread_id": thread_name(user, rng.randrange(THREADS_PER_USER)),
        "content": pool[start : start + length].strip() or "memory",
        "tier": tier,
        "score": rng.randint(0, 100),
        "metadata": _metadata(rng),
        "created_at": created,
        "updated_at": updated,
    }


def creation_time(index: int, rows: int) -> dt.datetime:
    """When memory `index` of `rows` was saved: evenly over the 90 days before NOW, in order."""
    return NOW - dt.timedelta(seconds=SPREAD_SECONDS) + dt.timedelta(seconds=SPREAD_SECONDS * index / rows)


def generate(rows: int, seed: int = 42, chunk_size: int = 10_000) -> Iterator[list[dict]]:
    """The workload's memories in the order they were saved, in chunks of `chunk_size` rows."""
    rng = random.Random(seed)
    pool = _text_pool(rng)
    done = 0
    while done < rows:
        count = min(chunk_size, rows - done)
        yield [_memory(rng, pool, creation_time(done + n, rows)) for n in range(count)]
        done += count


def cluster_key(row: dict) -> tuple[str, str, str]:
    """The (user, topic, category) group a memory belongs to."""
    return row["user_id"], row["metadata"]["topic"], row["metadata"]["category"]


class ClusterCollector:
    """Collects memory ids per (user, topic, category) while the workload is loaded, 8 bytes an
    id (a list of ints took 36, which the load phase's peak RSS would have charged to memoric)."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str, str], array] = {}
        self.next_id = 1

    def add(self, chunk: list[dict]) -> None:
        for row in chunk:
            self.groups.setdefault(cluster_key(row), array("q")).append(self.next_id)
            self.next_id += 1
