"""Metrics against values worked out by hand (in the comments), not by calling the code under test."""

from __future__ import annotations

import pytest

from vplink.core.records import LabeledQuery, RankedEntity
from vplink.eval.metrics import Prediction, compute_metrics, latency_stats


def ranking(*ids: str) -> list[RankedEntity]:
    return [RankedEntity(id=i, score=1.0 / (n + 1)) for n, i in enumerate(ids)]


def filler(n: int, prefix: str = "X") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# Gold: q1..q4, q7, q8, q9 are in the KB; q5 and q6 are NIL.
GOLD = {"q1": "A", "q2": "B", "q3": "C", "q4": "D", "q5": None, "q6": None, "q7": "E", "q8": "F", "q9": "G"}
TYPES = {"A": "human", "B": "human", "C": "human", "D": "place"}


def predictions() -> list[Prediction]:
    return [
        # rank 1
        Prediction(id="q1", ranking=ranking("A", "X1", "X2"), latency_ms={"retrieve": 10, "rerank": 100}),
        # rank 3; candidates given explicitly
        Prediction(id="q2", ranking=ranking("X1", "X2", "B"), candidates=["X1", "X2", "B", "Z"],
                   latency_ms={"retrieve": 20}),
        # rank 12 of a 25-long ranking; no candidates: the ranking stands for them
        Prediction(id="q3", ranking=ranking(*filler(11), "C", *filler(13, "Y")), latency_ms={"retrieve": 30}),
        # retrieved (in candidates) but dropped from the ranking: a miss, yet counts for recall
        Prediction(id="q4", ranking=ranking("X1"), candidates=["X1", "D"], latency_ms={"retrieve": 40}),
        # NIL gold, called NIL: a true NIL
        Prediction(id="q5", ranking=ranking("X1"), nil=True),
        # NIL gold, linked: a false link
        Prediction(id="q6", ranking=ranking("Y1")),
        # failed: a miss and an error; its timing must not count
        Prediction(id="q7", ranking=[], error="ValueError: boom", latency_ms={"retrieve": 1000}),
        # gold at rank 1 but answered NIL: a miss at every k (the answer is "not in the KB"); still retrieved
        Prediction(id="q8", ranking=ranking("F"), nil=True),
        # q9 has no prediction at all: an error and a miss
        # a prediction for a query that is not in the gold set is ignored
        Prediction(id="stray", ranking=ranking("A")),
    ]


def test_hits_mrr_recall_by_hand():
    m = compute_metrics(predictions(), GOLD)
    # 7 linkable queries (q1 q2 q3 q4 q7 q8 q9); gold ranks: 1, 3, 12, miss, miss, miss, miss.
    assert m.n == 9
    assert m.hits == pytest.approx({"1": 1 / 7, "3": 2 / 7, "5": 2 / 7, "10": 2 / 7, "20": 3 / 7})
    # MRR = (1 + 1/3 + 1/12) / 7 = (17/12) / 7 = 17/84
    assert m.mrr == pytest.approx(17 / 84)
    # gold among candidates: q1 q2 q3 q4 q8 yes; q7 (failed) and q9 (missing) no -> 5/7
    assert m.recall_at_candidates == pytest.approx(5 / 7)
    assert m.errors == 2  # q7 failed, q9 missing


def test_nil_precision_recall_f1_by_hand():
    m = compute_metrics(predictions(), GOLD)
    # gold NIL {q5, q6}; predicted NIL {q5, q8}; true NIL {q5}
    assert m.nil is not None
    assert (m.nil.precision, m.nil.recall, m.nil.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (m.nil.n_gold_nil, m.nil.n_pred_nil, m.nil.n_linkable) == (2, 2, 7)


def test_no_nil_block_without_nil_gold():
    gold = {k: v for k, v in GOLD.items() if v is not None}
    assert compute_metrics(predictions(), gold).nil is None


def test_latency_percentiles_by_hand_and_failed_excluded():
    m = compute_metrics(predictions(), GOLD)
    # retrieve over q1..q4 = [10, 20, 30, 40] (q7 failed, excluded):
    # p50 at position 1.5 -> 25; p95 at position 2.85 -> 30 + 0.85 * 10 = 38.5
    assert m.latency_ms["retrieve"].p50 == pytest.approx(25.0)
    assert m.latency_ms["retrieve"].p95 == pytest.approx(38.5)
    assert (m.latency_ms["rerank"].p50, m.latency_ms["rerank"].p95) == (100.0, 100.0)
    assert set(m.latency_ms) == {"retrieve", "rerank"}


def test_by_type_by_hand():
    m = compute_metrics(predictions(), GOLD, types=TYPES)
    assert m.by_type is not None and set(m.by_type) == {"human", "place", "unknown"}
    human = m.by_type["human"]  # q1 (rank 1), q2 (rank 3), q3 (rank 12)
    assert human.n == 3
    assert human.hits == pytest.approx({"1": 1 / 3, "3": 2 / 3, "5": 2 / 3, "10": 2 / 3, "20": 1.0})
    assert human.mrr == pytest.approx((1 + 1 / 3 + 1 / 12) / 3)  # 17/36
    assert m.by_type["place"].n == 1 and m.by_type["place"].mrr == 0.0
    assert m.by_type["unknown"].n == 3  # E, F, G have no type
    assert compute_metrics(predictions(), GOLD).by_type is None


def test_gold_as_labeled_queries_matches_mapping():
    examples = [LabeledQuery(id=qid, text="t", mention="m", answer=answer) for qid, answer in GOLD.items()]
    assert compute_metrics(predictions(), examples) == compute_metrics(predictions(), GOLD)


def test_first_occurrence_counts_and_all_nil_gives_none():
    # A duplicated id in a ranking: its first rank counts (2), not its second (4).
    m = compute_metrics([Prediction(id="a", ranking=ranking("X", "G", "Y", "G"))], {"a": "G"})
    assert m.mrr == pytest.approx(0.5) and m.hits["1"] == 0.0 and m.hits["3"] == 1.0
    only_nil = compute_metrics([Prediction(id="a", nil=True)], {"a": None})
    assert only_nil.hits["1"] is None and only_nil.mrr is None and only_nil.recall_at_candidates is None
    assert only_nil.nil is not None and only_nil.nil.f1 == 1.0


def test_latency_stats_skip_failed_only():
    stats = latency_stats([Prediction(id="a", latency_ms={"s": 7}), Prediction(id="b", error="x", latency_ms={"s": 1})])
    assert stats["s"].p50 == 7.0
