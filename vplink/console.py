"""The rich consoles the commands print with: data in them is never read as markup or emoji codes."""

from __future__ import annotations

from rich.console import Console


def data_console(*, stderr: bool = False) -> Console:
    """A console for output that holds user data: callers escape data (``rich.markup.escape``) inside their
    own markup; emoji codes (``:smile:``) and automatic highlighting are off so data prints as it is, and
    messages are not cut into lines (a path or URL stays whole, and an error stays one line)."""
    return Console(stderr=stderr, emoji=False, highlight=False, soft_wrap=True)
