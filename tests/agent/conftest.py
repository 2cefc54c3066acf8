"""Session-wide model fixtures for the agent tests: each tool's model is loaded once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def evidence_tools():
    """The real evidence tools (Haar cascade, EfficientNet-Lite0, RapidOCR), loaded lazily and shared."""
    from vplink.agent.evidence import EvidenceTools

    return EvidenceTools(threads=1)  # one thread: far faster on a busy 2-core machine
