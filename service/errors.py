"""How errors reach a client: the HTTP status of each kind, and the body {detail, error} they all share."""

from __future__ import annotations

from vplink.core.errors import StoreError, VplinkError
from vplink.service.schemas import ErrorBody


class RequestError(VplinkError):
    """A request the service refuses (missing or doubled fields, an unknown id, a path outside the root)."""

    def __init__(self, message: str, fix: str, *, status: int = 422) -> None:
        self.status = status
        super().__init__(f"{message}. Fix: {fix}")


def status_of(error: VplinkError) -> int:
    """The HTTP status of an error: the user's input is 4xx; a store or model server that fails is 5xx."""
    from vplink.agent.llm_errors import LLMError

    if isinstance(error, RequestError):
        return error.status
    if isinstance(error, LLMError):
        return 502
    if isinstance(error, StoreError):
        return 503
    return 422


class ApiError(Exception):
    """A VplinkError on its way to the client, its message cleaned of server-side temporary paths."""

    def __init__(self, error: VplinkError, relabel: dict[str, str] | None = None) -> None:
        detail = str(error)
        for secret, shown in (relabel or {}).items():
            detail = detail.replace(secret, shown)
        self.status = status_of(error)
        self.body = ErrorBody(detail=detail, error=type(error).__name__)
        super().__init__(detail)
