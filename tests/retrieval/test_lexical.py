"""Lexical name matching on real KB names."""

from __future__ import annotations

from vplink.core.records import Entity
from vplink.retrieval.lexical import LexicalIndex, normalize


def test_normalize_strips_accents_and_brackets() -> None:
    assert normalize("Fred (footballer, born 1979)") == "fred"
    assert normalize("Márkó Futács") == "marko futacs"


def test_surname_finds_full_name_and_rare_tokens_weigh_more() -> None:
    index = LexicalIndex([
        Entity(id="Q1", name="Michel Temer"), Entity(id="Q2", name="Michel Platini"),
        Entity(id="Q3", name="Michel Foucault"), Entity(id="Q4", name="Temer", aliases=["Temer family"]),
    ])
    ranked = index.search("Temer", k=10)
    assert ranked[0] == ("Q4", 1.0)  # exact match of a name
    assert "Q1" in dict(ranked) and "Q2" not in dict(ranked)
    scores = dict(index.search("Michel Temer"))
    assert scores["Q1"] == 1.0 and scores["Q1"] > scores["Q2"]


def test_alias_match_counts() -> None:
    index = LexicalIndex([Entity(id="Q76", name="Barack Obama", aliases=["Barack Hussein Obama II"])])
    assert index.search("Barack Hussein Obama II") == [("Q76", 1.0)]
    assert index.search("nobody") == []


def test_batch_search_equals_single_searches() -> None:
    index = LexicalIndex([
        Entity(id="Q1", name="Michel Temer"), Entity(id="Q2", name="Michel Platini", aliases=["Platini"]),
        Entity(id="Q3", name="Michel Foucault"), Entity(id="Q4", name="Temer", aliases=["Temer family"]),
    ])
    queries = ["Michel", "Temer", "Michel Temer", "platini", "nobody", "Michel"]
    assert index.search_many(queries, k=3) == [index.search(q, k=3) for q in queries]
    assert [eid for eid, _ in index.search("Michel", k=10)] == ["Q1", "Q2", "Q3"]  # a tie breaks by id
