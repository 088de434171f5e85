"""Text sorts by code point on both dialects, as Python sorts strings, whatever the PostgreSQL
database's collation: the official Docker image's databases sort by the en_US locale (`_x`
before `-x` before `A`), where SQLite and a C-collated database sort by code point. Thread ids
(`distinct_threads`, with its limit choosing which come back) and tiers no configuration names
came back in another order, and other threads, on such a database."""

from __future__ import annotations

import pytest

from memoric.db.store import MemoryStore
from memoric.testing import drop_database
from tests.helpers.chain import built
from tests.helpers.collation import collated_database, server_with_en_us

THREADS = ["b", "B", "a", "A", "_x", "-x", "é", "e", "Z", "ä", "10", "9", "a b", "ß", "ss"]
TIERS = ["short_term", "b", "B", "_x", "a"]


@pytest.fixture(scope="module")
def collated_url(postgres_server_url):
    """A database that sorts text by en_US's rules: on the test server if it can, else on one of its own."""
    url = collated_database(postgres_server_url)
    if url is not None:
        yield url
        drop_database(postgres_server_url, url.rsplit("/", 1)[1].split("?")[0])
        return
    with server_with_en_us() as server_url:
        yield collated_database(server_url)


def by_locale(store: MemoryStore, values: list[str]) -> list[str]:
    """`values` as the database sorts them when told nothing of the order."""
    rows = store.database.execute_sql("SELECT x FROM unnest(%s::text[]) AS x ORDER BY x", (values,))
    return [value for (value,) in rows.fetchall()]


@pytest.fixture(params=["sqlite", "collated postgresql"])
def store(request, tmp_path, collated_url):
    dsn = f"sqlite:///{tmp_path / 'memoric.db'}" if request.param == "sqlite" else collated_url
    memoric = built(dsn)
    memoric.store.truncate()
    yield memoric.store
    memoric.store.truncate()


def test_the_collated_database_does_not_sort_by_code_point(collated_url):
    store = MemoryStore(collated_url)
    assert by_locale(store, THREADS) != sorted(THREADS)


def test_thread_ids_sort_by_code_point(store):
    store.insert_memories(
        [{"user_id": "u", "content": "x", "thread_id": t, "metadata": {"topic": "t"}} for t in THREADS]
    )
    assert store.distinct_threads(user_id="u") == sorted(THREADS)
    assert store.distinct_threads(user_id="u", limit=3) == sorted(THREADS)[:3]
    assert store.link_threads_by_topic("u", "t") == sorted(THREADS)


def test_tiers_no_configuration_names_are_counted_in_code_point_order(store):
    writer = MemoryStore(store.dsn, tiers=TIERS, warn_sqlite=False)
    writer.insert_memories([{"user_id": "u", "content": "x", "tier": tier} for tier in TIERS])
    counts = store.count_by_tier(user_id="u")
    assert list(counts) == [*store.tiers, *sorted(set(TIERS) - set(store.tiers))]
