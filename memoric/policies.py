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

import contextlib
import datetime as dt
import re
from collections.abc import Callable

from memoric import arguments, validation
from memoric.db import policy_queries
from memoric.db.store import MemoryStore
from memoric.db.summaries import SUMMARY_METADATA
from memoric.errors import SummarizerFailed, ValidationError
from memoric.text import shows_something

SUMMARY_USERS = 50
GIVE_UP_AFTER = 10  # summarizer failures in a row after which it is asked only now and then
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
    validation.boolean("dry_run", dry_run)
    on_progress = arguments.progress("on_progress", on_progress)
    summarizer = arguments.summarizer(summarizer)
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


def _leaving(config: dict, cutoffs: list, index: int) -> list[tuple]:
    """The memories a run moves out of tier `index` to the next: none from the last tier, nor
    from one whose memories never expire."""
    if index == len(cutoffs) - 1 or cutoffs[index] is None:
        return []
    return [(config["tiers"][index]["name"], cutoffs[index], None)]


def _trimmed_slices(config: dict, cutoffs: list, index: int) -> list[tuple]:
    """The memories a run trims in tier `index`: those it leaves there, and those leaving it,
    which are trimmed before they move on (a run stopped after its moves, or a `trim_chars`
    added since, must not let untrimmed memories through)."""
    return _final_slices(config, cutoffs, index) + _leaving(config, cutoffs, index)


def _final_slices(config: dict, cutoffs: list, index: int) -> list[tuple]:
    """The memories a run leaves in tier `index`: those that stay plus those arriving."""
    staying = [(config["tiers"][index]["name"], None, cutoffs[index])]
    return staying + (_leaving(config, cutoffs, index - 1) if index > 0 else [])


def _plan(store: MemoryStore, config: dict, now: dt.datetime, user_id) -> dict:
    """The counts a run at `now` would return, from read-only queries over the current state."""
    tiers, cutoffs = config["tiers"], _cutoffs(config, now)
    migrated = {}
    for index, tier in enumerate(tiers[:-1]):
        leaving = _leaving(config, cutoffs, index)
        migrated[tier["name"]] = (
            policy_queries.count_in_slices(store, slices=leaving, user_id=user_id) if leaving else 0
        )
    trimmed = sum(
        policy_queries.count_in_slices(
            store,
            slices=_trimmed_slices(config, cutoffs, index),
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
    """Trim, migrate, trim what arrived, then summarize (the caller holds the policies lock): a
    memory leaves a trimming tier trimmed, so a rerun after a stop ends where one run would."""
    tiers, cutoffs = config["tiers"], _cutoffs(config, now)
    batch_size = config["policies"]["batch_size"]
    trimmed = _trim(store, tiers, user_id, batch_size, on_progress)
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
    trimmed += _trim(store, tiers, user_id, batch_size, on_progress)
    summarized = created = 0
    failures: list[tuple] = []
    untried = 0
    if config["summarization"]["enabled"]:
        created, summarized, failures, untried = _summarize(store, config, user_id, summarizer, on_progress)
    counts = _counts(migrated, trimmed, summarized, created)
    if failures:
        raise SummarizerFailed(counts, failures, untried=untried)
    return counts


def _trim(store: MemoryStore, tiers: list[dict], user_id, batch_size: int, on_progress) -> int:
    """Trim the content of every tier with `trim_chars`; the memories trimmed."""
    return sum(
        policy_queries.trim_content(
            store,
            tier=tier["name"],
            max_chars=tier["trim_chars"],
            user_id=user_id,
            batch_size=batch_size,
            on_batch=on_progress,
        )
        for tier in tiers
        if tier["trim_chars"] is not None
    )


class _Patience:
    """When to ask the summarizer: for every thread until GIVE_UP_AFTER failures in a row, then
    (it looks down) only at widening gaps, 0, 1, 2, 4, ... threads left out between two asks,
    until it succeeds again; so a summarizer that is down costs a few calls, not one a thread."""

    def __init__(self) -> None:
        self.in_a_row = self.gap = self.to_skip = 0

    def skips(self) -> bool:
        """Whether to leave the next thread out."""
        if self.to_skip:
            self.to_skip -= 1
            return True
        return False

    def failed(self) -> None:
        self.in_a_row += 1
        if self.in_a_row >= GIVE_UP_AFTER:
            self.to_skip, self.gap = self.gap, max(1, 2 * self.gap)

    def succeeded(self) -> None:
        self.in_a_row = self.gap = self.to_skip = 0


def _summarize(store: MemoryStore, config: dict, user_id, summarizer: Summarizer, on_progress):
    """Write the thread summaries of the last tier, SUMMARY_USERS users per transaction; (written,
    sources marked, failures, threads left untried). A thread the summarizer fails on is left for
    a later run; one left out while it looked down (`_Patience`) is asked for again as soon as it
    succeeds on another thread of the same users."""
    last = config["tiers"][-1]["name"]
    groups = policy_queries.summary_groups(
        store,
        slices=[(last, None, None)],
        min_records=config["summarization"]["min_records"],
        exclude_metadata=SUMMARY_METADATA,
        user_id=user_id,
    )
    users = sorted({group["user_id"] for group in groups})
    patience, failures = _Patience(), []
    created = marked = untried = 0
    for start in range(0, len(users), SUMMARY_USERS):
        chunk = set(users[start : start + SUMMARY_USERS])
        threads = _threads(store, chunk, last)
        work = [(group, thread) for group in groups if (thread := threads.get(_key(group)))]
        items, as_read, left_out = _ask(summarizer, work, last, summary_limit(config), patience, failures)
        written, sources_marked = policy_queries.write_summaries(store, items, as_read=as_read)
        created, marked, untried = created + written, marked + sources_marked, untried + left_out
        if on_progress is not None:
            on_progress(sources_marked)
    return created, marked, failures, untried


def _ask(summarizer: Summarizer, work: list, tier: str, limit: int, patience: _Patience, failures: list):
    """The summaries of `work` (group, sources) the summarizer wrote, the sources as it read them,
    and how many threads were left out; its failures appended to `failures`."""
    items, as_read, left_out = [], {}, []
    queue = list(reversed(work))
    while queue:
        group, thread = queue.pop()
        if patience.skips():
            left_out.append((group, thread))
            continue
        try:
            items.append((_summary_row(group, thread, tier, summarizer, limit), _ids(thread)))
        except Exception as exc:  # the summarizer's own failure: that thread waits, the rest goes on
            failures.append((*_key(group), _without_frames(exc)))
            patience.failed()
            continue
        patience.succeeded()
        as_read.update((memory["id"], memory) for memory in thread)
        queue.extend(reversed(left_out))  # it is up again: ask for those left out, in their order
        left_out.clear()
    return items, as_read, len(left_out)


def _key(group: dict) -> tuple:
    return group["user_id"], group["namespace"], group["thread_id"]


def _threads(store: MemoryStore, users: set[str], tier: str) -> dict[tuple, list[dict]]:
    """The unsummarized memories of these users' threads in `tier`, by (user, namespace, thread)."""
    sources = policy_queries.summary_sources(
        store, user_ids=sorted(users), tier=tier, exclude_metadata=SUMMARY_METADATA
    )
    threads: dict[tuple, list[dict]] = {}
    for memory in sources:
        threads.setdefault((memory["user_id"], memory["namespace"], memory["thread_id"]), []).append(memory)
    return threads


def _without_frames(exc: BaseException) -> BaseException:
    """`exc` and every exception linked to it (its cause, context, and a group's members) without
    their tracebacks, whose frames would keep every failed thread's memories alive as long as the
    caller keeps the error."""
    seen, links = set(), [exc]
    while links:
        link = links.pop()
        if not isinstance(link, BaseException) or id(link) in seen:
            continue
        seen.add(id(link))
        with contextlib.suppress(Exception):  # an exception's own attributes may raise
            link.__traceback__ = None
            links += [link.__cause__, link.__context__]
            links += link.exceptions if isinstance(link, BaseExceptionGroup) else ()
    return exc


def summary_limit(config: dict) -> int:
    """The longest summary: `max_chars`, or less where the last tier trims (so it is never cut),
    and never more than a memory's content may hold.
    """
    limit = min(config["summarization"]["max_chars"], validation.MAX_CONTENT_LENGTH)
    trim = config["tiers"][-1]["trim_chars"]
    return limit if trim is None else min(limit, trim)


def _summary_row(group: dict, sources: list[dict], tier: str, summarizer: Summarizer, limit: int) -> dict:
    """The summary memory of one thread; the summarizer gets deep copies, so what it changes in
    them (their metadata too) changes nothing of what is marked, nor of the sources as read."""
    text = summarizer([_copied(source) for source in sources], limit)
    if not isinstance(text, str) or not shows_something(_kept(text := validation.as_plain_str(text), limit)):
        raise ValidationError(
            f"the summarizer must return a string that shows something within its first {limit} "
            f"characters, got {validation.shown(text)}"
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


def _copied(value):
    """A deep copy of a memory (JSON values, datetimes): `copy.deepcopy` in a quarter of its time."""
    if type(value) is dict:
        return {key: _copied(item) for key, item in value.items()}
    if type(value) is list:
        return [_copied(item) for item in value]
    return value


def _kept(text: str, limit: int) -> str:
    """What of `text` a summary of `limit` characters keeps, its ellipsis aside."""
    shortened = shorten(text, limit)
    return shortened if shortened == text else shortened.removesuffix(ELLIPSIS)


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
