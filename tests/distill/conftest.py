"""Fixtures of the distill tests: real WikiMEL entities, real retrieval candidates, real teacher records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: WikiMEL *train* examples judged by the real teacher (Qwen2.5-Coder-1.5B-Instruct), top-5 candidates kept.
RATIONALES = FIXTURES / "distill_rationales_wikimel_train.jsonl"
#: 120 WikiMEL *train* examples with their real retrieved top-5 candidates and no teacher (for gold training).
CANDIDATES = FIXTURES / "distill_candidates_wikimel_train.jsonl"


def _fixture(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"missing fixture {path}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def rationales_path() -> Path:
    """The recorded teacher rationales (real model output over real examples)."""
    return _fixture(RATIONALES)


@pytest.fixture(scope="session")
def candidates_path() -> Path:
    """Real retrieval candidates of 120 train examples (gold answers come from the dataset)."""
    return _fixture(CANDIDATES)


@pytest.fixture(scope="session")
def train_gold(shared_data: Path, candidates_path: Path) -> dict[str, str | None]:
    """The gold answers of the candidate fixture's examples, read from the real WikiMEL train split."""
    ids = {json.loads(line)["id"] for line in candidates_path.read_text().splitlines()}
    rows = (json.loads(line) for line in (shared_data / "wikimel" / "train.jsonl").read_text().splitlines())
    return {r["id"]: r["answer"] for r in rows if r["id"] in ids}


@pytest.fixture(scope="session")
def fixture_entities(shared_data: Path, rationales_path: Path, candidates_path: Path) -> dict:
    """The real KB entities every recorded candidate refers to, keyed by id."""
    from vplink.distill.train import load_rationales
    from vplink.core.jsonl import iter_jsonl
    from vplink.core.records import Entity

    wanted = {c for p in (rationales_path, candidates_path) for r in load_rationales(p) for c in r.candidates}
    return {str(o["id"]): Entity.model_validate(o) for _, o in iter_jsonl(shared_data / "wikimel" / "kb.jsonl")
            if str(o["id"]) in wanted}


@pytest.fixture(scope="session")
def feature_dir(tmp_path_factory) -> Path:
    """One feature cache for the whole session, so each text is encoded once."""
    return tmp_path_factory.mktemp("features")


def gold_config():
    """Training settings of the gold-trained fixture student: eight epochs, patience enough to run them all."""
    from vplink.distill.train import TrainConfig

    return TrainConfig(epochs=8, patience=20, dev_fraction=0.25, batch_size=32)


@pytest.fixture(scope="session")
def gold_student(candidates_path, train_gold, fixture_entities, feature_dir, text_encoder, tmp_path_factory):
    """A student trained on gold answers over real candidates (a few epochs), with its summary."""
    from vplink.distill.train import train

    out = tmp_path_factory.mktemp("gold-student")
    summary = train(candidates_path, fixture_entities, out, gold=train_gold, config=gold_config(),
                    cache_dir=feature_dir, text_encoder=text_encoder, progress=False)
    return out, summary


@pytest.fixture(scope="session")
def teacher_student(rationales_path, fixture_entities, feature_dir, text_encoder, tmp_path_factory):
    """A student trained on the real teacher's records (default model, a few epochs), with its summary."""
    from vplink.distill.train import TrainConfig, train

    out = tmp_path_factory.mktemp("teacher-student")
    summary = train(rationales_path, fixture_entities, out, config=TrainConfig(epochs=3, dev_fraction=0.3),
                    cache_dir=feature_dir, text_encoder=text_encoder, progress=False)
    return out, summary
