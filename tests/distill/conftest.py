"""Fixtures of the distill tests: real WikiMEL entities and a small recorded teacher file."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: 240 WikiMEL *train* examples judged by the real teacher (Qwen2.5-Coder-1.5B-Instruct), top-5 candidates kept.
RATIONALES = FIXTURES / "distill_rationales_wikimel_train.jsonl"


@pytest.fixture(scope="session")
def rationales_path() -> Path:
    """The recorded teacher rationales (real model output over real examples)."""
    if not RATIONALES.is_file():
        pytest.fail(f"missing fixture {RATIONALES}", pytrace=False)
    return RATIONALES


@pytest.fixture(scope="session")
def fixture_entities(shared_data: Path, rationales_path: Path) -> dict:
    """The real KB entities every recorded candidate refers to, keyed by id."""
    from distill.train import load_rationales
    from retrieval.jsonl import iter_jsonl
    from retrieval.records import Entity

    wanted = {c for r in load_rationales(rationales_path) for c in r.candidates}
    return {str(o["id"]): Entity.model_validate(o) for _, o in iter_jsonl(shared_data / "wikimel" / "kb.jsonl")
            if str(o["id"]) in wanted}


@pytest.fixture(scope="session")
def feature_dir(tmp_path_factory) -> Path:
    """One feature cache for the whole session, so each text is encoded once."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="session")
def trained_teacher_student(rationales_path, fixture_entities, feature_dir, text_encoder, tmp_path_factory):
    """A student trained on the recorded rationales (a few epochs), with its summary.

    The retrieval prior is off here: the untrained student then ranks at random, so "training taught it
    the teacher's choices" is what the improvement over epoch 0 measures (with the prior, epoch 0 already
    ranks like retrieval, which this teacher mostly agrees with).
    """
    from distill.student import StudentConfig
    from distill.train import TrainConfig, train

    out = tmp_path_factory.mktemp("student")
    config = TrainConfig(epochs=8, patience=8, dev_fraction=0.25, batch_size=32,
                         student=StudentConfig(retrieval_prior=False))
    summary = train(rationales_path, fixture_entities, out, config=config, cache_dir=feature_dir,
                    text_encoder=text_encoder, progress=False)
    return out, summary
