"""Keyword recall: the tokenizer, the postings every write keeps, BM25 ranking on both dialects.

The postings must always equal what a rebuild from the stored memories would write, whichever
public write path ran; the ranking must give the same ids in the same order, with bit-identical
scores, on SQLite and PostgreSQL, and agree with an independent BM25 (rank-bm25) to 1e-9.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from memoric import Memoric
from memoric.aio import AsyncMemoric
from memoric.cli import main
from memoric.db import postings
from memoric.db.postings import posting_rows
from memoric.db.recall_queries import MAX_QUERY_TERMS
from memoric.db.store import MemoryStore
from memoric.errors import ConfigError, MemoricError, ValidationError
from memoric.migrate import Migrations
from memoric.scoring import idf, score_memory
from memoric.text import MAX_TERM_LENGTH, query_terms, tokens
from memoric.transfer import copy_database, export_jsonl, import_jsonl
from tests.helpers import (
    FIFTH,
    FOURTH,
    NOW,
    POSTINGS,
    Clock,
    LyingText,
    PrintedText,
    ago,
    wait_for_a_lock_waiter,
    while_held,
)

pytestmark = pytest.mark.citus  # also on a Citus cluster: the same answers, bit for bit


def facade(store, **options) -> Memoric:
    """A Memoric on the store's database, its schema (built from the models) stamped at head."""
    migrations = Migrations(store)
    if migrations.current() is None:
        migrations.stamp("head")
    return Memoric(store.dsn, **options)


# --- the tokenizer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What did the user say about REFUNDS?", ["what", "did", "the", "user", "say", "about", "refunds"]),
        ("Straße STRASSE", ["strasse", "strasse"]),  # case folding, not just lowering
        ("ＡＢＣ ﬁle ①", ["abc", "file", "1"]),  # NFKC: full-width, ligatures, circled digits
        ("cafe\u0301 café", ["café", "café"]),  # a combining accent composes, and stays in its word
        ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # Devanagari vowel signs and virama keep the word whole
        ("退款政策", ["退", "款", "政", "策"]),  # ideographs: one term each
        ("東京タワーtokyo", ["東", "京", "タ", "ワ", "ー", "tokyo"]),
        ("東京・大阪 ゠ ゛", ["東", "京", "大", "阪"]),  # kana-block punctuation and marks are no terms
        ("refund_policy v2.0 e-mail", ["refund_policy", "v2", "0", "e", "mail"]),
        ("👍🎉 !!! ... ---", []),  # emoji and punctuation only: no terms
    ],
)
def test_the_tokenizer(text, expected):
    assert tokens(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_text_gets_the_terms_of_the_general_rule(text):
    """ASCII text takes a shortcut; with a non-ASCII word after it, it takes the general rule."""
    assert tokens(text) == tokens(f"{text} é")[:-1]


def test_long_terms_are_cut_to_the_same_prefix_in_memories_and_queries():
    word = "x" * (MAX_TERM_LENGTH + 100)
    assert tokens(word) == ["x" * MAX_TERM_LENGTH]
    assert tokens("ß" * MAX_TERM_LENGTH) == ["s" * MAX_TERM_LENGTH], "cut after case folding"
    assert query_terms("b a B a c") == ["b", "a", "c"], "distinct, in first-seen order"


# --- the postings follow every write ----------------------------------------------------------


def stored_postings(store) -> tuple[list[tuple], list[tuple]]:
    """The rows of memory_terms and memory_documents, sorted."""
    t, d = store.MemoryTerm, store.MemoryDocument
    terms = sorted(t.select(t.memory_id, t.user_id, t.namespace, t.term, t.tf, t.dl).tuples())
    documents = sorted(d.select(d.memory_id, d.user_id, d.namespace, d.length).tuples())
    return terms, documents


def rebuilt_postings(store) -> tuple[list[tuple], list[tuple]]:
    """The postings a rebuild from the stored memories would write, sorted."""
    terms, documents = posting_rows(store.get_memories(limit=None))
    return sorted(terms), sorted(documents)


def assert_postings_match(store) -> None:
    assert stored_postings(store) == rebuilt_postings(store)


LONG = "long_term"
CONFIG = {
    "tiers": [{"name": "short_term", "trim_chars": 12}, {"name": "long_term"}],
    "summarization": {"enabled": True, "min_records": 3, "max_chars": 200},
}


def test_every_write_path_keeps_the_postings_equal_to_a_rebuild(new_dsn):
    memoric = Memoric(new_dsn(), config=CONFIG)
    store = memoric.store
    first = memoric.save("ada", "Refund policy: refunds within fourteen days", thread_id="t1")
    memoric.save("ada", "refund refund REFUND", namespace="shop")
    assert_postings_match(store)
    store.insert_memories(
        [
            {
                "user_id": "bob",
                "content": f"bulk memory {n} on tea, refunds",
                "thread_id": "t2",
                "tier": "long_term",
            }
            for n in range(7)
        ]
        + [
            {"user_id": "bob", "content": "explicit id 👍 café", "id": 500},
            {"user_id": "eve", "content": "..."},
        ],
        batch_size=3,
    )
    assert_postings_match(store)
    store.update_content(memory_id=first, new_content="Nothing about money any more")
    assert_postings_match(store)
    counts = memoric.run_policies()  # trims the short-term tier, then summarizes threads
    assert counts["trimmed"] > 0 and counts["summaries_created"] > 0
    assert_postings_match(store)
    memoric.forget("eve")
    store.delete_memories(memory_ids=[500, first])
    assert_postings_match(store)

    exported = io.StringIO()
    export_jsonl(store, exported)
    store.delete_memories(user_id="bob")
    import_jsonl(store, exported.getvalue().splitlines())  # the missing come back, the others are skipped
    assert_postings_match(store)
    copy = Memoric(new_dsn())
    copy.migrate()
    copy_database(store, copy.store)
    assert_postings_match(copy.store)
    assert stored_postings(copy.store) == stored_postings(store)
    store.truncate()
    assert stored_postings(store) == ([], [])


def test_a_batch_writes_its_terms_in_the_lookup_index_order():
    """Each user and namespace's terms together, by term, memory order within a term: a bulk
    insert visits each page of the lookup index once."""
    memories = [
        {"id": 1, "user_id": "ada", "namespace": None, "content": "zebra apple"},
        {"id": 2, "user_id": "bob", "namespace": "work", "content": "apple"},
        {"id": 3, "user_id": "ada", "namespace": None, "content": "mango apple"},
        {"id": 4, "user_id": "ada", "namespace": "work", "content": "apple"},
    ]
    terms, documents = posting_rows(memories)
    assert [(user, namespace, term, memory_id) for memory_id, user, namespace, term, _, _ in terms] == [
        ("ada", None, "apple", 1),
        ("ada", None, "apple", 3),
        ("ada", None, "mango", 3),
        ("ada", None, "zebra", 1),
        ("bob", "work", "apple", 2),
        ("ada", "work", "apple", 4),
    ]
    assert [document[0] for document in documents] == [1, 2, 3, 4]


def test_a_bulk_insert_that_fails_midway_leaves_no_postings(db):
    taken = db.insert_memory(user_id="ada", content="already here")
    rows = [{"user_id": "ada", "content": f"new words {n}"} for n in range(5)]
    with pytest.raises(MemoricError):
        db.insert_memories([*rows, {"user_id": "ada", "content": "clash", "id": taken}], batch_size=100)
    assert len(db.get_memories(limit=None)) == 1
    assert_postings_match(db)


def test_a_batch_longer_than_one_statement_posts_every_memory(db, monkeypatch):
    monkeypatch.setattr(postings, "POSTED_PER_STATEMENT", 3)
    users = ["ada", "bob", "cy"]
    rows = [
        {"user_id": users[n % 3], "namespace": [None, "work"][n % 2], "content": f"word{n % 4} shared {n}"}
        for n in range(20)
    ]
    db.insert_memories(rows, batch_size=20)
    assert len(db.get_memories(limit=None)) == 20
    assert_postings_match(db)


def test_text_given_as_a_str_subclass_is_stored_as_its_characters_by_every_write(db):
    """The checks of every text field turn a subclass into the plain text of its characters."""
    fields = {"user_id": "ada", "namespace": "work", "thread_id": "t1", "content": "refund tea"}
    given = {name: LyingText(value) for name, value in fields.items()}
    given |= {"tier": LyingText("long_term"), "related_threads": [LyingText("t2")]}
    db.insert_memories([given, {**given, "content": LyingText("zebra tea")}])
    saved = db.insert_memory(**given)
    memories = db.get_memories(limit=None)
    expected = {**fields, "tier": "long_term", "related_threads": ["t2"]}
    for memory in memories:
        stored = {name: memory[name] for name in expected}
        assert stored == {**expected, "content": stored["content"]}
    assert sorted(memory["content"] for memory in memories) == ["refund tea", "refund tea", "zebra tea"]
    assert_postings_match(db)
    recalled = facade(db).retrieve("ada", query="refund", scope="user", namespace="work")
    assert sorted(memory["id"] for memory in recalled) == sorted(
        memory["id"] for memory in memories if memory["content"] == "refund tea"
    )
    assert saved in [memory["id"] for memory in recalled]


def test_filters_choices_and_tier_names_given_as_str_subclasses_go_by_their_characters(db):
    memoric = facade(db, config={"tiers": [{"name": LyingText("short_term")}, {"name": "long_term"}]})
    saved = memoric.save("ada", "refund tea", metadata={"k": "v", "topic": "billing"})
    with pytest.raises(MemoricError, match="tier must be one of"):
        memoric.save("ada", "refund", tier="no_such_tier")
    found = memoric.retrieve("ada", scope="user", query="refund", metadata_filter={PrintedText("k"): "v"})
    assert [memory["id"] for memory in found] == [saved]
    with pytest.raises(MemoricError, match="needs metadata_filter"):
        memoric.retrieve("ada", scope=LyingText("topic"))
    memoric.close()


def test_odd_contents_have_a_document_row_and_only_their_terms(db):
    contents = ["!!!", "👍" * 3, "a", "x" * 100_000, "word " * 20_000, "e\u0301" * 10]
    for content in contents:
        db.insert_memory(user_id="ada", content=content)
    assert_postings_match(db)
    documents = {length for *_, length in stored_postings(db)[1]}
    assert documents == {0, 1, 20_000}, "punctuation and emoji only: a document of length 0"


# --- the ranking ------------------------------------------------------------------------------


def reference_ranking(
    memories, query, relevance, formula, now, thread_id=None, keep=lambda m: True, top_k=10
):
    """Keyword recall by brute force in Python: the same constants and operations as the SQL."""
    terms = query_terms(query)
    counted = [(memory, *_counts(memory["content"])) for memory in memories]
    documents = len(counted)
    total = sum(length for _, _, length in counted)
    frequencies = [sum(1 for _, counts, _ in counted if term in counts) for term in terms]
    if not total or not any(frequencies):
        return []
    constants = relevance.constants(documents, total, frequencies)
    hits = []
    for memory, counts, length in counted:
        if keep(memory) and any(term in counts for term in terms):
            parts = [
                constants.contribution(i, counts[term], length) if term in counts else 0.0
                for i, term in enumerate(terms)
            ]
            hits.append((memory, sum(parts[1:], parts[0])))
    best = max(value for _, value in hits) if hits else 0.0
    ranked = []
    for memory, value in hits:
        score = score_memory(formula, memory, now, thread_id)
        ranked.append((constants.rank(value, best, score), memory["created_at"], memory["id"], value, score))
    ranked.sort(reverse=True)
    return [(memory_id, value, rank, score) for rank, _, memory_id, value, score in ranked[:top_k]]


def _counts(content):
    found = tokens(content)
    counts = {}
    for term in found:
        counts[term] = counts.get(term, 0) + 1
    return counts, len(found)


def recalled(memories):
    return [(m["id"], m["_relevance"], m["_rank"], m["_score"]) for m in memories]


WORDS = ["refund", "policy", "tea", "green", "order", "late", "café", "退", "款"]
CORPUS = st.lists(
    st.tuples(
        st.lists(st.sampled_from(WORDS), min_size=0, max_size=6),
        st.integers(0, 3),  # minutes ago: few values, so created_at ties are common
        st.sampled_from([50, 60]),  # importance: few values, so score ties are common
        st.sampled_from(["alice", "bob"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=CORPUS, query=st.lists(st.sampled_from([*WORDS, "absent"]), min_size=1, max_size=4))
def test_both_dialects_rank_generated_corpora_identically_and_as_the_reference(stores, corpus, query):
    """Same ids, same order, bit-identical relevance and rank on both dialects, equal to Python's."""
    query_text = " ".join(query)
    answers = {}
    for dialect, store in stores.items():
        store.truncate()
        memoric = facade(store, clock=Clock(NOW))
        store.insert_memories(
            [
                {
                    "user_id": user,
                    "content": " ".join(words) or "—",
                    "score": importance,
                    **ago(minutes=minutes),
                }
                for words, minutes, importance, user in corpus
            ]
        )
        answers[dialect] = recalled(memoric.retrieve("alice", query=query_text, scope="user", top_k=5))
        alice = store.get_memories(user_id="alice", limit=None)
        expected = reference_ranking(alice, query_text, memoric.relevance, memoric.formula, NOW, top_k=5)
        assert answers[dialect] == expected
        memoric.close()
    assert len(set(map(repr, answers.values()))) == 1


def test_relevance_reads_back_bit_for_bit_where_the_server_prints_floats_short(dsn):
    """A PostgreSQL database set to print floats to 15 digits (`extra_float_digits = 0`, the
    default before version 12) still hands back the relevance and rank the SQL computed, equal
    to Python's; SQLite has no such setting and must agree."""
    store = MemoryStore(dsn, clock=Clock(NOW))
    store.create_schema()
    if store.is_postgres:
        name = store.database.execute_sql("SELECT current_database()").fetchone()[0]
        store.database.execute_sql(f'ALTER DATABASE "{name}" SET extra_float_digits = 0')
        store.close()
        store = MemoryStore(dsn, clock=Clock(NOW))
    contents = ["refund policy refund", "the policy of the house", "green tea with a refund", "tea"]
    store.insert_memories([{"user_id": "ada", "content": c, **ago(hours=n)} for n, c in enumerate(contents)])
    memoric = facade(store, clock=Clock(NOW))
    found = recalled(memoric.retrieve("ada", query="refund policy tea", scope="user", top_k=10))
    memories = store.get_memories(user_id="ada", limit=None)
    expected = reference_ranking(memories, "refund policy tea", memoric.relevance, memoric.formula, NOW)
    assert found == expected
    assert any(len(repr(relevance)) > 17 for _, relevance, _, _ in found)  # digits past the 15th
    memoric.close()
    store.close()


def test_relevance_agrees_with_rank_bm25_to_1e_9(db):
    """rank-bm25's BM25 with Lucene's idf (its BM25Okapi floors negative idf instead)."""

    class LuceneIdf(BM25Okapi):
        def _calc_idf(self, nd):
            for word, freq in nd.items():
                self.idf[word] = math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))

    contents = [
        "refund policy refund",
        "the refund took forever and the policy is unclear",
        "green tea",
        "tea tea tea with the policy of the house",
        "nothing to see",
        "refund",
    ]
    ids = [
        db.insert_memory(user_id="ada", content=content, **ago(hours=n)) for n, content in enumerate(contents)
    ]
    memoric = facade(db, clock=Clock(NOW))
    query = "refund policy of tea"
    reference = LuceneIdf([tokens(c) for c in contents], k1=1.2, b=0.75)
    expected = dict(zip(ids, reference.get_scores(query_terms(query)), strict=True))
    found = memoric.retrieve("ada", query=query, scope="user", top_k=10)
    assert {m["id"] for m in found} == {i for i, value in expected.items() if value > 0}
    for memory in found:
        assert memory["_relevance"] == pytest.approx(expected[memory["id"]], rel=1e-9, abs=0)


def test_df_equal_to_n_still_counts_and_one_memory_ranks_itself(db):
    assert idf(3, 3) > 0 and idf(1, 1) > 0
    only = db.insert_memory(user_id="solo", content="refund")
    memoric = facade(db)
    assert [m["id"] for m in memoric.retrieve("solo", query="refund", scope="user")] == [only]


def test_another_users_memories_change_nothing(stores):
    for store in stores.values():
        store.truncate()
        memoric = facade(store, clock=Clock(NOW))
        store.insert_memories(
            [{"user_id": "ada", "content": c, **ago(hours=1)} for c in ("refund tea", "tea")]
        )
        alone = recalled(memoric.retrieve("ada", query="refund tea", scope="user"))
        store.insert_memories([{"user_id": "bob", "content": "refund " * 50} for _ in range(30)])
        store.insert_memories(
            [{"user_id": "ada", "namespace": "other", "content": "refund"} for _ in range(30)]
        )
        assert recalled(memoric.retrieve("ada", query="refund tea", scope="user")) == alone
        memoric.close()


def test_filters_scopes_and_top_k_apply_to_keyword_recall(db):
    memoric = facade(db, clock=Clock(NOW))
    a = memoric.save("ada", "refund asked", thread_id="t1", metadata={"topic": "billing"})
    b = memoric.save("ada", "refund given", thread_id="t2", metadata={"topic": "billing"})
    memoric.save("ada", "refund in a namespace", namespace="ns")
    hidden = memoric.save("ada", "refund summarized", thread_id="t1")
    db.mark_summarized(memory_ids=[hidden])
    memoric.save("ada", "no match here", thread_id="t1")

    def ids(**kwargs):
        return {m["id"] for m in memoric.retrieve("ada", query="refund", **kwargs)}

    assert ids(thread_id="t1") == {a}
    assert ids(thread_id="t1", include_summarized=True) == {a, hidden}
    assert ids(scope="user", metadata_filter={"topic": "billing"}) == {a, b}
    assert len(memoric.retrieve("ada", query="refund", scope="user", top_k=1)) == 1
    assert ids(scope="user", namespace="ns") != ids(scope="user")
    assert memoric.retrieve("ada", query="???", scope="user") == []
    assert memoric.retrieve("ada", scope="user")[0].keys() >= {"_score"}
    assert "_relevance" not in memoric.retrieve("ada", scope="user")[0], "no query: as before"


def test_bad_queries_and_settings_are_refused(db):
    memoric = facade(db)
    for bad in ("", "   ", 5, "a\x00b"):
        with pytest.raises(ValidationError, match="query"):
            memoric.retrieve("ada", query=bad)
    many = " ".join(f"w{n}" for n in range(MAX_QUERY_TERMS + 1))
    with pytest.raises(ValidationError, match=f"at most {MAX_QUERY_TERMS}"):
        memoric.retrieve("ada", query=many)
    for key, value in (("relevance", 1.5), ("bm25_b", -0.1), ("bm25_k1", "1.2"), ("bm25_k1", float("nan"))):
        with pytest.raises(ConfigError, match=f"scoring.{key}"):
            facade(db, config={"scoring": {key: value}})


def test_the_blend_weight_moves_the_order(db):
    important = db.insert_memory(user_id="ada", content="refund", score=100, **ago(days=1))
    relevant = db.insert_memory(user_id="ada", content="refund refund policy policy", score=0, **ago(days=1))
    order = {}
    for weight in (0.0, 1.0):
        memoric = facade(db, clock=Clock(NOW), config={"scoring": {"relevance": weight}})
        order[weight] = [m["id"] for m in memoric.retrieve("ada", query="refund policy", scope="user")]
    assert order == {0.0: [important, relevant], 1.0: [relevant, important]}


def test_cli_and_async_recall_take_a_query(cli, dsn):
    Memoric(dsn).save("ada", "The refund policy is 14 days")
    result = cli("recall", "--user", "ada", "--query", "refund", "--json")
    assert result.exit_code == 0, result.output
    (found,) = json.loads(result.stdout)
    assert found["content"] == "The refund policy is 14 days" and found["_relevance"] > 0
    assert "No memories found" in cli("recall", "--user", "ada", "--query", "tea").stdout
    assert main is not None

    async def recall():
        async with AsyncMemoric(dsn) as memoric:
            return await memoric.retrieve("ada", query="policy")

    assert [m["content"] for m in asyncio.run(recall())] == ["The refund policy is 14 days"]


# --- the migration ----------------------------------------------------------------------------


def test_006_builds_postings_for_existing_memories_and_its_rollback_drops_them(store):
    migrations = Migrations(store)
    migrations.upgrade(FOURTH)
    rows = [
        {
            "user_id": f"u{n % 3}",
            "namespace": "ns" if n % 4 == 0 else None,
            "content": f"memory {n} of {n % 7} 👍",
        }
        for n in range(2500)  # more than one page of the build
    ]
    store.insert_memories(rows)
    assert migrations.upgrade(POSTINGS) == [FIFTH, POSTINGS]
    assert_postings_match(store)
    assert len(stored_postings(store)[1]) == 2500

    assert migrations.downgrade() == [POSTINGS], "derived data: no confirmation needed"
    assert not store.database.table_exists("memory_terms")
    assert not store.database.table_exists("memory_documents")
    store.insert_memory(user_id="u0", content="written while the postings are gone")
    assert migrations.upgrade(POSTINGS) == [POSTINGS]
    assert_postings_match(store)


def upgrade_in_a_thread(store, failures: list) -> threading.Thread:
    """A thread upgrading the store's database to 006 (a failure goes to `failures`)."""

    def upgrade():
        try:
            Migrations(store).upgrade(POSTINGS)
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            store.close()

    return threading.Thread(target=upgrade)


def test_a_memory_written_as_006_begins_is_posted_by_it(store):
    """006 waits for a write of memories begun before it, then reads and posts that memory,
    which the writer saved without postings: it found no tables."""
    Migrations(store).upgrade(FIFTH)
    writer = MemoryStore(store.dsn)

    def save_and_hold(pause):
        with writer.database.atomic():
            writer.insert_memory(user_id="ada", content="saved as the upgrade began")
            pause()
        writer.close()

    assert while_held(store, save_and_hold, lambda: Migrations(store).upgrade(POSTINGS)) == []
    assert [m["content"] for m in store.get_memories()] == ["saved as the upgrade began"]
    assert_postings_match(store)


# Each write of memories, made while 006 builds the postings, on three memories saved before it.
WRITES_DURING_006 = {
    "save": lambda store: store.insert_memory(user_id="ada", content="saved during the upgrade"),
    "bulk insert": lambda store: store.insert_memories(
        [{"user_id": "ada", "content": f"bulk {n} during the upgrade"} for n in range(3)]
    ),
    "update_content": lambda store: store.update_content(
        memory_id=1, new_content="changed during the upgrade"
    ),
    "delete": lambda store: store.delete_memories(memory_ids=[1]),
    "truncate": lambda store: store.truncate(),
}


def below_006_with_three_memories(store) -> None:
    Migrations(store).upgrade(FIFTH)
    store.insert_memories([{"user_id": "ada", "content": f"saved before the upgrade {n}"} for n in range(3)])


def write_in_a_thread(dsn: str, write, failures: list, trace=None) -> threading.Thread:
    """A thread running `write` on a store of its own, opened below 006 (a failure goes to
    `failures`; `trace` sees each statement its connection sends, SQLite only)."""

    def run():
        writer = MemoryStore(dsn)
        if trace is not None:
            writer.database.connection().set_trace_callback(trace)
        try:
            write(writer)
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            writer.close()

    return threading.Thread(target=run)


@pytest.mark.parametrize("write", WRITES_DURING_006)
def test_a_write_while_006_runs_waits_for_it_and_keeps_the_postings(store, write):
    """A write that comes while 006 builds the postings waits for its commit, then finds the
    tables and keeps them (PostgreSQL: the upgrade is held before its history row)."""
    if store.dialect.name == "sqlite":
        pytest.skip("SQLite: see the next test")
    below_006_with_three_memories(store)
    holder = MemoryStore(store.dsn)
    held, release, failures = threading.Event(), threading.Event(), []

    def hold_the_history():
        with holder.database.atomic():
            holder.database.execute_sql('LOCK TABLE "migratehistory" IN EXCLUSIVE MODE')
            held.set()
            release.wait()
        holder.close()

    threading.Thread(target=hold_the_history).start()
    held.wait()
    upgrade = upgrade_in_a_thread(store, failures)
    upgrade.start()
    wait_for_a_lock_waiter(store)  # the upgrade, its postings built, waits to write its history
    writer = write_in_a_thread(store.dsn, WRITES_DURING_006[write], failures)
    writer.start()
    wait_for_a_lock_waiter(store, waiters=2, unless=writer)
    release.set()
    for thread in (upgrade, writer):
        thread.join()
    assert failures == []
    assert_postings_match(store)
    store.insert_memory(user_id="ada", content="saved after the upgrade")
    assert_postings_match(store)


@pytest.mark.parametrize("write", WRITES_DURING_006)
def test_a_sqlite_write_waiting_for_006_finds_the_tables_it_built(store, write):
    """SQLite: a write that comes while 006 holds the write lock decides whether to post only
    once it has the lock. The upgrade is held just before its history row until the write has
    sent its first statement that writes (each connection's statements seen through its trace)."""
    if store.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    below_006_with_three_memories(store)
    sent, failures = threading.Event(), []

    def trace(sql: str) -> None:
        if sql.startswith(("BEGIN", "INSERT", "UPDATE", "DELETE")):
            sent.set()

    writer = write_in_a_thread(store.dsn, WRITES_DURING_006[write], failures, trace)

    def before_the_history_row(sql: str) -> None:
        if sql.startswith('INSERT INTO "migratehistory"') and not writer.is_alive() and not sent.is_set():
            writer.start()
            assert sent.wait(timeout=60), "the write sent no statement"

    store.database.connection().set_trace_callback(before_the_history_row)
    Migrations(store).upgrade(POSTINGS)
    store.database.connection().set_trace_callback(None)
    writer.join()
    assert failures == []
    assert_postings_match(store)
    store.insert_memory(user_id="ada", content="saved after the upgrade")
    assert_postings_match(store)


def test_a_store_open_through_a_downgrade_below_006_fails_one_write_then_goes_on(store):
    """The downgrade drops the tables under a store that knew them: its next write fails (a
    MemoricError) and the one after writes the memory alone; the next upgrade posts them all."""
    migrations = Migrations(store)
    migrations.upgrade(POSTINGS)
    writer = MemoryStore(store.dsn)
    writer.insert_memory(user_id="ada", content="saved with postings")
    assert migrations.downgrade(FIFTH) == [POSTINGS]
    with pytest.raises(MemoricError):
        writer.insert_memory(user_id="ada", content="meets the dropped tables")
    writer.insert_memory(user_id="ada", content="saved without postings")
    assert migrations.upgrade(POSTINGS) == [POSTINGS]
    writer.insert_memory(user_id="ada", content="saved with postings again")
    writer.close()
    assert len(store.get_memories(limit=None)) == 3
    assert_postings_match(store)


def test_two_truncates_at_once_on_stores_that_must_look_for_the_postings_both_succeed(db):
    """A truncate on a store that has not yet seen the postings tables (new, or after a failed
    call) waits for another transaction's lock without holding a lock of its own: the other
    transaction's truncate then goes through, where each holding a weaker lock deadlocked."""
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite: one writer at a time, from BEGIN IMMEDIATE")
    db.insert_memory(user_id="ada", content="to be truncated")

    def write_then_truncate(pause):
        with db.database.atomic():
            db.insert_memory(user_id="ada", content="written in the transaction")
            pause()
            db.truncate()

    def truncate_on_a_new_store():
        other = MemoryStore(db.dsn)
        try:
            other.truncate()
        finally:
            other.close()

    assert while_held(db, write_then_truncate, truncate_on_a_new_store) == []
    assert db.get_memories(limit=None) == [] and stored_postings(db) == ([], [])


def test_two_imports_of_the_same_memories_at_once_both_succeed(db):
    """The second import's rebuild of the postings waits for the first's and replaces what it
    wrote: no duplicate key, postings equal to a rebuild."""
    for n in range(30):
        db.insert_memory(user_id=["ada", "bob"][n % 2], content=f"memory {n} refund tea")
    rows = db.get_memories(limit=None)
    held, release, failures = threading.Event(), threading.Event(), []

    def first():
        with db.database.atomic():
            postings.insert_memories(db, rows, skip_existing=True)
            held.set()
            release.wait()

    def second():
        held.wait()
        with db.database.atomic():
            postings.insert_memories(db, rows, skip_existing=True)

    def guarded(work):
        try:
            work()
        except BaseException as exc:  # reported below
            failures.append((work.__name__, exc))
            held.set()
        finally:
            db.close()

    threads = [threading.Thread(target=guarded, args=(work,)) for work in (first, second)]
    for thread in threads:
        thread.start()
    held.wait()
    wait_for_a_lock_waiter(db)
    release.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(db.get_memories(limit=None)) == 30
    assert_postings_match(db)


def test_concurrent_writers_leave_postings_equal_to_a_rebuild(db):
    """Inserts, content updates and deletes of one user's memories at once, from four threads."""
    seeded = [db.insert_memory(user_id="ada", content=f"seed {n} refund") for n in range(40)]
    start = threading.Barrier(4)
    failures = []

    def insert():
        start.wait()
        for n in range(10):
            db.insert_memories([{"user_id": "ada", "content": f"bulk {n} {k} tea"} for k in range(5)])

    def update():
        start.wait()
        for memory_id in seeded:
            db.update_content(memory_id=memory_id, new_content=f"updated {memory_id} policy policy")

    def delete():
        start.wait()
        for memory_id in seeded[::3]:
            db.delete_memories(memory_ids=[memory_id])

    def save():
        start.wait()
        for n in range(30):
            db.insert_memory(user_id="ada", content=f"single {n} café")

    def guarded(work):
        try:
            work()
        except BaseException as exc:  # reported below, with the thread's work named
            failures.append((work.__name__, exc))
        finally:
            db.close()

    threads = [threading.Thread(target=guarded, args=(work,)) for work in (insert, update, delete, save)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert_postings_match(db)
    assert len(db.get_memories(limit=None)) == 40 - len(seeded[::3]) + 50 + 30
