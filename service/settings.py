"""What the service is started with: the store, the model server, where pictures may be read from, limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: Requests (an upload and its form fields) larger than this are refused with 413: 20 MiB.
DEFAULT_MAX_REQUEST_BYTES = 20 * 1024 * 1024
#: Linking still running after this many seconds is answered with 504 and stopped at its next step. Without a
#: model server a request takes a few seconds; a CPU model server's answer can take tens.
DEFAULT_REQUEST_TIMEOUT_S = 120.0


class ServiceSettings(BaseModel):
    """The options of `vplink serve`, one place for their defaults."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="store folder or Chroma server URL")
    prefix: str = Field(default="vplink", description="collection name prefix of the store")
    llm_url: str | None = Field(default=None, description="vLLM server; None links on evidence and text alone")
    llm_model: str | None = Field(default=None, description="served model name (default: the server's first)")
    vision: bool = Field(default=False, description="send the marked picture and the crop to the model")
    scorer: Path | None = Field(default=None, description="a distilled scorer folder to rerank with")
    image_root: Path | None = Field(default=None, description="folder whose pictures requests may name by path")
    max_request_bytes: int = Field(default=DEFAULT_MAX_REQUEST_BYTES, gt=0)
    request_timeout_s: float = Field(default=DEFAULT_REQUEST_TIMEOUT_S, gt=0,
                                     description="a request still linking after this many seconds gets 504")
    k: int = Field(default=10, ge=1, description="candidates kept")
