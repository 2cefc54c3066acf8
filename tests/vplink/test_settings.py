"""The VPLINK_* environment is read in one place, and every reader follows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vplink.agent.llm_client import LLMClient, LLMConfig
from vplink.core.settings import settings
from vplink.retrieval.text_encoder import default_text_model_path
from vplink.model_server.llm_server import VLLMNotInstalledError, default_venv, find_vllm_python
from vplink.model_server.model_prep import tiny_cache_dir


def test_each_variable_reaches_its_reader(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("VPLINK_TEXT_MODEL", str(tmp_path / "minilm"))
    monkeypatch.setenv("VPLINK_LLM_URL", "http://10.0.0.7:9000")
    monkeypatch.setenv("VPLINK_VLLM_VENV", str(tmp_path / "venv"))
    monkeypatch.setenv("VPLINK_TINY_MODELS", "~/tiny-here")
    assert default_text_model_path() == tmp_path / "minilm"
    assert LLMClient(LLMConfig()).base_url == "http://10.0.0.7:9000/v1"
    assert default_venv() == tmp_path / "venv"
    assert tiny_cache_dir() == Path.home() / "tiny-here"  # '~' expanded
    monkeypatch.setenv("VPLINK_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(VLLMNotInstalledError, match="VPLINK_VLLM_PYTHON="):
        find_vllm_python()


def test_defaults_without_the_environment(monkeypatch) -> None:
    for name in ("VPLINK_LLM_URL", "VPLINK_TINY_MODELS", "VPLINK_TEXT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert settings().llm_url == "http://127.0.0.1:8801/v1"
    assert settings().tiny_models == Path.home() / ".cache/vplink/tiny-models"
    assert settings().text_model is None
