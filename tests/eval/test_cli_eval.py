"""`vplink eval` through typer's CliRunner, mounted as the front door mounts it."""

from __future__ import annotations

import json
import sys

import pytest
import typer
from typer.testing import CliRunner

from tests.eval.conftest import FORMATS, WIKIMEL, NameMatchPredictor, name_match_runs
from vplink import cli_eval
from vplink.cli_eval import eval_app

DATASET = WIKIMEL / "with_images.jsonl"
runner = CliRunner()


@pytest.fixture(scope="module")
def app():
    root = typer.Typer()
    root.add_typer(eval_app, name="eval")

    @root.command()
    def version() -> None:  # a sibling command, so that "eval" is a real subgroup
        typer.echo("0")

    return root


@pytest.fixture
def builder(monkeypatch, kb_names):
    """Stand in for vplink.eval.pipelines.build_predictor with the name-matching predictor over the real KB."""
    calls = []

    def build(pipeline, settings, replay_from=None):
        calls.append((pipeline, settings, replay_from))
        return NameMatchPredictor(kb_names, k=settings.k)

    monkeypatch.setattr(cli_eval, "resolve_builder", lambda: build)
    return calls


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, kb_names):
    return tuple(name_match_runs(tmp_path_factory.mktemp("runs"), kb_names, {"k20": 20, "k1": 1}))


def test_compare_two_runs(app, two_runs):
    a, b = two_runs
    result = runner.invoke(app, ["eval", "compare", str(a), str(b)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "k20" in result.output and "k1" in result.output and "Hits@20" in result.output
    metrics_a = json.loads((a / "metrics.json").read_text())
    metrics_b = json.loads((b / "metrics.json").read_text())
    # k=1 keeps only the top entity: Hits@1 equal, Hits@20 down to Hits@1
    assert metrics_b["hits"]["1"] == metrics_a["hits"]["1"]
    drop = 100 * (metrics_a["hits"]["20"] - metrics_b["hits"]["20"])
    assert drop > 0 and f"(-{drop:.1f} pp)" in result.output
    assert "(+0.0 pp)" in result.output  # Hits@1 unchanged

    markdown = runner.invoke(app, ["eval", "compare", "--markdown", str(a), str(b)])
    assert markdown.exit_code == 0
    assert markdown.output.splitlines()[0] == "| metric | k20 (retrieve) | k1 (retrieve) |"
    assert any(line.startswith("| Hits@20 | ") and "pp)" in line for line in markdown.output.splitlines())


def test_compare_rejects_a_folder_that_is_not_a_run(app, two_runs, tmp_path):
    result = runner.invoke(app, ["eval", "compare", str(two_runs[0]), str(tmp_path)])
    assert result.exit_code == 2
    assert "metrics.json" in result.output and "Fix:" in result.output


@pytest.mark.parametrize("prefix", [[], ["run"]])
def test_eval_dataset_runs_the_default_command(app, builder, tmp_path, prefix):
    out = tmp_path / "run"
    args = ["eval", *prefix, str(DATASET), "--store", "stores/wikimel", "--pipeline", "retrieve", "--limit", "12",
            "--sample-seed", "3", "-k", "5", "--concurrency", "2", "--batch-size", "4", "--kb",
            str(WIKIMEL / "kb.jsonl"), "--out", str(out)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    [(pipeline, settings, replay_from)] = builder
    assert (pipeline, settings.store, settings.k, replay_from) == ("retrieve", "stores/wikimel", 5, None)
    assert settings.llm_url is None and settings.scorer is None and settings.vision is False
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 12 and metrics["pipeline"] == "retrieve"
    assert (out / "report.md").exists() and (out / "hits.png").exists()
    report = (out / "report.md").read_text()
    assert "| sample\\_seed | 3 |" in report and "| k | 5 |" in report
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(len(row["ranking"]) <= 5 for row in rows)
    assert "Hits@1" in result.output


def test_options_before_the_dataset(app, builder, tmp_path):
    result = runner.invoke(app, ["eval", "--pipeline", "rerank", "--store", "s", "--limit", "2", str(DATASET),
                                 "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert builder[0][0] == "rerank"


def test_unknown_pipeline_is_a_clear_error(app, builder, tmp_path):
    result = runner.invoke(app, ["eval", str(DATASET), "--store", "s", "--pipeline", "magic", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "magic" in result.output and "retrieve" in result.output and "agent" in result.output
    assert builder == []


def test_bad_dataset_is_a_clear_error(app, builder, tmp_path):
    result = runner.invoke(app, ["eval", str(FORMATS / "vpwiki_test_sample.json"), "--store", "s", "--pipeline",
                                 "agent", "--out", str(tmp_path)], terminal_width=300)
    assert result.exit_code == 2
    assert "vpwiki_test_sample.json" in result.output and "--allow-missing-images" in result.output
    ok = runner.invoke(app, ["eval", str(FORMATS / "vpwiki_test_sample.json"), "--store", "s", "--pipeline", "agent",
                             "--allow-missing-images", "--out", str(tmp_path / "vp")])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "vp" / "metrics.json").read_text())["n"] == 8


def test_missing_pipelines_module_is_named(app, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vplink.eval.pipelines", None)  # as if eval/pipelines.py were absent
    result = runner.invoke(app, ["eval", str(DATASET), "--store", "s", "--pipeline", "retrieve", "--out",
                                 str(tmp_path)], terminal_width=200)
    assert result.exit_code == 2 and "eval/pipelines.py" in result.output


def test_a_bad_line_stops_eval_naming_it_and_skip_invalid_runs_the_rest(app, builder, tmp_path):
    # Issue 20: a missing answer was a silent NIL gold and a box far outside its picture ran unchecked.
    photo = str(WIKIMEL.parent / "people" / "images" / "two_people.jpg")
    rows = [{"id": "ok", "image": photo, "box": [0, 0, 250, 301], "text": "Barack Obama", "mention": "Barack Obama",
             "answer": "Q76"},
            {"id": "no-answer", "image": photo, "box": None, "text": "Joe Biden", "mention": "Joe Biden"},
            {"id": "far", "image": photo, "box": [0, 0, 100000, 100000], "text": "t", "mention": "Obama",
             "answer": "Q76"}]
    dataset = tmp_path / "d.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    args = ["eval", str(dataset), "--store", "s", "--pipeline", "retrieve"]
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "a")], terminal_width=300)
    assert refused.exit_code == 2 and builder == []
    assert "line 2, record 'no-answer', field 'answer'" in refused.output
    ran = runner.invoke(app, [*args, "--skip-invalid", "--out", str(tmp_path / "b")], terminal_width=300)
    assert ran.exit_code == 0, ran.output
    assert "skipped" in ran.output and "line 3, record 'far', field 'box'" in ran.output
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["n"] == 1 and "nil" not in metrics  # no NIL gold was made up
