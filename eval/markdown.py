"""Writing data into markdown safely: no HTML, link, emphasis or table cell a value could open, and back."""

from __future__ import annotations

import html
import re
from typing import Any

# Markdown punctuation a value could use to start emphasis, a link, code or a table cell.
_SPECIAL = re.compile(r"([\\`*_\[\]|~#!])")
_ESCAPED = re.compile(r"\\([\\`*_\[\]|~#!])")


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


def plain(markdown: str) -> str:
    """The text a :func:`text` or :func:`code` span stands for (reverses the escaping)."""
    if len(markdown) >= 2 and markdown.startswith("`") and markdown.endswith("`") and "`" not in markdown[1:-1]:
        return markdown[1:-1]
    return html.unescape(_ESCAPED.sub(r"\1", markdown))


def split_code(markdown: str) -> list[tuple[bool, str]]:
    """A line of markdown as ``(is_code, plain text)`` parts: code spans and the (unescaped) text around them."""
    parts: list[tuple[bool, str]] = []
    for index, piece in enumerate(re.split(r"(?<!\\)`([^`]*)`", markdown)):
        if piece:
            parts.append((True, piece) if index % 2 else (False, plain(piece)))
    return parts
