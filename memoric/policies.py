"""Tier policies: tier migration, trimming and thread summaries, as logic over MemoryStore.

One run, at one instant `now`, in this order:
1. migration: memories whose `updated_at` is older than their tier's `expire_after_days` move to
   the next tier (set-based batches; moving sets `updated_at` to now, so a memory moves at most
   one tier per run and cascades across runs);
2. trimming: in tiers with `trim_chars`, longer content is cut to `trim_chars` ending in "…";
3. summaries: in the last tier, each (user, namespace, thread) with at least `min_records`
   unsummarized memories gets one summary memory (metadata `{"kind": "thread_summary"}`, never
   itself summarized again) and its sources are marked summarized, kept but hidden from recall.

Runs take the store's "policies" lock, so overlapping runs apply once. A dry run writes nothing
and takes no lock: it counts, with the same cut-off times, what a run would change.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from memoric import validation
from memoric.db import policy_queries
from memoric.db.store import MemoryStore
from memoric.errors import SummarizerFailed, ValidationError
from memoric.text import shows_something

SUMMARY_METADATA = {"kind": "thread_summary"}
SUMMARY_USERS = 50
GIVE_UP_AFTER = 10  # summarizer failures in a row that end a run's summaries
ELLIPSIS = "…"

Summarizer = Callable[[list[dict], int], str]
Progress = Callable[[int], None]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def run_policies(
    store: MemoryStore,
    config: dict,
    *,
    user_id: str | None = None,
    dry_run: bool = False,
    summarizer: Summarizer | None = None,
    on_progress: Progress | None = None,
) -> dict:
    """Apply (or with `dry_run` count) the configured policies.

    Returns the counts: migrated per tier, trimmed, summarized, summaries_created.
    """
    now = store.clock()
    if dry_run:
        return _plan(store, config, now, user_id)
    with store.lock("policies", timeout=config["policies"]["lock_timeout"]):
        return _apply(store, config, now, user_id, summarizer or extractive_summary, on_progress)


def _cutoffs(config: dict, now: dt.datetime) -> list[dt.datetime | None]:
    """Per tier, the `updated_at` before which its memories move on (None: they never do).

    An `expire_after_days` reaching back before the earliest datetime gives that earliest
    instant: no memory is that old, so none moves.
    """
    return [
        None if tier["expire_after_days"] is None else validation.cutoff(now, tier["expire_after_days"])
        for tier in config["tiers"]
    ]


def _final_slices(config: dict, cutoffs: list, index: int) -> list[tuple]:
    """The memories a run leaves in tier `index`: those that stay plus those arriving."""
    tiers = config["tiers"]
    slices = [(tiers[index]["name"], None, cutoffs[index])]
    if index > 0 and cutoffs[index - 1] is not None:
        slices.append((tiers[index - 1]["name"], cutoffs[index - 1], None))
    return slices


def _plan(store: MemoryStore, config: dict, now: dt.datetime, user_id) -> dict:
    """The counts a run at `now` would return, from read-only queries over the current state."""
    tiers, cutoffs = config["tiers"], _cutoffs(config, now)
    migrated = {}
    for index, tier in enumerate(tiers[:-1]):
        expired = [(tier["name"], cutoffs[index], None)]
        migrated[tier["name"]] = (
            0
            if cutoffs[index] is None
            else policy_queries.count_in_slices(store, slices=expired, user_id=user_id)
        )
    trimmed = sum(
        policy_queries.count_in_slices(
            store,
            slices=_final_slices(config, cutoffs, index),
            user_id=user_id,
            longer_than=tier["trim_chars"],
        )
        for index, tier in enumerate(tiers)
        if tier["trim_chars"] is not None
    )
    groups = []
    if config["summarization"]["enabled"]:
        groups = policy_queries.summary_groups(
            store,
            slices=_final_slices(config, cutoffs, len(tiers) - 1),
            min_records=config["summarization"]["min_records"],
            exclude_metadata=SUMMARY_METADATA,
            user_id=user_id,
        )
    return _counts(migrated, trimmed, sum(group["count"] for group in groups), len(groups))


def _apply(store: MemoryStore, config: dict, now, user_id, summarizer: Summarizer, on_progress) -> dict:
    """Migrate, then trim, then summarize (the caller holds the policies lock)."""
    tiers, cutoffs = config["tiers"], _cutoffs(config, now)
    batch_size = config["policies"]["batch_size"]
    migrated = {}
    for index, tier in enumerate(tiers[:-1]):
        migrated[tier["name"]] = 0
        if cutoffs[index] is not None:
            migrated[tier["name"]] = policy_queries.move_expired(
                store,
                from_tier=tier["name"],
                to_tier=tiers[index + 1]["name"],
                updated_before=cutoffs[index],
                user_id=user_id,
                batch_size=batch_size,
                on_batch=on_progress,
            )
    trimmed = 0
    for tier in tiers:
        if tier["trim_chars"] is not None:
            trimmed += policy_queries.trim_content(
                store,
                tier=tier["name"],
                max_chars=tier["trim_chars"],
                user_id=user_id,
                batch_size=batch_size,
                on_batch=on_progress,
            )
    summarized = created = 0
    failures: list[tuple] = []
    gave_up = False
    if config["summarization"]["enabled"]:
        created, summarized, failures, gave_up = _summarize(store, config, user_id, summarizer, on_progress)
    counts = _counts(migrated, trimmed, summarized, created)
    if failures:
        raise SummarizerFailed(counts, failures, gave_up=gave_up)
    return counts


def _summarize(store: MemoryStore, config: dict, user_id, summarizer: Summarizer, on_progress):
    """Write the thread summaries of the last tier, SUMMARY_USERS users per transaction; (written,
    sources marked, failures, whether it gave up). A thread the summarizer fails on is left for a
    later run; GIVE_UP_AFTER failures in a row end the summaries (the summarizer is down)."""
    last = config["tiers"][-1]["name"]
    limit = summary_limit(config)
    groups = policy_queries.summary_groups(
        store,
        slices=[(last, None, None)],
        min_records=config["summarization"]["min_records"],
        exclude_metadata=SUMMARY_METADATA,
        user_id=user_id,
    )
    users = sorted({group["user_id"] for group in groups})
    created = marked = in_a_row = 0
    failures: list[tuple] = []
    for start in range(0, len(users), SUMMARY_USERS):
        chunk = set(users[start : start + SUMMARY_USERS])
        threads = _threads(store, chunk, last)
        items, as_read = [], {}
        for group in groups:
            key = (group["user_id"], group["namespace"], group["thread_id"])
            if group["user_id"] not in chunk or not (thread := threads.get(key)):
                continue
            try:
                items.append((_summary_row(group, thread, last, summarizer, limit), _ids(thread)))
            except Exception as exc:  # the summarizer's own failure: that thread waits, the rest goes on
                failures.append((*key, _without_frames(exc)))
                in_a_row += 1
                if in_a_row == GIVE_UP_AFTER:
                    break
                continue
            in_a_row = 0
            as_read.update((memory["id"], memory) for memory in thread)
        written, sources_marked = policy_queries.write_summaries(store, items, as_read=as_read)
        created += written
        marked += sources_marked
        if on_progress is not None:
            on_progress(sources_marked)
        if in_a_row == GIVE_UP_AFTER:
            return created, marked, failures, True
    return created, marked, failures, False


def _threads(store: MemoryStore, users: set[str], tier: str) -> dict[tuple, list[dict]]:
    """The unsummarized memories of these users' threads in `tier`, by (user, namespace, thread)."""
    sources = policy_queries.summary_sources(
        store, user_ids=sorted(users), tier=tier, exclude_metadata=SUMMARY_METADATA
    )
    threads: dict[tuple, list[dict]] = {}
    for memory in sources:
        threads.setdefault((memory["user_id"], memory["namespace"], memory["thread_id"]), []).append(memory)
    return threads


def _without_frames(exc: Exception) -> Exception:
    """`exc` and the exceptions chained to it without their tracebacks, whose frames would keep
    every failed thread's memories alive as long as the caller keeps the error."""
    seen, link = set(), exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


def summary_limit(config: dict) -> int:
    """The longest summary: `max_chars`, or less where the last tier trims (so it is never cut),
    and never more than a memory's content may hold.
    """
    limit = min(config["summarization"]["max_chars"], validation.MAX_CONTENT_LENGTH)
    trim = config["tiers"][-1]["trim_chars"]
    return limit if trim is None else min(limit, trim)


def _summary_row(group: dict, sources: list[dict], tier: str, summarizer: Summarizer, limit: int) -> dict:
    """The summary memory of one thread; the summarizer gets copies, so what it changes in them
    changes nothing of what is marked."""
    text = summarizer([dict(source) for source in sources], limit)
    if not isinstance(text, str) or not shows_something(text := validation.as_plain_str(text)):
        raise ValidationError(
            f"the summarizer must return a string that shows something, got {validation.shown(text)}"
        )
    return {
        "user_id": group["user_id"],
        "namespace": group["namespace"],
        "thread_id": group["thread_id"],
        "content": validation.content(shorten(text, limit)),
        "tier": tier,
        "score": max(source["score"] for source in sources),
        "metadata": dict(SUMMARY_METADATA),
    }


def _ids(memories: list[dict]) -> list[int]:
    return [memory["id"] for memory in memories]


def _counts(migrated: dict, trimmed: int, summarized: int, created: int) -> dict:
    return {"migrated": migrated, "trimmed": trimmed, "summarized": summarized, "summaries_created": created}


# --- the default summarizer ---------------------------------------------------------------


def extractive_summary(memories: list[dict], max_chars: int) -> str:
    """The first sentence of each memory, oldest first, duplicates dropped, cut to `max_chars`."""
    sentences, seen = [], set()
    for memory in memories:
        sentence = first_sentence(memory["content"])
        if sentence.casefold() not in seen:
            seen.add(sentence.casefold())
            sentences.append(sentence)
    thread = memories[0]["thread_id"] if memories else None
    head = f"Thread {thread} ({len(memories)} memories): " if thread else f"{len(memories)} memories: "
    return shorten(head + " | ".join(sentences), max_chars)


def first_sentence(text: str) -> str:
    """The text up to its first sentence end, whitespace collapsed."""
    collapsed = " ".join(text.split())
    return _SENTENCE_END.split(collapsed, maxsplit=1)[0]


def shorten(text: str, max_chars: int) -> str:
    """`text` when it fits, else its first `max_chars - 1` characters and "…"."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - 1)].rstrip() + ELLIPSIS
