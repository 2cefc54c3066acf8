"""The model client's errors, each naming the server's URL and the fix, and the server's error bodies in one line."""

from __future__ import annotations

import html
import re
from typing import Any

from vplink.core.errors import VplinkError

SERVE_HINT = "start one with `vplink llm serve` or pass --llm-url"


class LLMError(VplinkError):
    """Base class of the model client's errors."""


class LLMUnavailableError(LLMError):
    """No model server answers at the configured URL."""


class LLMTimeoutError(LLMError):
    """The model server did not answer within the timeout."""


class LLMConfigError(LLMError):
    """The client's settings cannot work (e.g. a server URL that is not an http(s) URL)."""


class LLMProtocolError(LLMError):
    """Something answers at the URL, but not the OpenAI API (a web page, another service)."""


class LLMHTTPError(LLMError):
    """The model server answered with an HTTP error; ``body`` holds its message."""

    def __init__(self, message: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class LLMRequestError(LLMError):
    """The request cannot be sent as asked (e.g. images to a text-only configuration)."""


class LLMResponseError(LLMError):
    """The model's answer could not be parsed or repaired into the schema; ``raw`` holds it."""

    def __init__(self, message: str, raw: str, finish_reason: str | None = None) -> None:
        self.raw = raw
        self.finish_reason = finish_reason
        super().__init__(f"{message}; raw answer: {raw[:500]!r}")


def one_line(body: str, limit: int = 200) -> str:
    """A server's error body as one short line; an HTML page is reduced to its title."""
    text = body.strip()
    if text[:1] == "<":  # an HTML page (a proxy, another web server): its title says enough
        found = re.search(r"<title[^>]*>(.*?)</title>|<h1[^>]*>(.*?)</h1>", text, re.I | re.S)
        title = next((g for g in found.groups() if g), "") if found else ""
        title = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", title)).split())
        return f"an HTML page{f' titled {title[:80]!r}' if title else ''}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def error_message(response: Any) -> str:
    """The message of an HTTP error response: vLLM's JSON ``message``, else the body in one line."""
    try:
        data = response.json()
    except ValueError:
        return one_line(response.text)
    if isinstance(data, dict):
        err = data.get("error")
        message = (err.get("message") if isinstance(err, dict) else err) or data.get("message") or data.get("detail")
        if message:
            return one_line(str(message))
    return one_line(response.text)
