"""NIL and confidence on real photos and a real KB slice: a person the KB lacks comes back NIL, the others keep
their answer, and every answer carries a calibrated confidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from vplink.agent.confidence import FEATURES, MENTION, NO_MENTION, Calibrator, packaged_calibrator
from vplink.core.errors import VplinkError
from vplink.core.jsonl import read_jsonl, write_jsonl
from vplink.retrieval.faces import FaceEncoder, FaceModels
from vplink.retrieval.kb import load_kb
from vplink.retrieval.store import FACE_VIEW, KBStore
from vplink.wiring import open_linker

PORTRAITS = {"Q76": "obama.jpg", "Q357607": "kit_harington.jpg", "Q461132": "rose_leslie.jpg",
             "Q1646482": "lin-manuel-miranda.jpg"}
BIDEN = "Q6279"


@pytest.fixture(scope="module")
def store_without_biden(shared_data: Path, text_encoder, tmp_path_factory) -> Path:
    """Four people of shared/data/people with their portraits, 100 other WikiMEL people; neither Joe Biden nor
    his portrait."""
    kb = read_jsonl(shared_data / "wikimel" / "kb.jsonl")
    folder = tmp_path_factory.mktemp("no_biden")
    rows = [{**e, "image": str(shared_data / "people" / "images" / PORTRAITS[e["id"]])} for e in kb
            if e["id"] in PORTRAITS] + [e for e in kb if e["id"] not in PORTRAITS and e["id"] != BIDEN][:100]
    write_jsonl(folder / "kb.jsonl", rows)
    store = KBStore(folder / "store")
    store.index(load_kb(folder / "kb.jsonl", image_root=shared_data / "people").entities, text_encoder,
                face_encoder=FaceEncoder(FaceModels()), progress=False)
    assert store.count(FACE_VIEW) == 4
    return folder / "store"


def test_a_face_the_kb_lacks_is_nil_and_the_other_is_linked(store_without_biden: Path, shared_data: Path) -> None:
    linker = open_linker(store=store_without_biden, k=5, evidence_tools=["faces"], image_retrieval=False)
    photo = shared_data / "people" / "images" / "two_people.jpg"
    obama = linker.link(photo, box=[0, 0, 250, 301])
    biden = linker.link(photo, box=[256, 0, 512, 301])
    assert not obama.nil and obama.top.id == "Q76"
    assert biden.nil and biden.top is None
    assert biden.ranking, "a NIL answer keeps its near misses"
    assert any("matches no portrait" in note for note in biden.notes)
    assert biden.headline.startswith("NIL") and "nearest" in biden.headline
    # The packaged calibration was fitted where no KB had portraits: it does not pretend to know face queries.
    assert obama.confidence is None and any("no calibrated confidence" in note for note in obama.notes)


def test_text_answers_carry_a_confidence_and_the_nil_switches_work(store_without_biden: Path) -> None:
    query = {"text": "Barack Obama speaks at the White House", "mention": "Barack Obama"}
    linker = open_linker(store=store_without_biden, k=5)
    obama = linker.link(**query)
    assert not obama.nil and obama.top.id == "Q76" and obama.confidence > 0.5
    assert f"{obama.confidence:.2f}" in obama.headline
    missing = linker.link(text="Joe Biden speaks at the White House", mention="Joe Biden")
    assert missing.nil and missing.confidence < obama.confidence and missing.ranking
    rankings_only = open_linker(store=store_without_biden, k=5, nil=False).link(
        text="Joe Biden speaks at the White House", mention="Joe Biden")
    assert not rankings_only.nil and rankings_only.top is not None
    assert rankings_only.confidence == missing.confidence  # --no-nil keeps the confidence, drops the decision
    strict = open_linker(store=store_without_biden, k=5, nil_threshold=1.0).link(**query)
    assert strict.nil and strict.ranking[0].id == "Q76"  # nothing is ever that sure: NIL, near misses kept


def test_the_packaged_calibration_is_a_probability_that_grows_with_the_margin() -> None:
    calibrator = packaged_calibrator()
    assert set(calibrator.kinds) == {MENTION, NO_MENTION}
    assert calibrator.fitted_on["runs"], "the calibration names the runs it was fitted on"
    model = calibrator.kinds[MENTION]
    assert model.features == list(FEATURES) and model.nil_threshold is not None
    base = {"score": 2.0, "margin": 0.05, "lexical": 0.6, "coverage": 1.0, "covered": 1.0, "has_mention": 1.0}
    sure = model.probability({**base, "margin": 0.8})
    unsure = model.probability(base)
    assert 0.0 <= unsure < sure <= 1.0
    # a mention none of whose words is in the answer's name is far less likely right
    assert model.probability({**base, "coverage": 0.0, "covered": 0.0, "lexical": 0.0}) < unsure
    # WikiMEL has no portraits: a face query is one the packaged calibration never saw
    assert calibrator.model_for({**base, "has_face": 1.0, "face": 0.8})[0] is None


def test_a_bad_calibration_file_names_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "calibration.json"
    bad.write_text('{"format": "vplink-calibration/1", "features": []}', encoding="utf-8")
    with pytest.raises(VplinkError, match="vplink eval calibrate"):
        Calibrator.load(bad)
    with pytest.raises(VplinkError, match="no such calibration file"):
        Calibrator.load(tmp_path / "missing.json")
