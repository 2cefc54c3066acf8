"""Prediction records and the numbers computed from them: Hits@k, MRR, candidate recall, NIL, latency."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vplink.core.records import LabeledQuery, RankedEntity

#: The cut-offs of Hits@k that every run reports.
KS: tuple[int, ...] = (1, 3, 5, 10, 20)


class Prediction(BaseModel):
    """What a pipeline answered for one query: a ranking over the KB, a NIL flag, timings, or an error."""

    model_config = ConfigDict(extra="ignore")

    id: str
    ranking: list[RankedEntity] = Field(default_factory=list)
    nil: bool = False
    #: The calibrated probability that the top-1 is right, and the features it was computed from.
    confidence: float | None = None
    confidence_features: dict[str, float] = Field(default_factory=dict)
    # The ids retrieval handed to the reranker; empty means "the same as the ranking".
    candidates: list[str] = Field(default_factory=list)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def candidate_ids(self) -> list[str]:
        """The retrieved candidate ids, falling back to the ranking's ids."""
        return list(self.candidates) if self.candidates else [r.id for r in self.ranking]

    def rank_of(self, entity_id: str | None) -> int | None:
        """The 1-based rank of ``entity_id`` in the ranking, or None when it is absent."""
        if entity_id is None:
            return None
        for rank, entity in enumerate(self.ranking, start=1):
            if entity.id == entity_id:
                return rank
        return None

    @classmethod
    def failed(cls, query_id: str, error: str, latency_ms: dict[str, float] | None = None) -> Prediction:
        """A prediction recording that the pipeline failed on this query."""
        return cls(id=query_id, error=error, latency_ms=latency_ms or {})


class LatencyStats(BaseModel):
    """Median and 95th percentile of one stage's latency, in milliseconds."""

    p50: float
    p95: float


class NilMetrics(BaseModel):
    """How well NIL (not in the KB) was detected, when the gold answers include NIL."""

    precision: float
    recall: float
    f1: float
    n_gold_nil: int
    n_pred_nil: int
    n_linkable: int


class ReliabilityBin(BaseModel):
    """One bin of the reliability diagram: its confidence range, answers, mean confidence and accuracy."""

    low: float
    high: float
    n: int
    confidence: float | None
    accuracy: float | None


class CalibrationMetrics(BaseModel):
    """How well the confidence predicts that the top-1 is right: expected calibration error over 10 bins."""

    ece: float
    n: int
    bins: list[ReliabilityBin]


class AbstentionMetrics(BaseModel):
    """What saying NIL costs the queries whose gold is in the KB: Hits@1 with NIL answers ignored and counted."""

    h1_before_nil: float
    h1_after_nil: float
    nil_on_in_kb: int


class TypeMetrics(BaseModel):
    """Hits@k and MRR over the queries whose gold entity has one type."""

    n: int
    hits: dict[str, float]
    mrr: float


class Metrics(BaseModel):
    """Every number one run reports; Hits@k and MRR are over queries whose gold is in the KB."""

    hits: dict[str, float | None]
    mrr: float | None
    recall_at_candidates: float | None
    n: int
    errors: int
    latency_ms: dict[str, LatencyStats]
    throughput_qps: float | None = None
    nil: NilMetrics | None = None
    abstention: AbstentionMetrics | None = None
    calibration: CalibrationMetrics | None = None
    by_type: dict[str, TypeMetrics] | None = None


def gold_rank(prediction: Prediction | None, gold: str | None) -> int | None:
    """The rank that counts for scoring: None when the gold is NIL, absent, or the query failed or was called NIL."""
    if prediction is None or gold is None or prediction.error is not None or prediction.nil:
        return None
    return prediction.rank_of(gold)


def compute_metrics(predictions: Iterable[Prediction], gold: Mapping[str, str | None] | Sequence[LabeledQuery], *,
                    types: Mapping[str, str] | None = None, ks: Sequence[int] = KS,
                    throughput_qps: float | None = None) -> Metrics:
    """Score predictions against gold answers (a ``{query id: entity id or None}`` map, or labeled queries).

    Only queries in ``gold`` count; one without a prediction counts as an error and a miss.
    A prediction flagged NIL on a query whose gold is in the KB is a miss at every k.
    """
    answers = _gold_map(gold)
    by_id = {p.id: p for p in predictions}
    linkable = [qid for qid, answer in answers.items() if answer is not None]
    ranks = {qid: gold_rank(by_id.get(qid), answers[qid]) for qid in linkable}
    retrieved = sum(1 for qid in linkable if qid in by_id and by_id[qid].error is None
                    and answers[qid] in by_id[qid].candidate_ids())
    errors = sum(1 for qid in answers if qid not in by_id or by_id[qid].error is not None)
    hits, mrr = _hits_mrr([ranks[qid] for qid in linkable], ks)
    return Metrics(
        hits=hits,
        mrr=mrr,
        recall_at_candidates=retrieved / len(linkable) if linkable else None,
        n=len(answers),
        errors=errors,
        latency_ms=latency_stats(by_id[qid] for qid in answers if qid in by_id),
        throughput_qps=throughput_qps,
        nil=_nil_metrics(answers, by_id, len(linkable)),
        abstention=_abstention(linkable, answers, by_id, hits.get("1")),
        calibration=_calibration(answers, by_id),
        by_type=_by_type(linkable, ranks, answers, types, ks) if types is not None else None,
    )


def latency_stats(predictions: Iterable[Prediction]) -> dict[str, LatencyStats]:
    """p50 and p95 of every stage's latency over the predictions that did not fail."""
    # A failed query returns early, so its timings would flatter the pipeline.
    samples: dict[str, list[float]] = {}
    for prediction in predictions:
        if prediction.error is not None:
            continue
        for stage, ms in prediction.latency_ms.items():
            samples.setdefault(stage, []).append(float(ms))
    # numpy's default: linear interpolation between order statistics
    return {stage: LatencyStats(p50=float(np.percentile(values, 50)), p95=float(np.percentile(values, 95)))
            for stage, values in sorted(samples.items())}


def _gold_map(gold: Mapping[str, str | None] | Sequence[LabeledQuery]) -> dict[str, str | None]:
    if isinstance(gold, Mapping):
        return dict(gold)
    return {example.id: example.answer for example in gold}


def _hits_mrr(ranks: list[int | None], ks: Sequence[int]) -> tuple[dict[str, float | None], float | None]:
    if not ranks:
        return {str(k): None for k in ks}, None
    hits = {str(k): sum(1 for r in ranks if r is not None and r <= k) / len(ranks) for k in ks}
    mrr = sum(1.0 / r for r in ranks if r is not None) / len(ranks)
    return hits, mrr


def _nil_metrics(answers: dict[str, str | None], by_id: dict[str, Prediction], n_linkable: int) -> NilMetrics | None:
    gold_nil = {qid for qid, answer in answers.items() if answer is None}
    if not gold_nil:
        return None
    pred_nil = {qid for qid in answers if qid in by_id and by_id[qid].nil and by_id[qid].error is None}
    true_nil = len(gold_nil & pred_nil)
    precision = true_nil / len(pred_nil) if pred_nil else 0.0
    recall = true_nil / len(gold_nil)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return NilMetrics(precision=precision, recall=recall, f1=f1, n_gold_nil=len(gold_nil),
                      n_pred_nil=len(pred_nil), n_linkable=n_linkable)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10
                               ) -> tuple[float, list[ReliabilityBin]]:
    """ECE over ``bins`` equal-width confidence bins (Σ share of answers × |accuracy − mean confidence|), and
    the bins of the reliability diagram."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        mean_conf = float(confidence[inside].mean()) if n else None
        accuracy = float(correct[inside].mean()) if n else None
        if n:
            ece += n / len(confidence) * abs(accuracy - mean_conf)
        out.append(ReliabilityBin(low=float(edges[b]), high=float(edges[b + 1]), n=n, confidence=mean_conf,
                                  accuracy=accuracy))
    return float(ece), out


def _calibration(answers: dict[str, str | None], by_id: dict[str, Prediction]) -> CalibrationMetrics | None:
    """ECE of the confidence against "the top-1 is the gold" (a NIL gold: never), over answered queries."""
    scored = [(p.confidence, bool(answers[qid] is not None and p.ranking and p.ranking[0].id == answers[qid]))
              for qid in answers if (p := by_id.get(qid)) is not None and p.error is None and p.confidence is not None]
    if not scored:
        return None
    confidence, correct = map(np.array, zip(*scored))
    ece, bins = expected_calibration_error(confidence, correct)
    return CalibrationMetrics(ece=ece, n=len(scored), bins=bins)


def _abstention(linkable: list[str], answers: dict[str, str | None], by_id: dict[str, Prediction],
                h1_after: float | None) -> AbstentionMetrics | None:
    """In-KB Hits@1 before and after NIL answers, when the run said NIL at all."""
    if not linkable or not any(p.nil for p in by_id.values()):
        return None
    right = sum(1 for qid in linkable if (p := by_id.get(qid)) is not None and p.error is None and p.ranking
                and p.ranking[0].id == answers[qid])
    nil_on_in_kb = sum(1 for qid in linkable if (p := by_id.get(qid)) is not None and p.error is None and p.nil)
    return AbstentionMetrics(h1_before_nil=right / len(linkable), h1_after_nil=h1_after or 0.0,
                             nil_on_in_kb=nil_on_in_kb)


def _by_type(linkable: list[str], ranks: dict[str, int | None], answers: dict[str, str | None],
             types: Mapping[str, str], ks: Sequence[int]) -> dict[str, TypeMetrics]:
    groups: dict[str, list[int | None]] = {}
    for qid in linkable:
        groups.setdefault(types.get(answers[qid] or "") or "unknown", []).append(ranks[qid])
    out: dict[str, TypeMetrics] = {}
    for name, group in sorted(groups.items()):
        hits, mrr = _hits_mrr(group, ks)
        out[name] = TypeMetrics(n=len(group), hits={k: v or 0.0 for k, v in hits.items()}, mrr=mrr or 0.0)
    return out
