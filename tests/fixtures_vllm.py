"""Pytest plugin: tiny random models served by real vLLM servers, started once per test session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vplink.agent.llm_client import LLMConfig
from vplink.model_server.llm_server import LLMServer, ServerConfig, VLLMNotInstalledError, find_vllm_python
from vplink.model_server.model_prep import ModelPrepError, build_tiny_model

# Tiny models need little: a small cache, short context, no torch.compile warm-up.
TINY_SERVER = dict(max_model_len=4096, kv_cache_gib=0.25, max_num_seqs=8, startup_timeout_s=600,
                   extra_args=["--enforce-eager"])


def _vllm_python() -> str:
    try:
        python = find_vllm_python()
    except VLLMNotInstalledError as exc:
        pytest.fail(f"{exc}. The vLLM tests need it: run scripts/setup_vllm.sh", pytrace=False)
    return python


class _TinyServers:
    """Launches both tiny servers together (their start-ups overlap) and hands each out when ready."""

    def __init__(self) -> None:
        self.logs = Path(tempfile.mkdtemp(prefix="vplink-vllm-tests-"))
        self.servers: dict[str, LLMServer] = {}
        self.ready: set[str] = set()

    def _launch_all(self) -> None:
        python = _vllm_python()
        for kind in ("text", "vlm"):
            try:
                model = build_tiny_model(kind, python=python)
            except ModelPrepError as exc:
                pytest.fail(f"building the tiny {kind} model failed: {exc}", pytrace=False)
            cfg = ServerConfig(model=str(model), served_model_name=f"tiny-{kind}", python=python,
                               log_path=str(self.logs / f"tiny-{kind}.log"), **TINY_SERVER)
            self.servers[kind] = LLMServer(cfg).launch()

    def get(self, kind: str) -> LLMServer:
        if not self.servers:
            self._launch_all()
        server = self.servers[kind]
        if kind not in self.ready:
            server.wait_ready(server.config.startup_timeout_s)
            self.ready.add(kind)
        return server

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        shutil.rmtree(self.logs, ignore_errors=True)


@pytest.fixture(scope="session")
def _tiny_servers() -> Iterator[_TinyServers]:
    pool = _TinyServers()
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(scope="session")
def tiny_text_server(_tiny_servers: _TinyServers) -> LLMServer:
    """The running vLLM server of the tiny random Qwen2 text model."""
    return _tiny_servers.get("text")


@pytest.fixture(scope="session")
def tiny_vlm_server(_tiny_servers: _TinyServers) -> LLMServer:
    """The running vLLM server of the tiny random Idefics3 vision-language model."""
    return _tiny_servers.get("vlm")


@pytest.fixture(scope="session")
def tiny_text_llm(tiny_text_server: LLMServer) -> LLMConfig:
    """An LLMConfig for the tiny text model's server."""
    return LLMConfig(url=tiny_text_server.url, model=tiny_text_server.model, vision=False, max_tokens=64,
                     timeout_s=120)


@pytest.fixture(scope="session")
def tiny_vlm_llm(tiny_vlm_server: LLMServer) -> LLMConfig:
    """An LLMConfig for the tiny vision-language model's server (vision on)."""
    return LLMConfig(url=tiny_vlm_server.url, model=tiny_vlm_server.model, vision=True, max_tokens=64,
                     timeout_s=120)
