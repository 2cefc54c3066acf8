"""Training on real labels (gold answers, and the real teacher's records), resume, save/load, the scorer."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from vplink.agent.reranker import Reranker
from vplink.core.records import LinkQuery
from vplink.distill.features import FeatureCache
from vplink.distill.scorer import ScorerLoadError, load_scorer
from vplink.distill.train import load_rationales, train
from tests.distill.conftest import gold_config


def _metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_gold_training_learns_and_never_ships_below_retrieval(gold_student, candidates_path, train_gold):
    from vplink.distill.train import is_dev

    out, summary = gold_student
    rows = _metrics(out)
    assert rows[0]["epoch"] == 0 and rows[0]["train_loss"] is None
    assert summary["metric"] == "gold_hits@1" and summary["targets"] == "gold"
    # The untrained student is retrieval: its dev top-1 is retrieval's, counted here from the fixture itself.
    config = gold_config()
    dev = [json.loads(line) for line in candidates_path.read_text().splitlines()
           if is_dev(json.loads(line)["id"], config.dev_fraction, config.seed)]
    dev = [r for r in dev if train_gold.get(r["id"]) in r["candidates"]]
    assert rows[0]["dev"]["agreement"] == pytest.approx(sum(r["candidates"][0] == train_gold[r["id"]] for r in dev) / len(dev))
    assert summary["dev"]["agreement"] >= rows[0]["dev"]["agreement"]  # model selection never ships worse
    assert rows[-1]["train_loss"]["total"] < rows[1]["train_loss"]["total"]
    assert summary["parameters"] < 10_000_000
    assert set(load_file(str(out / "model.safetensors")))  # plain tensors, no pickle


def test_teacher_training_writes_a_scorer_with_its_provenance(teacher_student):
    out, summary = teacher_student
    config = json.loads((out / "config.json").read_text())
    assert summary["targets"] == "teacher" and summary["metric"] == "teacher_agreement"
    assert config["teacher_models"] == ["qwen2.5-coder-1.5b-instruct"] and config["prompt_versions"]
    assert "nil_threshold" not in config  # NIL comes from `vplink eval calibrate` on the scorer's runs
    assert [r["epoch"] for r in _metrics(out)] == [0, 1, 2, 3]


def test_rerun_resumes_instead_of_retraining(gold_student, candidates_path, train_gold, fixture_entities,
                                             feature_dir, text_encoder, tmp_path):
    src, first = gold_student
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = len(_metrics(out))
    again = train(candidates_path, fixture_entities, out, gold=train_gold, config=gold_config(),
                  cache_dir=feature_dir, text_encoder=text_encoder, progress=False)
    assert len(_metrics(out)) == before and again["best_epoch"] == first["best_epoch"]  # nothing retrained
    more = train(candidates_path, fixture_entities, out, gold=train_gold, config=gold_config(), cache_dir=feature_dir,
                 text_encoder=text_encoder, progress=False, epochs=9)
    assert len(_metrics(out)) == before + 1 and more["epochs_run"] == 9  # one more epoch, from the checkpoint


def test_save_load_roundtrip_scores_like_training(teacher_student, rationales_path, fixture_entities, text_encoder):
    from vplink.core.records import Candidate, ViewHit

    out, _ = teacher_student
    scorer = load_scorer(out, text_encoder=text_encoder)
    assert isinstance(scorer, Reranker)
    rec = load_rationales(rationales_path)[0]
    cands = [Candidate(id=v.id, name=v.name, score=v.score, hits={c: ViewHit(**h) for c, h in v.hits.items()},
                       entity=fixture_entities.get(v.id)) for v in rec.retrieval]
    query = LinkQuery(id=rec.id, text=rec.text, mention=rec.mention)
    scores = scorer.score(query, None, "", cands)
    assert len(scores) == len(cands) and all(isinstance(s, float) for s in scores)
    # the same query through the training path gives the same scores
    from vplink.distill.data import MODEL_KEYS, build_tensors

    t = build_tensors([rec], fixture_entities, FeatureCache(text_encoder), k=len(cands))
    with torch.no_grad():
        ref = scorer.model({k: t.data[k] for k in MODEL_KEYS})["fused"][0].tolist()
    assert scores == pytest.approx(ref, abs=1e-4)


def test_a_scorer_folder_with_a_calibration_gives_confidence_and_nil(teacher_student, people_store, shared_data,
                                                                     text_encoder, tmp_path):
    """calibration.json beside the weights (fitted here on the scorer's own answers to real dev mentions) is the
    one `decide` reads; a configured threshold wins over its own."""
    import shutil

    from vplink.agent.confidence import confidence_features
    from vplink.core.jsonl import read_jsonl
    from vplink.distill.scorer import CALIBRATION
    from vplink.eval.calibration import Row, fit_calibrator
    from vplink.wiring import open_linker

    out, _ = teacher_student
    scorer = load_scorer(out, text_encoder=text_encoder)
    linker = open_linker(store=people_store, reranker=scorer, k=10, nil=False)
    rows = []
    for row in read_jsonl(shared_data / "wikimel" / "dev.jsonl")[:40]:
        result = linker.link(text=row["text"], mention=row["mention"])
        rows.append(Row(features=confidence_features(result.ranking, mention=row["mention"]), gold_nil=False,
                        correct=result.ranking[0].id == row["answer"]))
    assert len({r.correct for r in rows}) == 2, "the slice must hold right and wrong answers to fit on"
    calibrated = tmp_path / "scorer"
    shutil.copytree(out, calibrated)
    fit_calibrator(rows, reranker=scorer.name).save(calibrated / CALIBRATION)
    scorer = load_scorer(calibrated, text_encoder=text_encoder)
    assert scorer.calibrator is not None and scorer.calibrator.reranker == scorer.name
    row = read_jsonl(shared_data / "wikimel" / "dev.jsonl")[0]
    result = open_linker(store=people_store, reranker=scorer, k=10).link(text=row["text"], mention=row["mention"])
    assert result.confidence is not None and not result.nil  # no NIL rows in the fit: no threshold of its own
    forced = open_linker(store=people_store, reranker=scorer, k=10, nil_threshold=1.0)
    assert forced.link(text=row["text"], mention=row["mention"]).nil


def test_load_scorer_errors_name_the_problem(tmp_path, teacher_student):
    with pytest.raises(ScorerLoadError, match="no scorer folder"):
        load_scorer(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(teacher_student[0], broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ScorerLoadError, match="cannot load the scorer weights"):
        load_scorer(broken)
    (broken / "config.json").write_text("{")
    with pytest.raises(ScorerLoadError, match="not valid JSON"):
        load_scorer(broken)
    (broken / "config.json").unlink()
    with pytest.raises(ScorerLoadError, match="config.json"):
        load_scorer(broken)


def test_feature_cache_reuses_disk_shards(text_encoder, tmp_path):
    first = FeatureCache(text_encoder, tmp_path)
    a = first.encode(["Barack Obama", "Paris"])
    assert len(list(tmp_path.glob("features-*.safetensors"))) == 1
    second = FeatureCache(text_encoder, tmp_path)
    assert len(second) == 2
    b = second.encode(["Paris", "Barack Obama"])
    assert (b[::-1] == a).all()
    assert len(list(tmp_path.glob("features-*.safetensors"))) == 1  # nothing new encoded


def test_rationales_join_as_a_second_target_only(candidates_path, rationales_path, fixture_entities, feature_dir,
                                                 text_encoder):
    """The teacher's rationales reach the rows it annotated as a target; the model's inputs never hold them."""
    from vplink.distill.data import MODEL_KEYS, build_tensors
    from vplink.distill.train import with_rationales

    records = load_rationales(candidates_path)
    teacher = {r.id: r for r in load_rationales(rationales_path)}
    merged = with_rationales(records, list(teacher.values()))
    assert [r.id for r in merged] == [r.id for r in records]
    for rec in merged:
        assert rec.rationale == (teacher[rec.id].rationale if rec.id in teacher else "")
    tensors = build_tensors(merged, fixture_entities, FeatureCache(text_encoder, feature_dir), gold={}, k=5)
    has = tensors.data["has_rationale"].tolist()
    assert sum(has) == sum(bool(teacher[i].rationale.strip()) for i in tensors.ids if i in teacher) > 0
    assert "rationale" not in MODEL_KEYS and all(not h for i, h in zip(tensors.ids, has) if i not in teacher)


def test_a_separate_dev_split_is_the_only_one_selected_on(candidates_path, train_gold, fixture_entities, feature_dir,
                                                          text_encoder, tmp_path):
    """With a dev file, its rows are held out of training and early stopping reads them alone."""
    lines = candidates_path.read_text().splitlines()
    dev_file = tmp_path / "dev.jsonl"
    dev_file.write_text("\n".join(lines[:30]) + "\n")
    summary = train(candidates_path, fixture_entities, tmp_path / "scorer", gold=train_gold, dev_path=dev_file,
                    config=gold_config(), cache_dir=feature_dir, text_encoder=text_encoder, progress=False)
    assert summary["n_dev"] == 30 and summary["n_train"] == len(lines) - 30
    assert "nil_threshold" not in summary  # the scorer only ranks; NIL is calibrated on its runs
