"""Fitting the confidence calibrator on finished runs: a logistic model of "the top-1 is right" over the
confidence features each prediction recorded, and the NIL threshold with the best NIL F1 that costs the in-KB
answers at most a given share of Hits@1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from vplink.agent.confidence import FEATURES, Calibrator, KindModel, query_kind
from vplink.core.errors import VplinkError
from vplink.core.provenance import git_version
from vplink.eval.datasets import file_sha1, read_dataset
from vplink.eval.compare import load_run
from vplink.eval.metrics import expected_calibration_error


#: A NIL threshold whose NIL answers are wrong more often than right is not chosen: it would take away more
#: answers than it flags missing entities.
MIN_NIL_PRECISION = 0.5


class Row(BaseModel):
    """One prediction as the fit sees it: its features, whether its top-1 is right, whether its gold is NIL."""

    features: dict[str, float]
    correct: bool
    gold_nil: bool


class ThresholdChoice(BaseModel):
    """The NIL threshold chosen on a split with NIL answers, and what it does there."""

    threshold: float | None
    nil_precision: float
    nil_recall: float
    nil_f1: float
    h1_before: float
    h1_after: float


def run_rows(run: Path) -> tuple[list[Row], dict[str, Any]]:
    """The rows of a finished ``vplink eval`` run folder (its dataset is read again for the gold answers), and
    where they came from."""
    finished = load_run(run)  # refuses a folder without a readable metrics.json, with the fix
    metrics = finished.metrics
    dataset = Path(metrics["dataset"])
    # Only the gold answers are needed: pictures the run found with --images need not be found again here.
    gold = {e.id: e.answer for e in read_dataset(dataset, allow_missing_images=True).examples}
    rows = []
    for qid, prediction in finished.predictions.items():
        if prediction.error is not None or not prediction.ranking or qid not in gold:
            continue
        if not prediction.confidence_features:
            raise VplinkError(f"{run}: predictions without confidence features (made before vplink recorded "
                              "them). Fix: run the evaluation again with --restart")
        rows.append(Row(features=prediction.confidence_features, gold_nil=gold[qid] is None,
                        correct=gold[qid] is not None and prediction.ranking[0].id == gold[qid]))
    # The retrieve pipeline and the agent's default reranker both rank by the fused retrieval score.
    reranker = (metrics.get("versions") or {}).get("reranker") or "retrieval-score"
    source = {"run": str(run), "pipeline": metrics.get("pipeline"), "reranker": reranker, "dataset": str(dataset),
              "dataset_sha1": file_sha1(dataset), "rows": len(rows), "nil_rows": sum(r.gold_nil for r in rows)}
    return rows, source


def fit_calibrator(rows: Sequence[Row], *, reranker: str, max_h1_cost: float = 0.02, c: float = 1.0,
                   fitted_on: Sequence[dict[str, Any]] = ()) -> Calibrator:
    """A calibrator with one logistic model per kind of query in ``rows`` (with a mention, without); each one's
    NIL threshold is chosen on its rows with NIL answers (none: no threshold) for the best NIL F1 that costs
    in-KB Hits@1 at most ``max_h1_cost``."""
    kinds: dict[str, list[Row]] = {}
    for row in rows:
        kinds.setdefault(query_kind(row.features), []).append(row)
    models = {kind: fit_kind(group, max_h1_cost=max_h1_cost, c=c) for kind, group in sorted(kinds.items())
              if len({r.correct for r in group}) == 2}
    if not models:
        raise VplinkError("the runs hold no right (or no wrong) top-1 answer to calibrate on. Fix: add a run on a "
                          "split with both")
    return Calibrator(reranker=reranker, kinds=models,
                      fitted_on={"runs": list(fitted_on), "rows": {kind: len(group) for kind, group in kinds.items()},
                                 "max_h1_cost": max_h1_cost, "c": c, "code": git_version()})


def fit_kind(rows: Sequence[Row], *, max_h1_cost: float, c: float) -> KindModel:
    """The logistic model and NIL threshold of one kind of query."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([[r.features.get(name, 0.0) for name in FEATURES] for r in rows], dtype=np.float64)
    y = np.array([r.correct for r in rows])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    # A feature constant in the fit data (no faces on WikiMEL) adds nothing, and the model must not claim to
    # know queries where it differs.
    constant = {name: float(mean[j]) for j, name in enumerate(FEATURES) if scale[j] == 0}
    scale[scale == 0] = 1.0
    fitted = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y)
    model = KindModel(features=list(FEATURES), mean=mean.tolist(), scale=scale.tolist(), coef=fitted.coef_[0].tolist(),
                      intercept=float(fitted.intercept_[0]), constant=constant)
    confidences = np.array([model.probability(r.features) for r in rows])
    choice = choose_threshold(confidences, y, np.array([r.gold_nil for r in rows]), max_h1_cost=max_h1_cost)
    ece, _ = expected_calibration_error(confidences, y)
    return model.model_copy(update={"nil_threshold": choice.threshold if choice else None,
                                    "metrics": {"rows": len(rows), "nil_rows": sum(r.gold_nil for r in rows),
                                                "fit_ece": ece,
                                                "threshold_choice": choice.model_dump() if choice else None}})


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, gold_nil: np.ndarray, *,
                     max_h1_cost: float, min_precision: float = MIN_NIL_PRECISION) -> ThresholdChoice | None:
    """The threshold (answers under it are NIL) with the best NIL F1 whose in-KB Hits@1 cost is at most
    ``max_h1_cost`` and whose NIL answers are right at least ``min_precision`` of the time; None when no row has
    a NIL answer or no threshold qualifies."""
    if not gold_nil.any():
        return None
    in_kb = ~gold_nil
    h1_before = float(correct[in_kb].mean()) if in_kb.any() else 0.0
    best: ThresholdChoice | None = None
    for threshold in np.unique(np.concatenate([[0.0], confidence, [1.0 + 1e-9]])):
        said_nil = confidence < threshold
        h1_after = float((correct & ~said_nil)[in_kb].mean()) if in_kb.any() else 0.0
        if h1_before - h1_after > max_h1_cost + 1e-12:
            break  # raising the threshold only costs more from here
        hits = int((said_nil & gold_nil).sum())
        precision = hits / max(int(said_nil.sum()), 1)
        recall = hits / int(gold_nil.sum())
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        if precision >= min_precision and (best is None or f1 > best.nil_f1):
            best = ThresholdChoice(threshold=round(float(threshold), 6), nil_precision=precision, nil_recall=recall,
                                   nil_f1=f1, h1_before=h1_before, h1_after=h1_after)
    return best
