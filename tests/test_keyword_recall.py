"""Keyword recall: the tokenizer and BM25 ranking on both dialects.

The ranking must give the same ids in the same order, with bit-identical scores, on SQLite and
PostgreSQL, and agree with an independent BM25 (rank-bm25) to 1e-9. The postings it ranks by are
tested in test_postings.py (every write keeps them) and test_postings_migration.py (006 builds them).
"""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from memoric import Memoric
from memoric.aio import AsyncMemoric
from memoric.cli import main
from memoric.db.recall_queries import MAX_QUERY_TERMS
from memoric.db.store import MemoryStore
from memoric.errors import ConfigError, ValidationError
from memoric.scoring import idf, score_memory
from memoric.text import MAX_TERM_LENGTH, query_terms, tokens
from tests.helpers.chain import facade
from tests.helpers.reference import NOW, Clock, ago

pytestmark = pytest.mark.citus  # also on a Citus cluster: the same answers, bit for bit


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
        ("İSTANBUL İzmir istanbul", ["istanbul", "izmir", "istanbul"]),  # İ folds to i + U+0307: the dot goes
        ("İ\u0323 İ\u0328 İ\u0307ki", ["ị", "į", "iki"]),  # marks NFKC puts before the dot, a second dot
        ("soft\u00adware zero\u200bwidth ﻿bom", ["software", "zerowidth", "bom"]),  # default-ignorables go
        ("می\u200cخواهم میخواهم", ["میخواهم", "میخواهم"]),  # a zero-width non-joiner too
        ("葛\U000e0100飾 ❤\ufe0f", ["葛", "飾"]),  # variation selectors
        ("e\u00ad\u0301t\u00e9 i\u0307\u0301 í", ["été", "í", "í"]),  # an accent freed is composed again
    ],
)
def test_the_tokenizer(text, expected):
    assert tokens(text) == expected


def test_a_dotted_capital_i_is_found_by_a_plain_i_and_the_other_way(dsn):
    """Case folding makes İ an i with a dot above, which no query typed with a plain i matched."""
    m = Memoric(dsn)
    flight = m.save("ada", "Flight to İSTANBUL on Friday")
    hotel = m.save("ada", "istanbul hotel, soft\u00adware fair")
    for query, found in [("istanbul", {flight, hotel}), ("İstanbul", {flight, hotel}), ("software", {hotel})]:
        assert {r["id"] for r in m.retrieve("ada", scope="user", query=query)} == found, query
    m.close()


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
