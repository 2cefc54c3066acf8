"""Writing data into markdown safely: no HTML, link, emphasis or table cell a value could open."""

from __future__ import annotations

import html
import re
from typing import Any

# Markdown punctuation a value could use to start emphasis, a link, code or a table cell.
_SPECIAL = re.compile(r"([\\`*_\[\]|~#!])")


def text(value: Any) -> str:
    """A value as inert markdown text: HTML as entities (``<script>`` shows, never runs), punctuation escaped."""
    flat = " ".join(str(value).splitlines())
    return _SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def code(value: Any) -> str:
    """A value as an inline code span (shown literally), or as escaped text when it could close the span."""
    flat = str(value)
    if not flat or any(ch in flat for ch in "`|\n\r"):
        return text(flat)
    return f"`{flat}`"


def fence(content: str, language: str = "") -> list[str]:
    """Lines of a fenced code block that ``content`` cannot close, however many backticks it holds."""
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    marker = "`" * max(3, longest + 1)
    return [marker + language, content, marker]
