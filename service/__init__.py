"""The HTTP service: one warm `Linker` behind a JSON API, and a page to draw a box and see the answer."""

from __future__ import annotations

from vplink.service.app import create_app
from vplink.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
