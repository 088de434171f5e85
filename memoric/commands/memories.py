"""The memory engine's commands: demo, stats, run-policies, clusters, recall. One function each."""

from __future__ import annotations

import sys

from memoric import demo as tour_steps
from memoric.commands.output import (
    echo,
    echo_clusters,
    echo_json,
    echo_memories,
    echo_policy_counts,
    echo_stats,
    heading,
    progress,
    where_it_lives,
)
from memoric.commands.session import Session
from memoric.commands.stopping import Interrupted, signal_number

POLICIES_STOPPED = (
    "the batches committed before the stop stay applied, and none is applied twice; run it again to finish"
)


def tier_names(session: Session) -> list[str]:
    """The configured tiers, in order."""
    return [tier["name"] for tier in session.memoric.config["tiers"]]


def stats(session: Session, user_id: str | None = None, *, as_json: bool = False) -> None:
    """Memories per tier, summarized, users, threads, clusters, schema version."""
    memoric = session.memoric
    counts = memoric.stats(user_id)
    if as_json:
        echo_json(counts)
        return
    session.echo_sqlite_warning()
    scope = f"user {user_id}" if user_id else "all users"
    echo(f"{where_it_lives(memoric)} ({scope})")
    echo_stats(counts)


def run_policies(
    session: Session, user_id: str | None = None, *, dry_run: bool = False, as_json: bool = False
) -> None:
    """Tier migration, trimming and thread summaries, as configured; a progress bar on a terminal."""
    memoric = session.memoric
    total = 0
    if not dry_run and sys.stdout.isatty():
        planned = memoric.run_policies(user_id=user_id, dry_run=True)
        total = sum(planned["migrated"].values()) + planned["trimmed"] + planned["summarized"]
    with progress(total, "Applying policies") as advance:
        try:
            result = memoric.run_policies(user_id=user_id, dry_run=dry_run, on_progress=advance)
        except KeyboardInterrupt as stop:
            if dry_run:
                raise
            raise Interrupted(POLICIES_STOPPED, signal_number(stop)) from None
    if as_json:
        echo_json({**result, "dry_run": dry_run})
        return
    echo("Dry run: nothing was written." if dry_run else "Policies applied.")
    echo_policy_counts(result, tier_names(session))


def clusters(
    session: Session,
    user_id: str | None = None,
    *,
    rebuild: bool = False,
    topic: str | None = None,
    category: str | None = None,
    limit: int = 100,
    as_json: bool = False,
) -> None:
    """List topic clusters (largest first), optionally rebuilding them first."""
    memoric = session.memoric
    rebuilt = None
    if rebuild:
        rows = memoric.stats(user_id)["total"] if sys.stdout.isatty() else 0
        with progress(rows, "Rebuilding clusters") as advance:
            rebuilt = memoric.rebuild_clusters(user_id, on_progress=advance)
    found = memoric.get_clusters(user_id, topic=topic, category=category, limit=limit)
    if as_json:
        echo_json({"rebuilt": rebuilt, "clusters": found})
        return
    if rebuilt is not None:
        echo(f"Rebuilt {rebuilt} cluster(s).")
    echo_clusters(found, limit=limit)


def recall(
    session: Session,
    user_id: str,
    *,
    thread_id: str | None = None,
    scope: str = "thread",
    metadata: dict | None = None,
    namespace: str | None = None,
    top_k: int = 10,
    include_summarized: bool = False,
    query: str | None = None,
    as_json: bool = False,
) -> None:
    """The best memories for an agent to recall now, by the documented score (and `query`)."""
    memories = session.memoric.retrieve(
        user_id,
        thread_id=thread_id,
        metadata_filter=metadata,
        scope=scope,
        namespace=namespace,
        top_k=top_k,
        include_summarized=include_summarized,
        query=query,
    )
    if as_json:
        echo_json(memories)
        return
    echo_memories(memories)


def demo(session: Session, *, as_json: bool = False) -> None:
    """An end-to-end tour on the selected database (built or migrated as needed)."""
    session.auto_migrate = session.create = True
    memoric = session.memoric
    tour = tour_steps.run(memoric)
    if as_json:
        echo_json({"database": where_it_lives(memoric), **tour})
        return
    session.echo_sqlite_warning()
    tiers = tier_names(session)
    echo(f"memoric demo on the {where_it_lives(memoric)}")
    echo(f"Saved {tour['saved']} memories for {' and '.join(tour_steps.USERS)}.")
    heading('Metadata filter: demo-ada, {"topic": "travel", "tags": ["booking"]}')
    echo_memories(tour["filtered"], scored=False)
    for scope, memories in tour["recall"].items():
        heading(f"Recall for demo-ada in thread trip-porto, scope {scope}")
        echo_memories(memories)
    heading("Policies, dry run (nothing written)")
    echo_policy_counts(tour["policies_dry_run"], tiers)
    heading("Policies, real run")
    echo_policy_counts(tour["policies"], tiers)
    created = tour["policies"]["summaries_created"]
    echo(
        f"The summaries are memories too: {tour['saved']} saved + {created} written = "
        f"{tour['saved'] + created} demo memories."
    )
    heading(f"Recall in thread {tour_steps.OLD_THREAD} after the run: the summary replaces its sources")
    echo_memories(tour["recall_after_policies"])
    heading(f"Clusters ({tour['clusters_built']} built)")
    echo_clusters(tour["clusters"])
    heading("Stats")
    echo_stats(tour["stats"])
    echo()
    echo(f"The database is the {where_it_lives(memoric)}.")
