"""The harness end to end on real WikiMEL mentions with a small real name-matching predictor."""

from __future__ import annotations

import json

import numpy as np

import pytest
from PIL import Image

from vplink.core.records import LabeledQuery, LinkQuery, RankedEntity
from vplink.eval.datasets import load_dataset
from vplink.eval.error_analysis import classify_error
from vplink.core.rundir import RunDirError
from vplink.eval.harness import read_predictions, run_eval
from vplink.eval.metrics import Prediction, expected_calibration_error
from tests.eval.conftest import WIKIMEL, NameMatchPredictor

DATASET = WIKIMEL / "with_images.jsonl"
KEYS = {"pipeline", "dataset", "hits", "mrr", "recall_at_candidates", "n", "latency_ms", "throughput_qps",
        "versions", "errors"}


@pytest.fixture(scope="module")
def examples():
    return load_dataset(DATASET)


def run(examples, predictor, out, **kwargs):
    options = {"pipeline": "name-match", "dataset": str(DATASET), "versions": {"prompts": {"describe": "abc"}},
               "progress": False, **kwargs}
    return run_eval(examples, predictor, out, **options)


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_end_to_end_writes_metrics_report_plot(tmp_path, examples, kb_names):
    predictor = NameMatchPredictor(kb_names)
    result = run(examples, predictor, tmp_path, entity_names=kb_names, batch_size=8)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == KEYS and metrics == json.loads(json.dumps(result))
    assert set(metrics["hits"]) == {"1", "3", "5", "10", "20"} and metrics["n"] == 69
    # Hits@1 recomputed here from the predictions file, independently of vplink.eval.metrics
    rows = {row["id"]: row for row in lines(tmp_path / "predictions.jsonl")}
    top1 = sum(1 for e in examples if rows[e.id]["ranking"] and rows[e.id]["ranking"][0]["id"] == e.answer)
    assert metrics["hits"]["1"] == pytest.approx(top1 / 69)
    assert 0.5 < metrics["hits"]["1"] <= metrics["hits"]["5"] <= metrics["hits"]["20"] <= 1.0
    assert metrics["versions"]["models"] == {"ranker": "name-match-test"}  # from the predictor
    assert metrics["versions"]["prompts"] == {"describe": "abc"}  # from the caller
    assert metrics["versions"]["data"]["dataset_sha1"] and "git_commit" in metrics["versions"]["code"]
    assert "avx2" in metrics["versions"]["code"]["cpu"]["simd"]  # the CPU beside git_dirty, as every benchmark
    assert set(metrics["latency_ms"]) == {"retrieve", "total"} and metrics["throughput_qps"] > 0

    report = (tmp_path / "report.md").read_text()
    assert "| Hits@1 |" in report and "counts as a miss" in report and "## Where the errors come from" in report
    # "Scott" (Randolph Scott) is a one-word mention this ranker gets wrong
    assert "surname-only mention" in report and '"Scott"' in report and "Randolph Scott" in report
    with Image.open(tmp_path / "hits.png") as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_predictor_never_sees_answers(tmp_path, examples, kb_names):
    predictor = NameMatchPredictor(kb_names)
    run(examples[:10], predictor, tmp_path, batch_size=3, concurrency=2)
    assert len(predictor.seen) == 10
    assert all(type(q) is LinkQuery and not hasattr(q, "answer") for q in predictor.seen)


class InterruptAfter(NameMatchPredictor):
    """Answers `calls` batches, then raises KeyboardInterrupt as a user's Ctrl-C would."""

    def __init__(self, names, calls):
        super().__init__(names)
        self.calls = calls

    def predict(self, batch):
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return super().predict(batch)


def test_resume_after_interrupt_skips_done_ids_and_drops_torn_line(tmp_path, examples, kb_names):
    with pytest.raises(KeyboardInterrupt):
        run(examples, InterruptAfter(kb_names, calls=2), tmp_path, batch_size=5, concurrency=1)
    done = [row["id"] for row in lines(tmp_path / "predictions.jsonl")]
    assert done == [e.id for e in examples[:10]]
    assert not (tmp_path / "metrics.json").exists()
    with open(tmp_path / "predictions.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"id": "' + examples[10].id + '", "ranking": [{"id": "Q')  # torn by a crash

    second = NameMatchPredictor(kb_names)
    result = run(examples, second, tmp_path, batch_size=5, concurrency=3)
    seen = [q.id for q in second.seen]
    assert sorted(seen) == sorted(e.id for e in examples[10:])  # the torn one is redone, done ones are not
    rows = lines(tmp_path / "predictions.jsonl")
    assert len(rows) == 69 and {r["id"] for r in rows} == {e.id for e in examples}
    assert result["n"] == 69 and result["errors"] == 0

    fresh = run(examples, NameMatchPredictor(kb_names), tmp_path / "fresh")
    assert fresh["hits"] == result["hits"] and fresh["mrr"] == result["mrr"]


class FailsOn(NameMatchPredictor):
    """Raises on one mention (a real failure mode: one bad query in a batch)."""

    def __init__(self, names, mention):
        super().__init__(names)
        self.mention = mention

    def predict(self, batch):
        if any(q.mention == self.mention for q in batch):
            raise ValueError(f"cannot link {self.mention}")
        return super().predict(batch)


def test_failed_query_is_recorded_as_error_and_miss_alone(tmp_path, examples, kb_names):
    result = run(examples, FailsOn(kb_names, "Barton MacLane"), tmp_path, batch_size=8)
    assert result["errors"] == 1
    predictions = read_predictions(tmp_path / "predictions.jsonl")
    assert predictions["735-0"].error == "ValueError: cannot link Barton MacLane"
    # the other seven queries of its batch were retried alone and succeeded
    assert all(predictions[e.id].error is None for e in examples[1:8])
    good = run(examples, NameMatchPredictor(kb_names), tmp_path / "good")
    assert result["hits"]["1"] == pytest.approx(good["hits"]["1"] - 1 / 69)  # 735-0 is a hit when it works
    assert "failed" in (tmp_path / "report.md").read_text()

    # --retry-errors predicts only the failed query again
    retry = NameMatchPredictor(kb_names)
    again = run(examples, retry, tmp_path, retry_errors=True)
    assert [q.id for q in retry.seen] == ["735-0"] and again["errors"] == 0 and again["hits"] == good["hits"]


class Forgetful(NameMatchPredictor):
    def predict(self, batch):
        return super().predict(batch)[1:]


def test_missing_prediction_is_an_error(tmp_path, examples, kb_names):
    result = run(examples[:6], Forgetful(kb_names), tmp_path, batch_size=3)
    assert result["errors"] == 2  # the first query of each batch of 3


def test_resume_refuses_another_pipeline(tmp_path, examples, kb_names):
    run(examples[:4], NameMatchPredictor(kb_names), tmp_path)
    with pytest.raises(RunDirError, match="pipeline: .name-match. -> .other.*--restart"):
        run(examples[:4], NameMatchPredictor(kb_names), tmp_path, pipeline="other")
    redo = NameMatchPredictor(kb_names)
    run(examples[:4], redo, tmp_path, pipeline="other", resume=False)
    assert len(redo.seen) == 4 and len(lines(tmp_path / "predictions.jsonl")) == 4


class NilBelow(NameMatchPredictor):
    """Answers NIL unless the top name matches the mention exactly (score >= 1); its confidence is the score."""

    def predict(self, batch):
        out = super().predict(batch)
        for p in out:
            p.nil = not p.ranking or p.ranking[0].score < 1.0
            p.confidence = min(p.ranking[0].score, 1.0) if p.ranking else None
        return out


def test_nil_abstention_calibration_and_types_appear_when_present(tmp_path, examples, kb_names):
    # Two real mentions made NIL by taking their gold out of the answer set.
    subset = [e.model_copy(update={"answer": None}) if i < 2 else e for i, e in enumerate(examples[:12])]
    types = {e.answer: ("group-a" if i % 2 else "group-b") for i, e in enumerate(subset) if e.answer}
    result = run(subset, NilBelow(kb_names), tmp_path, types=types)
    extra = {"nil", "abstention", "calibration", "by_type"}
    assert extra <= set(result) and set(result) == KEYS | extra
    assert result["nil"]["n_gold_nil"] == 2 and set(result["by_type"]) == {"group-a", "group-b"}
    # what NIL cost: in-KB answers called NIL are misses after, and only after
    cost = result["abstention"]
    assert cost["h1_after_nil"] == result["hits"]["1"] and cost["h1_before_nil"] >= cost["h1_after_nil"]
    assert (cost["h1_before_nil"] > cost["h1_after_nil"]) == (cost["nil_on_in_kb"] > 0)
    calibration = result["calibration"]
    assert calibration["n"] == 12 and len(calibration["bins"]) == 10 and 0 <= calibration["ece"] <= 1
    assert sum(b["n"] for b in calibration["bins"]) == 12
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "What NIL costs the in-KB queries" in report and "Expected calibration error" in report


def test_expected_calibration_error_is_zero_when_confidence_is_accuracy():
    confidence = np.array([0.25] * 4 + [0.75] * 4)
    right = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=bool)
    ece, bins = expected_calibration_error(confidence, right)
    assert ece == pytest.approx(0.0) and [b.n for b in bins if b.n] == [4, 4]
    ece, _ = expected_calibration_error(np.full(8, 0.95), right)
    assert ece == pytest.approx(0.95 - 4 / 8)


def test_classify_error_classes():
    names = {"Q1": "John Smith", "Q2": "John Smith", "Q3": "Ann Lee"}
    q = LabeledQuery(id="a", text="t", mention="Smith", answer="Q1")
    ranked = lambda *ids: [RankedEntity(id=i, score=1.0) for i in ids]  # noqa: E731
    assert classify_error(q, Prediction(id="a", ranking=ranked("Q1")), names) is None
    assert classify_error(q, Prediction(id="a", ranking=ranked("Q2", "Q1")), names) == "same-name confusion"
    assert classify_error(q, Prediction(id="a", ranking=ranked("Q3")), names) == "gold not retrieved"
    assert classify_error(q, Prediction(id="a", ranking=ranked("Q3", "Q1")), names) == "surname-only mention"
    full = q.model_copy(update={"mention": "Mr Smith"})
    assert classify_error(full, Prediction(id="a", ranking=ranked("Q3", "Q1")), names) == "other"
    assert classify_error(q, Prediction(id="a", error="x"), names) == "failed"
    assert classify_error(q, Prediction(id="a", ranking=ranked("Q1"), nil=True), names) == "called NIL"
    nil = q.model_copy(update={"answer": None})
    assert classify_error(nil, Prediction(id="a", ranking=ranked("Q1")), names) == "linked a NIL query"
    assert classify_error(nil, Prediction(id="a", nil=True), names) is None
