"""Image encoders: real EfficientNet-Lite0 weights, and the CLIP code path on a tiny random checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vplink.core.errors import ModelLoadError, VplinkError
from vplink.retrieval.image_encoders import (ClipImageEncoder, EfficientNetLite0Encoder, ImageEncoder,
                                             ImageEncoderSpecError, load_image_encoder)
from vplink.retrieval.images import load_image

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")


def _grace_hopper() -> Image.Image:
    from matplotlib import cbook

    return load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_efficientnet_is_an_image_encoder_with_a_fingerprint(efficientnet):
    assert isinstance(efficientnet, ImageEncoder)
    assert efficientnet.dim == 1280
    assert efficientnet.name.startswith("efficientnet-lite0:")
    assert "efficientnet-lite0-57934424.pth#579344248a93" in efficientnet.name  # path + sha256 prefix


def test_efficientnet_labels_grace_hopper_in_uniform(efficientnet):
    # Grace Hopper's portrait in US Navy uniform: ImageNet's "military uniform" class must lead.
    (labels,) = efficientnet.classify([_grace_hopper()], top_k=5)
    assert len(labels) == 5
    assert labels[0][0] == "military uniform"
    probs = [p for _, p in labels]
    assert probs == sorted(probs, reverse=True) and 0.2 < probs[0] <= 1.0


def test_efficientnet_embeddings_are_unit_float32_and_batch_independent(efficientnet):
    hopper = _grace_hopper()
    pictures = [hopper, hopper.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.new("RGB", (50, 80), (20, 160, 40))]
    batched = efficientnet.encode(pictures)
    assert batched.shape == (3, 1280) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    alone = efficientnet.encode([pictures[2]])
    assert np.allclose(alone[0], batched[2], atol=1e-4)
    # A mirrored photo stays close to itself; a flat green rectangle does not.
    assert batched[0] @ batched[1] > 0.85
    assert batched[0] @ batched[2] < batched[0] @ batched[1] - 0.2
    assert efficientnet.encode([]).shape == (0, 1280)


@needs_data
def test_efficientnet_is_deterministic_and_tells_two_people_apart(efficientnet):
    people = DATA / "people" / "images"
    # The same file twice gives the same vector; two different portraits do not.
    vectors = efficientnet.encode([load_image(people / name) for name in ("obama.jpg", "biden.jpg", "obama.jpg")])
    assert vectors[0] @ vectors[2] > 0.999
    assert vectors[0] @ vectors[1] < 0.99


def test_efficientnet_missing_weights_raise_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        EfficientNetLite0Encoder(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not torch")
    with pytest.raises(ModelLoadError, match="not loadable"):
        EfficientNetLite0Encoder(bad)


def test_clip_encoder_on_tiny_random_checkpoint(tiny_clip_dir):
    encoder = load_image_encoder(f"clip:{tiny_clip_dir}")
    assert isinstance(encoder, ClipImageEncoder) and isinstance(encoder, ImageEncoder)
    assert encoder.dim == 16 and encoder.name == f"clip:{Path(tiny_clip_dir).resolve()}"
    pictures = [Image.new("RGB", (64, 48), colour) for colour in ((250, 0, 0), (0, 0, 250), (250, 0, 0))]
    images = encoder.encode(pictures)
    assert images.shape == (3, 16) and images.dtype == np.float32
    assert np.allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert np.allclose(images[0], images[2], atol=1e-5) and not np.allclose(images[0], images[1], atol=1e-3)
    texts = encoder.encode_text(["a photo of Barack Obama", "a red square", "a photo of Barack Obama"])
    assert texts.shape == (3, 16) and np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert np.allclose(texts[0], texts[2], atol=1e-5) and not np.allclose(texts[0], texts[1], atol=1e-3)
    # Pictures and texts share one space: their dot products are plain cosines.
    assert np.all(np.abs(images @ texts.T) <= 1.0 + 1e-5)


def test_clip_batches_give_the_same_vectors(tiny_clip_dir):
    one_by_one = ClipImageEncoder(tiny_clip_dir, batch_size=1)
    pictures = [Image.new("RGB", (40, 40), (i * 40, 100, 200 - i * 30)) for i in range(5)]
    assert np.allclose(one_by_one.encode(pictures), load_image_encoder(f"clip:{tiny_clip_dir}").encode(pictures),
                       atol=1e-5)


def test_clip_missing_folder_is_a_clear_error_and_never_a_download(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json missing") as info:
        load_image_encoder(f"clip:{tmp_path / 'openai-clip'}")
    assert "never downloads" in str(info.value)
    with pytest.raises(ModelLoadError):
        # A hub-style name is not a folder here: refused, not fetched.
        ClipImageEncoder("openai/clip-vit-base-patch32")


@pytest.mark.parametrize("spec", ["resnet50", "clip:", "", "clip"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ImageEncoderSpecError) as info:
        load_image_encoder(spec)
    assert isinstance(info.value, VplinkError) and "Fix:" in str(info.value)


def test_default_spec_builds_efficientnet():
    assert isinstance(load_image_encoder(" EfficientNet-Lite0 "), EfficientNetLite0Encoder)


def test_torch_threads_is_scoped():
    import torch

    from vplink.retrieval.image_encoders import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_imagenet_labels_are_package_data() -> None:
    import fnmatch
    import tomllib
    from pathlib import Path

    from vplink.retrieval.image_encoders import IMAGENET_LABELS_FILE, imagenet_labels

    labels = imagenet_labels()
    # class indices every ImageNet-1k classifier shares
    assert len(labels) == 1000 and labels[0] == "tench" and labels[652] == "military uniform"
    assert labels[999] == "toilet paper"
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["vplink.retrieval"]
    assert any(fnmatch.fnmatch(IMAGENET_LABELS_FILE, p) for p in patterns), "the wheel would lack the labels"
