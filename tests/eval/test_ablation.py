"""KB ablation on real WikiMEL files: the removed golds leave the KB, their mentions become NIL, nothing else
changes, the pick is seeded, and pictures stay reachable from the new folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vplink.core.errors import InputFileError, VplinkError
from vplink.core.jsonl import read_jsonl
from vplink.eval.ablation import ablate
from vplink.eval.datasets import read_dataset
from vplink.cli import app


@pytest.fixture(scope="module")
def wikimel(shared_data: Path) -> tuple[Path, Path]:
    return shared_data / "wikimel" / "kb.jsonl", shared_data / "wikimel" / "with_images.jsonl"


def test_ablation_removes_golds_and_makes_their_mentions_nil(wikimel, tmp_path: Path) -> None:
    kb, dataset = wikimel
    done = ablate(kb, dataset, tmp_path / "a", fraction=0.2, seed=0)
    before, after = read_jsonl(dataset), read_jsonl(tmp_path / "a" / dataset.name)
    kept = {row["id"] for row in read_jsonl(tmp_path / "a" / "kb.jsonl")}
    removed = set(done.removed_entities)
    assert removed and not removed & kept and len(kept) == done.entities_after == done.entities_before - len(removed)
    assert done.sampled_mentions == round(0.2 * len(before))
    for old, new in zip(before, after):
        assert new["answer"] == (None if old["answer"] in removed else old["answer"])
        assert {k: v for k, v in new.items() if k not in ("answer", "image")} == \
               {k: v for k, v in old.items() if k not in ("answer", "image")}
    assert done.nil_mentions == sum(row["answer"] is None for row in after) >= len(removed)
    # the pictures are found from the new folder: the dataset reads without --images
    examples = read_dataset(tmp_path / "a" / dataset.name).examples
    assert all(Path(e.image).is_file() for e in examples if e.image)
    record = json.loads((tmp_path / "a" / "ablation.json").read_text())
    assert record["seed"] == 0 and record["removed_entities"] == done.removed_entities and record["kb_sha1"]


def test_the_pick_is_seeded(wikimel, tmp_path: Path) -> None:
    kb, dataset = wikimel
    first = ablate(kb, dataset, tmp_path / "a", seed=0).removed_entities
    assert ablate(kb, dataset, tmp_path / "b", seed=0).removed_entities == first
    assert ablate(kb, dataset, tmp_path / "c", seed=1).removed_entities != first


def test_bad_input_names_the_fix(wikimel, tmp_path: Path) -> None:
    kb, dataset = wikimel
    with pytest.raises(VplinkError, match="--fraction 1.5 is not between 0 and 1"):
        ablate(kb, dataset, tmp_path / "x", fraction=1.5)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "answer": "Q76"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputFileError, match="line 2.*not a JSON object"):
        ablate(kb, broken, tmp_path / "y")
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"id": "a", "answer": "Q-not-there"}\n', encoding="utf-8")
    with pytest.raises(VplinkError, match="no mention's answer is an entity"):
        ablate(kb, foreign, tmp_path / "z")


def test_kb_ablate_command(wikimel, tmp_path: Path) -> None:
    kb, dataset = wikimel
    result = CliRunner().invoke(app, ["kb", "ablate", str(kb), "--dataset", str(dataset), "--out", str(tmp_path),
                                      "--fraction", "0.2", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert "mentions now answer NIL" in result.output and (tmp_path / "kb.jsonl").is_file()
