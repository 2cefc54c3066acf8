"""The `vplink distill` sub-app: train from the command line, and clear errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vplink.cli_distill import distill_app


def test_train_command_writes_a_loadable_scorer(rationales_path, small_store, feature_dir, tmp_path):
    out = tmp_path / "scorer"
    result = CliRunner().invoke(distill_app, ["train", str(rationales_path), "--store", str(small_store.location),
                                              "--out", str(out), "--epochs", "2", "--dev-fraction", "0.3",
                                              "--cache", str(feature_dir)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["epochs_run"] == 2 and summary["targets"] == "teacher"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    from vplink.distill.scorer import load_scorer

    config = json.loads((out / "config.json").read_text())
    # NIL is not the scorer's: its confidence comes from `vplink eval calibrate` on its runs, later
    assert "nil_threshold" not in config and load_scorer(out, store=small_store).calibrator is None


def test_annotate_command_reports_an_unreachable_server(small_store, tmp_path, shared_data):
    result = CliRunner().invoke(distill_app, [
        "annotate", str(shared_data / "wikimel" / "dev.jsonl"), "--store", str(small_store.location),
        "--llm-url", "http://127.0.0.1:9", "--out", str(tmp_path / "r.jsonl"), "--limit", "2"])
    assert result.exit_code != 0
    assert "no model server" in str(result.exception)


def test_candidates_command_writes_the_students_rows_and_resumes(small_store, dev_slice, tmp_path):
    """Real retrieval over real dev mentions: k candidates a row in retrieval order, no teacher; a rerun adds nothing."""
    from vplink.distill.train import load_rationales
    from vplink.core.jsonl import write_jsonl

    data = tmp_path / "dev12.jsonl"
    write_jsonl(data, dev_slice[:12])
    out = tmp_path / "cands.jsonl"
    args = ["candidates", str(data), "--store", str(small_store.location), "--out", str(out), "-k", "7"]
    first = CliRunner().invoke(distill_app, args)
    assert first.exit_code == 0, first.output
    records = load_rationales(out)
    assert [r.id for r in records] == [row["id"] for row in dev_slice[:12]]
    assert all(len(r.candidates) == 7 and not r.rationale and r.model == "none" for r in records)
    assert all([v.score for v in r.retrieval] == sorted((v.score for v in r.retrieval), reverse=True) for r in records)
    again = CliRunner().invoke(distill_app, args)
    assert again.exit_code == 0 and "0 candidate record(s) written" in again.output
    assert len(out.read_text().splitlines()) == 12
