"""Model and text fixtures for the retrieval tests: each model is built or loaded once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def efficientnet():
    """The real EfficientNet-Lite0 encoder from the installed weights package."""
    from vplink.retrieval.image_encoders import EfficientNetLite0Encoder

    return EfficientNetLite0Encoder(threads=1)  # one thread: far faster on a busy 2-core machine


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A folder holding a tiny, randomly initialised CLIP model, image processor and tokenizer.

    The code path is the real one (save_pretrained -> from_pretrained); only the weights are not trained.
    """
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from vplink.retrieval.image_encoders import _clip_image_processor

    folder = tmp_path_factory.mktemp("tiny-clip")
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=len(vocab) - 2,
                         eos_token_id=len(vocab) - 1, pad_token_id=len(vocab) - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    _clip_image_processor()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def kb_texts(small_kb: Path) -> list[str]:
    """Real name and description texts of varied lengths, as the store embeds them."""
    from vplink.retrieval.kb import load_kb

    entities = load_kb(small_kb).entities[:60]
    return [e.name_view() for e in entities] + [e.description_view() for e in entities]


@pytest.fixture(scope="module")
def torch_vectors(kb_texts: list[str]) -> np.ndarray:
    """The texts' vectors from sentence-transformers' own torch path: what every backend is held to."""
    from vplink.retrieval.text_encoder import TextEncoder

    return TextEncoder(backend="torch").encode(kb_texts)
