"""Shared fixtures of the eval tests: where the real data lives and a small real predictor over the WikiMEL KB."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vplink.core.records import LinkQuery, RankedEntity
from vplink.eval.metrics import Prediction

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FORMATS = DATA / "formats"
WIKIMEL = DATA / "wikimel"

_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> set[str]:
    """Lower-cased word tokens of a text."""
    return {t.casefold() for t in _TOKEN.findall(text)}


class NameMatchPredictor:
    """Ranks KB entities by how well their name matches the mention: exact name first, then word overlap.

    A real (if weak) linker: it retrieves every entity sharing a word with the mention, then ranks them.
    """

    versions = {"models": {"ranker": "name-match-test"}}

    def __init__(self, entities: dict[str, str], k: int = 20) -> None:
        self.names = entities
        self.k = k
        self.index = _index(entities)
        self.seen: list[LinkQuery] = []

    def predict(self, batch: list[LinkQuery]) -> list[Prediction]:
        out = []
        for query in batch:
            self.seen.append(query)
            words = tokens(query.mention or "")
            pool = set().union(*(self.index.get(w, set()) for w in words)) if words else set()
            scored = []
            for entity_id in pool:
                name = self.names[entity_id]
                overlap = len(words & tokens(name)) / len(words | tokens(name))
                exact = 1.0 if name.casefold() == (query.mention or "").casefold() else 0.0
                scored.append((exact + overlap, entity_id))
            scored.sort(key=lambda s: (-s[0], s[1]))
            ranking = [RankedEntity(id=i, score=s, name=self.names[i]) for s, i in scored[: self.k]]
            out.append(Prediction(id=query.id, ranking=ranking, candidates=[i for _, i in scored[: self.k]],
                                  latency_ms={"retrieve": 1.0}))
        return out


_INDEXES: dict[int, dict[str, set[str]]] = {}


def _index(entities: dict[str, str]) -> dict[str, set[str]]:
    """Word -> ids of the entities whose name holds it; built once per KB (the tests share one)."""
    if id(entities) not in _INDEXES:
        index: dict[str, set[str]] = {}
        for entity_id, name in entities.items():
            for token in tokens(name):
                index.setdefault(token, set()).add(entity_id)
        _INDEXES[id(entities)] = index
    return _INDEXES[id(entities)]


@pytest.fixture(scope="session")
def kb_names() -> dict[str, str]:
    """Id -> name of every entity of the real WikiMEL KB."""
    names = {}
    with open(WIKIMEL / "kb.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            names[row["id"]] = row["name"]
    return names


def name_match_runs(folder: Path, kb_names: dict[str, str], ks: dict[str, int], pipeline: str = "retrieve") -> list[Path]:
    """Real runs of the name-matching ranker on the WikiMEL picture questions, one per named top-k."""
    from vplink.eval.datasets import load_dataset
    from vplink.eval.harness import run_eval

    examples = load_dataset(WIKIMEL / "with_images.jsonl")
    for name, k in ks.items():
        run_eval(examples, NameMatchPredictor(kb_names, k=k), folder / name, pipeline=pipeline,
                 dataset=str(WIKIMEL / "with_images.jsonl"), entity_names=kb_names, progress=False)
    return [folder / name for name in ks]
