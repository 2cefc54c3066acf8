"""Run folders that cannot silently mix settings, gold answers outside the KB, and reports that never run data as HTML."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tests.eval.conftest import WIKIMEL, NameMatchPredictor
from vplink import cli_eval
from vplink.cli_eval import eval_app
from vplink.eval.compare import load_run
from vplink.eval.datasets import load_dataset
from vplink.eval.display import run_html
from vplink.eval.error_analysis import ErrorAnalysis
from vplink.core.rundir import RunDirError
from vplink.eval.harness import run_eval

DATASET = WIKIMEL / "with_images.jsonl"
runner = CliRunner()


@pytest.fixture(scope="module")
def examples():
    return load_dataset(DATASET)


@pytest.fixture(scope="module")
def app():
    root = typer.Typer()
    root.add_typer(eval_app, name="eval")
    root.command()(lambda: None)
    return root


@pytest.fixture
def builder(monkeypatch, kb_names):
    """The name-matching predictor over the real KB in place of the pipelines (it counts what it is asked)."""
    built = []

    def build(pipeline, settings, replay_from=None):
        built.append(NameMatchPredictor(kb_names, k=settings.k))
        return built[-1]

    monkeypatch.setattr(cli_eval, "resolve_builder", lambda: build)
    return built


def _eval(app, out, *extra):
    args = ["eval", str(DATASET), "--pipeline", "retrieve", "--limit", "6", "--out", str(out), *extra]
    return runner.invoke(app, args, terminal_width=300)


def test_resuming_with_another_store_or_k_is_refused(app, builder, tmp_path):
    out = tmp_path / "run"
    assert _eval(app, out, "--store", "stores/a", "-k", "20").exit_code == 0
    again = _eval(app, out, "--store", "stores/a", "-k", "20")
    assert again.exit_code == 0 and builder[-1].seen == []  # same settings: every query resumed, none redone
    other_store = _eval(app, out, "--store", "stores/b", "-k", "20")
    assert other_store.exit_code == 2
    assert "settings.store:" in other_store.output and "stores/a' -> '" in other_store.output
    assert "stores/b'" in other_store.output and "--restart" in other_store.output
    other_k = _eval(app, out, "--store", "stores/a", "-k", "5")
    assert other_k.exit_code == 2 and "settings.k: 20 -> 5" in other_k.output
    restarted = _eval(app, out, "--store", "stores/b", "-k", "5", "--restart")
    assert restarted.exit_code == 0, restarted.output
    assert len(builder[-1].seen) == 6
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(row["ranking"]) <= 5 for row in rows)


def test_resuming_with_another_model_is_refused(tmp_path, examples, kb_names):
    class OtherModel(NameMatchPredictor):
        versions = {"models": {"ranker": "name-match-test-v2"}}

    common = {"pipeline": "retrieve", "dataset": str(DATASET), "progress": False}
    run_eval(examples[:3], NameMatchPredictor(kb_names), tmp_path, **common)
    with pytest.raises(RunDirError, match=r"predictor\.models\.ranker: 'name-match-test' -> 'name-match-test-v2'"):
        run_eval(examples[:3], OtherModel(kb_names), tmp_path, **common)


def test_unknown_gold_is_reported(tmp_path, examples, kb_names):
    missing = examples[0].answer
    kb_ids = set(kb_names) - {missing}
    result = run_eval(examples[:10], NameMatchPredictor(kb_names), tmp_path, pipeline="retrieve",
                      dataset=str(DATASET), kb_ids=kb_ids, progress=False)
    queries = sum(1 for e in examples[:10] if e.answer == missing)
    assert result["unknown_gold"] == {"queries": queries, "ids": [missing]}
    assert json.loads((tmp_path / "metrics.json").read_text())["unknown_gold"]["ids"] == [missing]
    report = (tmp_path / "report.md").read_text()
    assert "### Gold answers not in the KB" in report and f"`{missing}`" in report


def test_kb_without_the_gold_is_refused_unless_allowed(app, builder, tmp_path, examples):
    missing = {e.answer for e in examples[:6]}
    kb = tmp_path / "kb.jsonl"
    with open(WIKIMEL / "kb.jsonl", encoding="utf-8") as source, open(kb, "w", encoding="utf-8") as target:
        target.writelines(line for line in source if json.loads(line)["id"] not in missing)
    refused = _eval(app, tmp_path / "run", "--store", "s", "--kb", str(kb))
    assert refused.exit_code == 2
    assert "6 of 6 gold answers" in refused.output and "--allow-unknown-gold" in refused.output
    assert builder == [] and not (tmp_path / "run" / "predictions.jsonl").exists()
    allowed = _eval(app, tmp_path / "run", "--store", "s", "--kb", str(kb), "--allow-unknown-gold")
    assert allowed.exit_code == 0, allowed.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["unknown_gold"] == {"queries": 6, "ids": sorted(missing)}


def test_report_never_makes_data_live_html(tmp_path, examples, kb_names):
    script = "<script>alert('x')</script> [click](javascript:alert(1)) *bold* | `tick`"
    first = examples[0]
    names = {**kb_names, first.answer: script}
    hostile = [first.model_copy(update={"mention": script, "text": "<img src=x onerror=alert(1)>"}), *examples[1:4]]

    class WrongFirst(NameMatchPredictor):
        """Ranks the gold of the first query second, so that it is listed among the worst errors."""

        def predict(self, batch):
            out = super().predict(batch)
            for prediction in out:
                prediction.ranking.reverse()
            return out

    run_eval(hostile, WrongFirst(names), tmp_path, pipeline="<b>pipe</b>", dataset=str(DATASET),
             entity_names=names, settings={"note": "<iframe src=evil>"}, progress=False)
    report = (tmp_path / "report.md").read_text()
    # Rendered as a markdown viewer would (CommonMark with tables): data shows as text, never as markup.
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").enable("table").render(report)
    for live in ("<script", "<img", "<iframe", "<b>", 'href="javascript', "<em>bold"):
        assert live not in rendered
    assert "&lt;script&gt;alert" in rendered and "&lt;iframe src=evil&gt;" in rendered and "*bold*" in rendered
    analysis = ErrorAnalysis.model_validate_json((tmp_path / "errors.json").read_text(encoding="utf-8"))
    listed = {item.query_id: item for item in analysis.worst}
    assert listed[first.id].mention == script  # errors.json keeps the data as it is; each view escapes it
    page = run_html(load_run(tmp_path))
    assert "<script>" not in page and "&lt;script&gt;" in page and "&amp;lt;" not in page
