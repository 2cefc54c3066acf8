"""Frozen-encoder features cached on disk, so training epochs and repeated runs never re-encode a text.

Each vector is keyed by ``sha1(encoder name + NUL + text)``. Misses are encoded in one batch and written as a
new safetensors shard (a 2-D ``vectors`` tensor; the keys ride in the file's string metadata), so the cache only
grows, writes are atomic, and loading never unpickles.

Candidate vectors (name view, description view) need no encoding at all when the KB store was embedded by
the same encoder: the store holds exactly those texts' vectors, and :func:`store_vectors` reads them.
Only query texts (mention, caption, rationale) then go through the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from vplink.core.errors import VplinkError


def text_key(encoder_name: str, text: str) -> str:
    """The cache key of one text under one encoder."""
    return hashlib.sha1(f"{encoder_name}\0{text}".encode("utf-8")).hexdigest()


class FeatureCache:
    """Text embeddings of a frozen encoder, memoised in memory and in safetensors shards under ``folder``."""

    def __init__(self, encoder, folder: str | Path | None = None) -> None:
        self.encoder = encoder
        self.folder = Path(folder) if folder else None
        self._rows: dict[str, np.ndarray] = {}
        self._loaded = False

    @property
    def dim(self) -> int:
        """The embedding size."""
        return int(self.encoder.dim)

    def _load(self) -> None:
        if self._loaded or self.folder is None or not self.folder.is_dir():
            self._loaded = True
            return
        for shard in sorted(self.folder.glob("features-*.safetensors")):
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    meta = handle.metadata() or {}
                if meta.get("encoder") != self.encoder.name:
                    continue
                keys = json.loads(meta["keys"])
                vectors = load_file(str(shard))["vectors"].numpy()
            except Exception as exc:  # a torn or foreign shard: name it, the user may delete it
                raise VplinkError(f"feature cache shard {shard} is unreadable ({exc}). Fix: delete it") from exc
            for key, row in zip(keys, vectors):
                self._rows[key] = row
        self._loaded = True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` (n, dim), encoding and caching only the texts not seen before."""
        self._load()
        name = self.encoder.name
        keys = [text_key(name, t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self._rows))
        if missing:
            vectors = np.asarray(self.encoder.encode(missing), dtype=np.float32)
            new_keys = [text_key(name, t) for t in missing]
            for key, row in zip(new_keys, vectors):
                self._rows[key] = row
            self._write_shard(new_keys, vectors)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._rows[k] for k in keys]).astype(np.float32, copy=False)

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1("".join(keys).encode()).hexdigest()[:16]
        path = self.folder / f"features-{digest}.safetensors"
        fd, tmp = tempfile.mkstemp(prefix=".features-", suffix=".tmp", dir=self.folder)
        os.close(fd)
        try:
            save_file({"vectors": torch.from_numpy(np.ascontiguousarray(vectors))}, tmp,
                      metadata={"encoder": self.encoder.name, "keys": json.dumps(keys)})
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def __len__(self) -> int:
        self._load()
        return len(self._rows)


def store_vectors(store, view: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The stored embeddings of entities in one text view (the same texts and encoder the student reads)."""
    if store is None or not ids:
        return {}
    return store.get_embeddings(view, ids)


def store_matches(store, encoder_name: str) -> bool:
    """Whether the store's name and description views were embedded by this encoder (then reuse them)."""
    try:
        return all(store.encoder_of(view) == encoder_name for view in ("name", "description"))
    except Exception:  # a store without text views, or a plain mapping of entities
        return False


# ---------------------------------------------------------------- retrieval signals as numbers

#: The retrieval channels whose rank and score the student sees (others are ignored).
CHANNELS: tuple[str, ...] = ("mention>name", "mention>lexical", "context>description", "context>name",
                             "context>dates", "names>name#0", "names>lexical#0", "description>description",
                             "image>image", "face>face")
N_NUMERIC = 3 * len(CHANNELS) + 3


def retrieval_features(position: int, fused_score: float, hits: dict, top_score: float | None = None) -> list[float]:
    """Numbers describing how retrieval found one candidate: per channel (found, 1/rank, score), then the fused
    score relative to the list's best, 1/(position+1) and "is first".

    The fused score enters relative to the list's top score because its scale depends on the fusion method
    (reciprocal-rank fusion gives ~0.02-0.1, weighted score fusion ~1-3): a ratio survives a change of method.
    """
    out: list[float] = []
    for channel in CHANNELS:
        hit = hits.get(channel)
        if hit is None:
            out += [0.0, 0.0, 0.0]
            continue
        rank = hit["rank"] if isinstance(hit, dict) else hit.rank
        score = hit["score"] if isinstance(hit, dict) else hit.score
        out += [1.0, 1.0 / float(rank), float(score)]
    top = top_score if top_score is not None else fused_score
    relative = fused_score / top if top and top > 0 else 0.0
    return out + [relative, 1.0 / (position + 1.0), float(position == 0)]
