"""The distilled scorer as the agent's reranker: load a trained student folder and score candidates fast."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from cachetools import LRUCache
from safetensors.torch import load_file

from vplink.agent.confidence import Calibrator
from vplink.agent.state import Description
from vplink.core.errors import ModelLoadError, VplinkError
from vplink.core.records import Candidate, LinkQuery
from vplink.distill.data import candidate_texts
from vplink.distill.features import N_NUMERIC, retrieval_features, store_matches, store_vectors
from vplink.distill.student import StudentConfig, StudentScorer

FORMAT = "vplink-distilled-scorer/3"  # 3: the pair unit and the dates and face channels
#: The scorer's confidence calibration, beside its weights (optional).
CALIBRATION = "calibration.json"


class ScorerLoadError(VplinkError):
    """A scorer folder is missing, incomplete or corrupt."""


class _VectorCache:
    """An LRU cache of text vectors (entities recur across queries); safe to share between linking threads."""

    def __init__(self, size: int = 50_000) -> None:
        self.rows: LRUCache[str, np.ndarray] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            return self.rows.get(key)

    def put(self, key: str, vector: np.ndarray) -> None:
        with self._lock:
            self.rows[key] = vector

    def encode(self, encoder, texts: Sequence[str]) -> np.ndarray:
        """The vectors of ``texts``, encoding only those not cached."""
        found = {t: v for t in dict.fromkeys(texts) if (v := self.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            for text, row in zip(missing, encoder.encode(missing)):
                self.put(text, row)
                found[text] = row
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, encoder.dim), np.float32)


class DistilledScorer:
    """Implements the agent's ``Reranker``: one fused student score per candidate (higher is better)."""

    def __init__(self, model: StudentScorer, config: dict, text_encoder, store=None,
                 calibrator: Calibrator | None = None) -> None:
        self.model = model.eval()
        self.config = config
        self.text_encoder = text_encoder
        self.store = store
        #: The confidence calibration of this scorer's scores (``calibration.json`` in its folder, written by
        #: `vplink eval calibrate` on rerank runs), or None: its answers carry no confidence.
        self.calibrator = calibrator
        self.name = f"distilled:{config.get('targets', 'teacher')}:{config.get('fingerprint', '')}".rstrip(":")
        self._cache = _VectorCache()
        self.last_ms = 0.0
        self.use_store_vectors = store is not None and store_matches(store, text_encoder.name)

    def _visual(self, description: Description | None, evidence_text: str) -> tuple[np.ndarray, float]:
        # what a vision model said about the region, as text: the visual unit's input
        parts = [description.as_query_text()] if description else []
        if evidence_text:
            parts.append(evidence_text)
        text = ". ".join(p for p in parts if p)
        if not text:
            return np.zeros(self.text_encoder.dim, np.float32), 0.0
        return self._cache.encode(self.text_encoder, [text])[0], 1.0

    @torch.no_grad()
    def score(self, query: LinkQuery, description: Description | None, evidence_text: str,
              candidates: Sequence[Candidate]) -> list[float]:
        """One score per candidate, in the candidates' order."""
        if not candidates:
            return []
        started = time.perf_counter()
        entities = {c.id: c.entity for c in candidates}
        if self.store is not None and any(e is None for e in entities.values()):
            entities.update(self.store.get_entities([cid for cid, e in entities.items() if e is None]))
        n = len(candidates)
        mention = query.mention or query.text or ""
        caption = query.text or query.mention or ""
        queries = self._cache.encode(self.text_encoder, [mention, caption])
        views = []
        for v, view in enumerate(("name", "description")):
            # the store already holds these vectors (same encoder, same texts): read them, do not re-encode
            cached = {c.id: self._cache.get(f"{view}\0{c.id}") for c in candidates}
            stored = {cid: vec for cid, vec in cached.items() if vec is not None}
            if self.use_store_vectors and len(stored) < n:
                fetched = store_vectors(self.store, view, [c.id for c in candidates if c.id not in stored])
                for eid, vec in fetched.items():
                    self._cache.put(f"{view}\0{eid}", vec)
                stored.update(fetched)
            missing = [c for c in candidates if c.id not in stored]
            if missing:
                texts = [candidate_texts(entities.get(c.id), c.name or c.id)[v] for c in missing]
                stored.update(zip([c.id for c in missing], self._cache.encode(self.text_encoder, texts)))
            views.append(np.stack([stored[c.id] for c in candidates]).astype(np.float32))
        vecs = np.concatenate([queries] + views)
        visual, vmask = self._visual(description, evidence_text)
        top = max(c.score for c in candidates)
        numeric = np.array([retrieval_features(j, c.score, c.hits, top) for j, c in enumerate(candidates)],
                           np.float32)
        batch = {
            "q_mention": torch.from_numpy(vecs[0:1]), "q_caption": torch.from_numpy(vecs[1:2]),
            "q_visual": torch.from_numpy(visual[None]), "q_visual_mask": torch.tensor([vmask]),
            "c_name": torch.from_numpy(vecs[2:2 + n][None]), "c_desc": torch.from_numpy(vecs[2 + n:][None]),
            "numeric": torch.from_numpy(numeric[None]), "mask": torch.ones(1, n, dtype=torch.bool),
        }
        scores = self.model(batch)["fused"][0].tolist()
        self.last_ms = (time.perf_counter() - started) * 1000
        return [float(s) for s in scores]


def load_scorer(path: str | Path, store=None, text_encoder=None) -> DistilledScorer:
    """Load a scorer folder written by ``vplink.distill.train.train`` (weights via safetensors, never unpickled).

    ``store`` (a KBStore or its folder) is used to look up candidates that arrive without their entity.
    """
    path = Path(path)
    config_path, weights = path / "config.json", path / "model.safetensors"
    if not path.is_dir():
        raise ScorerLoadError(f"no scorer folder at {path}. Fix: train one with `vplink distill train`")
    for needed in (config_path, weights):
        if not needed.is_file():
            raise ScorerLoadError(f"{path} has no {needed.name}; it is not a complete scorer folder. "
                                  "Fix: retrain with `vplink distill train` (or rerun it to finish)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScorerLoadError(f"{config_path} is not valid JSON ({exc}). Fix: retrain the scorer") from None
    if config.get("format") != FORMAT:
        raise ScorerLoadError(f"{config_path} has format {config.get('format')!r}, expected {FORMAT!r}. "
                              "Fix: retrain with this version of vplink")
    try:
        student = StudentConfig.model_validate(config["student"])
        if student.n_numeric != N_NUMERIC:
            raise ValueError(f"n_numeric {student.n_numeric} != {N_NUMERIC}")
        model = StudentScorer(student)
        model.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # safetensors / torch raise several types for a torn or foreign file
        raise ScorerLoadError(f"cannot load the scorer weights at {weights} ({exc}). Fix: retrain the scorer") \
            from None
    if text_encoder is None:
        from vplink.retrieval.text_encoder import TextEncoder

        spec = config.get("text_encoder_spec")
        try:
            text_encoder = TextEncoder(spec if spec and Path(spec).is_dir() else None)
        except ModelLoadError as exc:
            raise ScorerLoadError(f"the scorer's text encoder cannot be loaded: {exc}") from None
    if text_encoder.name != config.get("text_encoder"):
        raise ScorerLoadError(f"the scorer was trained on features of {config.get('text_encoder')!r} but the "
                              f"encoder at hand is {text_encoder.name!r}. Fix: set VPLINK_TEXT_MODEL to that model")
    if isinstance(store, (str, Path)):
        from vplink.retrieval.factory import open_store

        store = open_store(store)
    calibration = path / CALIBRATION
    return DistilledScorer(model, config, text_encoder, store,
                           Calibrator.load(calibration) if calibration.is_file() else None)
