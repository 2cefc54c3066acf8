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

    assert load_scorer(out, store=small_store).nil_threshold is not None


def test_annotate_command_reports_an_unreachable_server(small_store, tmp_path, shared_data):
    result = CliRunner().invoke(distill_app, [
        "annotate", str(shared_data / "wikimel" / "dev.jsonl"), "--store", str(small_store.location),
        "--llm-url", "http://127.0.0.1:9", "--out", str(tmp_path / "r.jsonl"), "--limit", "2"])
    assert result.exit_code != 0
    assert "no model server" in str(result.exception)
