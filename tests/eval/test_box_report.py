"""The VP-MEL box report: measures from a run folder's predictions and the dataset's hidden mentions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vplink.core.records import LabeledQuery
from vplink.eval.box_report import BOX_REPORT, write_box_report
from vplink.core.rundir import RunDirError
from vplink.eval.harness import PREDICTIONS


def _prediction(qid: str, top: str, spans: list[str], probabilities: list[float]) -> dict:
    return {"id": qid, "ranking": [{"id": top, "score": 1.0, "name": top}], "latency_ms": {"prepare": 1000.0},
            "extra": {"alignment": {"spans": spans, "probabilities": probabilities}}}


def test_box_report_counts_spans_alignment_hits_and_differing_boxes(tmp_path: Path) -> None:
    examples = [LabeledQuery(id="a", image="p.jpg", text="A and B", mention="Ann Lee", answer="Q1"),
                LabeledQuery(id="b", image="p.jpg", text="A and B", mention="Bo", answer="Q2"),
                LabeledQuery(id="c", image="q.jpg", text="C", mention="Cy", answer="Q3")]
    rows = [_prediction("a", "Q1", ["Ann Lee", "Bo"], [0.7, 0.3]),   # right span, right entity
            _prediction("b", "Q1", ["Ann Lee", "Bo"], [0.6, 0.4]),   # wrong span, wrong entity
            _prediction("c", "Q9", ["Dee"], [1.0])]                   # mention not among the spans
    rows[0]["extra"]["choice"] = {"person": "Bo", "reason": ""}           # the model disagrees, wrongly
    rows[1]["extra"]["notes"] = ["the model chose Bo: the second face"]   # an older run: only the note
    (tmp_path / PREDICTIONS).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = write_box_report(tmp_path, examples)
    assert report["span_recall"] == round(2 / 3, 4) and report["box_to_span_accuracy"] == round(1 / 3, 4)
    assert report["hits@1"] == round(1 / 3, 4) and report["multi_box_pictures"] == 1
    assert report["pictures_where_boxes_differ"] == 0.0  # both boxes on p.jpg got Q1
    assert report["seconds_per_box"]["prepare"]["mean"] == 1.0
    assert report["model_choice"] == {"asked": 2, "right": 1, "disagreed_with_alignment": 2,
                                      "right_where_disagreed": 1, "alignment_right_where_disagreed": 1}
    assert json.loads((tmp_path / BOX_REPORT).read_text(encoding="utf-8")) == report


def test_box_report_of_a_folder_without_a_run_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="Fix: make the run first"):
        write_box_report(tmp_path / "missing", [])
    assert not (tmp_path / "missing").exists()
