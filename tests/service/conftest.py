"""One warm linker over the real people store, and the app built on it, shared by the service tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vplink.agent.linker import Linker
from vplink.service import ServiceSettings, create_app
from vplink.service.server import vplink_command
from vplink.wiring import open_linker

#: Requests over this size are refused in the tests: small enough to exceed with a few hundred kB.
TEST_LIMIT = 2 * 1024 * 1024


@pytest.fixture(scope="session")
def people_dir(shared_data: Path) -> Path:
    """The real photos (../shared/data/people)."""
    return shared_data / "people"


@pytest.fixture(scope="session")
def service_linker(people_store: str) -> Linker:
    return open_linker(store=people_store, k=10)


@pytest.fixture(scope="session")
def service_settings(people_store: str, people_dir: Path) -> ServiceSettings:
    return ServiceSettings(image_root=people_dir / "images", max_request_mb=TEST_LIMIT / (1024 * 1024))


@pytest.fixture(scope="session")
def app(service_settings: ServiceSettings, service_linker: Linker):
    return create_app(service_settings, linker=service_linker)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def served(people_store: str, people_dir: Path, tmp_path_factory) -> Iterator[str]:
    """The real `vplink serve` command on a free loopback port; yields its base URL."""
    import subprocess
    import time

    import httpx

    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*vplink_command(), "serve", "--store", people_store, "--port", str(port),
                                    "--image-root", str(people_dir / "images"), "--request-timeout", "120"],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # loading torch and the encoders on a busy 2-core machine
        while True:
            if process.poll() is not None:
                pytest.fail(f"vplink serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vplink serve did not answer within 240 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
