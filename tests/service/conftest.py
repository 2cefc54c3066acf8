"""One warm linker over the real people store, and the app built on it, shared by the service tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from vplink.agent.linker import Linker
from vplink.agent.nodes import LinkerConfig
from vplink.service import ServiceSettings, create_app

#: Requests over this size are refused in the tests: small enough to exceed with a few hundred kB.
TEST_LIMIT = 2 * 1024 * 1024


@pytest.fixture(scope="session")
def people_dir(shared_data: Path) -> Path:
    """The real photos (../shared/data/people)."""
    return shared_data / "people"


@pytest.fixture(scope="session")
def service_linker(people_store: str) -> Linker:
    return Linker.open(people_store, config=LinkerConfig(k=10))


@pytest.fixture(scope="session")
def service_settings(people_store: str, people_dir: Path) -> ServiceSettings:
    return ServiceSettings(store=people_store, image_root=people_dir / "images", max_request_bytes=TEST_LIMIT, k=10)


@pytest.fixture(scope="session")
def app(service_settings: ServiceSettings, service_linker: Linker):
    return create_app(service_settings, linker=service_linker)
