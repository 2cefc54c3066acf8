"""Session-wide fixtures: real data paths, the text encoder (loaded once), a small real KB store."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Model hubs are unreachable; make every library fail fast instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

# The property tests of the parsers that take user input (captions, boxes, KB and dataset lines). The deadline
# is the time bound per example that finds a super-linear path: an example takes milliseconds, a quadratic one
# on the inputs drawn takes minutes, and 3 s leaves room for a busy 2-core machine. Example counts keep all of
# them under a minute together; a failure prints the blob that replays it (@reproduce_failure).
settings.register_profile("vplink", deadline=timedelta(seconds=3), max_examples=60, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("vplink")

pytest_plugins = ["tests.fixtures_vllm"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MEL data beside the checkout (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}: CI keeps ../shared beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def text_encoder():
    """The default text encoder (all-MiniLM-L6-v2 from its package), loaded once per run."""
    from vplink.retrieval.text_encoder import TextEncoder

    encoder = TextEncoder()
    encoder.encode(["warm up"])
    return encoder


@pytest.fixture(scope="session")
def small_kb(shared_data: Path, tmp_path_factory) -> Path:
    """A real 400-entity slice of the WikiMEL KB that holds the gold entities of the first dev mentions."""
    from vplink.core.jsonl import read_jsonl, write_jsonl

    kb = read_jsonl(shared_data / "wikimel" / "kb.jsonl")
    dev = read_jsonl(shared_data / "wikimel" / "dev.jsonl")[:60]
    gold = {row["answer"] for row in dev}
    rows = [e for e in kb if e["id"] in gold] + [e for e in kb if e["id"] not in gold][:400 - len(gold)]
    path = tmp_path_factory.mktemp("kb") / "kb.jsonl"
    write_jsonl(path, rows)
    return path


@pytest.fixture(scope="session")
def small_store(small_kb: Path, text_encoder, tmp_path_factory):
    """An embedded Chroma store of the small KB (text views), built once per run."""
    from vplink.retrieval.kb import load_kb
    from vplink.retrieval.store import KBStore

    store = KBStore(tmp_path_factory.mktemp("store") / "chroma")
    store.index(load_kb(small_kb).entities, text_encoder, progress=False)
    return store


#: The people of the photos in ../shared/data/people (Obama, Biden, Kit Harington, Rose Leslie, Lin-Manuel Miranda).
PEOPLE = ["Q76", "Q6279", "Q357607", "Q461132", "Q1646482"]


@pytest.fixture(scope="session")
def people_store(shared_data: Path, text_encoder, tmp_path_factory) -> str:
    """A real KB slice: the people of the photos, the first dev golds, and 250 other WikiMEL entities."""
    from vplink.core.jsonl import read_jsonl, write_jsonl
    from vplink.retrieval.kb import load_kb
    from vplink.retrieval.store import KBStore

    kb = read_jsonl(shared_data / "wikimel" / "kb.jsonl")
    dev = read_jsonl(shared_data / "wikimel" / "dev.jsonl")[:20]
    wanted = set(PEOPLE) | {row["answer"] for row in dev}
    rows = [e for e in kb if e["id"] in wanted] + [e for e in kb if e["id"] not in wanted][:250]
    folder = tmp_path_factory.mktemp("people")
    write_jsonl(folder / "kb.jsonl", rows)
    KBStore(folder / "store").index(load_kb(folder / "kb.jsonl").entities, text_encoder, progress=False)
    return str(folder / "store")


#: The solo portraits of shared/data/people, by WikiMEL id.
PORTRAITS = {"Q76": "obama.jpg", "Q6279": "biden.jpg", "Q357607": "kit_harington.jpg", "Q461132": "rose_leslie.jpg",
             "Q1646482": "lin-manuel-miranda.jpg"}
ROSE_LESLIE = "Q461132"


def _portrait_store(shared_data: Path, text_encoder, folder: Path, portraits: dict[str, str]) -> Path:
    """A store of ``portraits``' people with their solo portraits (a face view), and 100 other WikiMEL people."""
    from vplink.core.jsonl import read_jsonl, write_jsonl
    from vplink.retrieval.faces import FaceEncoder, FaceModels
    from vplink.retrieval.kb import load_kb
    from vplink.retrieval.store import FACE_VIEW, KBStore

    kb = read_jsonl(shared_data / "wikimel" / "kb.jsonl")
    rows = [{**e, "image": str(shared_data / "people" / "images" / portraits[e["id"]])} for e in kb
            if e["id"] in portraits] + [e for e in kb if e["id"] not in PORTRAITS][:100]
    write_jsonl(folder / "kb.jsonl", rows)
    store = KBStore(folder / "store")
    report = store.index(load_kb(folder / "kb.jsonl", image_root=shared_data / "people").entities, text_encoder,
                         face_encoder=FaceEncoder(FaceModels()), progress=False)
    assert report.added[FACE_VIEW] == len(portraits) and store.count(FACE_VIEW) == len(portraits)
    return folder / "store"


@pytest.fixture(scope="session")
def portrait_store(shared_data: Path, text_encoder, tmp_path_factory) -> Path:
    """The five people of shared/data/people with their solo portraits, and 100 other WikiMEL people."""
    return _portrait_store(shared_data, text_encoder, tmp_path_factory.mktemp("portraits"), PORTRAITS)


@pytest.fixture(scope="session")
def store_without_rose(shared_data: Path, text_encoder, tmp_path_factory) -> Path:
    """The same, without Rose Leslie: her face in kit_with_rose.jpg is a face the KB lacks."""
    others = {eid: image for eid, image in PORTRAITS.items() if eid != ROSE_LESLIE}
    return _portrait_store(shared_data, text_encoder, tmp_path_factory.mktemp("no_rose"), others)


@pytest.fixture(scope="session")
def dev_slice(shared_data: Path) -> list[dict]:
    """The first 60 WikiMEL dev mentions (their gold entities are in ``small_kb``)."""
    from vplink.core.jsonl import read_jsonl

    return read_jsonl(shared_data / "wikimel" / "dev.jsonl")[:60]


@pytest.fixture(scope="session")
def repo_fixtures() -> Path:
    """The repository's own small fixtures (tests/fixtures)."""
    return REPO / "tests" / "fixtures"
