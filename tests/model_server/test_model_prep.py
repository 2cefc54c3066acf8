"""Building the tiny test models and the default model's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vplink.model_server.model_prep import (DEFAULT_MODEL_NAME, MANIFEST, ModelPrepError, build_tiny_model, is_complete,
                                       prepare_default_model)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind, arch", [("text", "Qwen2ForCausalLM"), ("vlm", "Idefics3ForConditionalGeneration")])
def test_tiny_model_is_cached_and_complete(kind: str, arch: str) -> None:
    path = build_tiny_model(kind)
    assert is_complete(path)
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == [arch]
    tok = json.loads((path / "tokenizer_config.json").read_text())
    template = (path / "chat_template.jinja").read_text() if (path / "chat_template.jinja").exists() \
        else tok.get("chat_template", "")
    assert "<|im_start|>" in template
    mtime = (path / MANIFEST).stat().st_mtime
    assert build_tiny_model(kind) == path and (path / MANIFEST).stat().st_mtime == mtime  # reused, not rebuilt


def test_vlm_has_image_processor() -> None:
    path = build_tiny_model("vlm")
    proc = json.loads((path / "processor_config.json").read_text())
    assert "image_processor" in proc or (path / "preprocessor_config.json").exists()


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    with pytest.raises(ModelPrepError, match="failed"):
        build_tiny_model("text", out_dir=out, python="/bin/false")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ModelPrepError, match="'text' or 'vlm'"):
        build_tiny_model("audio")


@pytest.mark.slow
def test_default_model_checkpoint() -> None:
    """Prepares (or reuses) the real 1.5B checkpoint in models/ and checks its shape."""
    path = prepare_default_model(REPO / "models" / DEFAULT_MODEL_NAME)
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["num_hidden_layers"] == 28
    assert (path / "model.safetensors").stat().st_size > 3_000_000_000
    assert "im_start" in (path / "chat_template.jinja").read_text()
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["repetition_penalty"] == pytest.approx(1.1)
