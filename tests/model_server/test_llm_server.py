"""Starting and stopping real vLLM servers."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from vplink.model_server.llm_server import (LLMServer, LLMServerStartError, ServerConfig, VLLMNotInstalledError,
                                       cpu_bind_all, find_vllm_python, free_port)
from vplink.model_server.model_prep import build_tiny_model


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_bind_list_names_every_core() -> None:
    cores = cpu_bind_all().split(",")
    assert len(cores) == len(os.sched_getaffinity(0)) and all(c.isdigit() for c in cores)


def test_command_and_environment(tmp_path: Path) -> None:
    server = LLMServer(ServerConfig(model="/m", served_model_name="x", port=1234, kv_cache_gib=3, max_model_len=512,
                                    extra_args=["--enforce-eager"], python="/py", log_path=str(tmp_path / "l.log")))
    cmd = server.command()
    assert cmd[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--port") + 1] == "1234" and cmd[cmd.index("--max-model-len") + 1] == "512"
    assert cmd[-1] == "--enforce-eager" and server.url == "http://127.0.0.1:1234/v1" and server.model == "x"
    env = server.environment()
    assert cmd[cmd.index("--kv-cache-memory-bytes") + 1] == str(3 * 2**30)
    assert "VLLM_CPU_KVCACHE_SPACE" not in env and env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == cpu_bind_all()
    assert "--enable-prefix-caching" in cmd and "--no-enable-prefix-caching" not in cmd
    structured = json.loads(cmd[cmd.index("--structured-outputs-config") + 1])
    assert structured["disable_any_whitespace"] is True


def test_speed_settings_can_be_turned_off() -> None:
    server = LLMServer(ServerConfig(model="/m", port=1, python="/py", prefix_caching=False, compact_json=False,
                                    threads_bind="1"))
    cmd = server.command()
    assert "--no-enable-prefix-caching" in cmd and "--enable-prefix-caching" not in cmd
    assert "--structured-outputs-config" not in cmd
    assert server.environment()["VLLM_CPU_OMP_THREADS_BIND"] == "1"


def test_missing_interpreter_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VPLINK_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(VLLMNotInstalledError, match="setup_vllm.sh"):
        find_vllm_python()


def test_server_dying_at_startup_shows_log_tail(tmp_path: Path) -> None:
    # an interpreter without vllm: the process dies at once, as a broken venv would
    cfg = ServerConfig(model=str(tmp_path), python=sys.executable, log_path=str(tmp_path / "s.log"),
                       startup_timeout_s=60)
    env_has_vllm = importlib.util.find_spec("vllm") is not None
    if env_has_vllm:
        cfg.extra_args = ["--no-such-flag"]
    with pytest.raises(LLMServerStartError) as err:
        LLMServer(cfg).start()
    assert "exited with code" in str(err.value) and str(tmp_path / "s.log") in str(err.value)
    assert ("--no-such-flag" if env_has_vllm else "No module named 'vllm'") in err.value.log_tail


@pytest.mark.slow
def test_real_vllm_rejecting_arguments_shows_log_tail(tmp_path: Path) -> None:
    cfg = ServerConfig(model=str(tmp_path), extra_args=["--no-such-flag"], log_path=str(tmp_path / "s.log"),
                       startup_timeout_s=300)
    with pytest.raises(LLMServerStartError) as err:
        LLMServer(cfg).start()
    assert "exited with code" in str(err.value) and "--no-such-flag" in err.value.log_tail


def test_startup_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    server = LLMServer(ServerConfig(model=str(build_tiny_model("text")), startup_timeout_s=1,
                                    log_path=str(tmp_path / "s.log")))
    with pytest.raises(LLMServerStartError, match="did not answer"):
        server.start()
    assert server.process is not None and server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(server.process.pid, 0)


def test_running_server_lists_model_and_uses_all_cores(tiny_text_server: LLMServer) -> None:
    resp = httpx.get(f"{tiny_text_server.url}/models", timeout=10)
    assert [m["id"] for m in resp.json()["data"]] == ["tiny-text"]
    assert tiny_text_server.alive()
    log = tiny_text_server.log_path.read_text(errors="replace")
    cores = sorted(os.sched_getaffinity(0))
    assert f"core ids={cores}" in log, "vLLM should bind its worker to every core"


@pytest.mark.slow  # a third server start: too slow for the default run
def test_context_manager_stops_server(tmp_path: Path) -> None:
    cfg = ServerConfig(model=str(build_tiny_model("text")), served_model_name="ctx", max_model_len=256,
                       extra_args=["--enforce-eager"], log_path=str(tmp_path / "s.log"))
    with LLMServer(cfg) as server:
        assert httpx.get(f"{server.url}/models", timeout=10).status_code == 200
        pid = server.process.pid
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group, engine core included, is gone


def test_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    # a parent that launches a real server and is then killed must not leave the server behind
    script = ("import os, sys; from vplink.model_server.llm_server import LLMServer, ServerConfig; "
              f"s = LLMServer(ServerConfig(model={str(build_tiny_model('text'))!r}, log_path={str(tmp_path / 'l')!r}))"
              ".launch(); print(s.process.pid, flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         cwd=str(Path(__file__).resolve().parents[2]))
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    pytest.fail("the server outlived its parent")


def test_missing_model_folder_is_reported_before_launch(tmp_path: Path) -> None:
    server = LLMServer(ServerConfig(model=str(tmp_path / "nope"), log_path=str(tmp_path / "l")))
    with pytest.raises(LLMServerStartError, match="nope does not exist"):
        server.start()
    assert server.process is None


def test_busy_port_is_reported_before_launch(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = LLMServer(ServerConfig(model=str(tmp_path), port=port, log_path=str(tmp_path / "l")))
        with pytest.raises(LLMServerStartError, match=f"port {port} .* in use"):
            server.start()
        assert server.process is None
