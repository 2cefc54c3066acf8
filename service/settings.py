"""What the service itself is started with: where it listens, where pictures may be read from, its limits.

The linker it serves is opened by the front door from :class:`vplink.agent.settings.LinkerSettings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

class ServiceSettings(BaseSettings):
    """The options of `vplink serve` beyond the linker's, one place for their defaults; each field ``x`` is also
    read from ``VPLINK_SERVE_X``."""

    model_config = SettingsConfigDict(env_prefix="VPLINK_SERVE_", extra="forbid")

    image_root: Path | None = Field(default=None, description="folder whose pictures requests may name by path")
    max_request_mb: float = Field(default=20.0, gt=0, description="requests (an upload and its form fields) "
                                                                  "larger than this many MiB are refused with 413")
    # Without a model server a request takes a few seconds; a CPU model server's answer can take tens.
    request_timeout_s: float = Field(default=120.0, gt=0,
                                     description="a request still linking after this many seconds gets 504")
    host: str = Field(default="127.0.0.1", description="address to listen on (loopback by default)")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on")

    @property
    def max_request_bytes(self) -> int:
        """The request size limit in bytes."""
        return int(self.max_request_mb * 1024 * 1024)
