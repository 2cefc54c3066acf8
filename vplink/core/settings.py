"""The ``VPLINK_*`` environment variables, read in one place."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """What the environment may set; each field ``x`` is read from ``VPLINK_X``."""

    model_config = SettingsConfigDict(env_prefix="VPLINK_", extra="ignore")

    text_model: Path | None = None
    """A local sentence-transformers folder to use instead of the packaged all-MiniLM-L6-v2."""
    text_backend: str | None = None
    """The text encoder's runtime (torch, onnx, openvino, openvino-bf16, onnx-int8) instead of torch on a GPU and openvino on a CPU."""
    llm_url: str = "http://127.0.0.1:8801/v1"
    """The model server the agent talks to when none is named."""
    vllm_python: Path | None = None
    """A python that imports vllm (instead of the environment scripts/setup_vllm.sh makes)."""
    vllm_venv: Path = Path("~/.local/share/vplink/vllm-cpu-venv")
    """The vLLM environment scripts/setup_vllm.sh makes."""
    tiny_models: Path = Path("~/.cache/vplink/tiny-models")
    """Where the tiny test models are built and cached."""

    @field_validator("text_model", "vllm_python", "vllm_venv", "tiny_models")
    @classmethod
    def _expand_home(cls, path: Path | None) -> Path | None:
        return path.expanduser() if path is not None else None


def settings() -> Settings:
    """The settings as the environment holds them now (read on every call: tests and notebooks change it)."""
    return Settings()
