"""Session-wide model fixtures for the agent tests: each tool's model is loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The solo portraits of shared/data/people, by WikiMEL id.
PORTRAITS = {"Q76": "obama.jpg", "Q6279": "biden.jpg", "Q357607": "kit_harington.jpg", "Q461132": "rose_leslie.jpg",
             "Q1646482": "lin-manuel-miranda.jpg"}
ROSE_LESLIE = "Q461132"


@pytest.fixture(scope="session")
def evidence_tools():
    """The real evidence tools (Haar cascade, EfficientNet-Lite0, RapidOCR), loaded lazily and shared."""
    from vplink.agent.evidence import EvidenceTools

    return EvidenceTools(threads=1)  # one thread: far faster on a busy 2-core machine


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
