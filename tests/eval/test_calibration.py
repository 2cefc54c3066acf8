"""`vplink eval calibrate` on real runs: a plain dev slice and its KB-ablated copy, linked against a real store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vplink.agent.confidence import MENTION, Calibrator
from vplink.cli import app
from vplink.core.jsonl import read_jsonl, write_jsonl
from vplink.eval.ablation import ablate
from vplink.eval.calibration import run_rows
from vplink.retrieval.kb import load_kb
from vplink.retrieval.store import KBStore

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(shared_data: Path, text_encoder, tmp_path_factory) -> tuple[Path, Path]:
    """Retrieve runs on 60 dev mentions: against a slice holding their golds, and against the slice without the
    golds of a seeded 20 % of them (their answers null)."""
    folder = tmp_path_factory.mktemp("calibrate")
    dev = read_jsonl(shared_data / "wikimel" / "dev.jsonl")[:60]
    kb = read_jsonl(shared_data / "wikimel" / "kb.jsonl")
    wanted = {row["answer"] for row in dev}
    write_jsonl(folder / "kb.jsonl", [e for e in kb if e["id"] in wanted] + [e for e in kb if e["id"] not in wanted][:300])
    write_jsonl(folder / "dev.jsonl", dev)
    ablate(folder / "kb.jsonl", folder / "dev.jsonl", folder / "ablated", fraction=0.2, seed=0)
    out = []
    for name, kb_file, data in (("plain", folder / "kb.jsonl", folder / "dev.jsonl"),
                                ("ablated", folder / "ablated" / "kb.jsonl", folder / "ablated" / "dev.jsonl")):
        KBStore(folder / f"store-{name}").index(load_kb(kb_file).entities, text_encoder, progress=False)
        result = runner.invoke(app, ["eval", str(data), "--store", str(folder / f"store-{name}"), "-p", "retrieve",
                                     "--out", str(folder / f"run-{name}")])
        assert result.exit_code == 0, result.output
        out.append(folder / f"run-{name}")
    return out[0], out[1]


def test_calibrate_fits_a_loadable_calibration_on_the_runs(runs: tuple[Path, Path], tmp_path: Path) -> None:
    plain, ablated = runs
    rows, source = run_rows(ablated)
    assert len(rows) == 60 and source["nil_rows"] == sum(r.gold_nil for r in rows) > 0
    assert all(not r.correct for r in rows if r.gold_nil)  # a NIL gold is never a right top-1
    out = tmp_path / "calibration.json"
    result = runner.invoke(app, ["eval", "calibrate", str(plain), str(ablated), "--out", str(out)])
    assert result.exit_code == 0, result.output
    calibration = Calibrator.load(out)
    assert set(calibration.kinds) == {MENTION} and calibration.reranker == "retrieval-score"
    assert [run["run"] for run in calibration.fitted_on["runs"]] == [str(plain), str(ablated)]
    assert calibration.fitted_on["rows"] == {MENTION: 120}


def test_calibrate_refuses_a_folder_that_is_not_a_finished_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "calibrate", str(tmp_path), "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 2 and "metrics.json" in result.output and not (tmp_path / "c.json").exists()
