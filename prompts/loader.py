"""Load prompt templates kept as files, render them into chat messages, and hash their versions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from string import Template

from vplink.core.errors import VplinkError

SYSTEM_MARK = "## system"
USER_MARK = "## user"


class PromptError(VplinkError):
    """A prompt template is missing, malformed, or rendered without a value it needs."""


@dataclass(frozen=True)
class PromptTemplate:
    """A chat prompt: a system text and a user text with ``${placeholders}``, and a version hash."""

    name: str
    system: str
    user: str
    version: str

    def render(self, **values: object) -> list[dict[str, str]]:
        """Chat messages with the placeholders filled; a missing value is an error, not a blank."""
        try:
            return [{"role": "system", "content": Template(self.system).substitute(values).strip()},
                    {"role": "user", "content": Template(self.user).substitute(values).strip()}]
        except KeyError as exc:
            raise PromptError(f"prompt '{self.name}' needs a value for {exc.args[0]!r}") from None


def parse_template(name: str, text: str) -> PromptTemplate:
    """Split a template file at its '## system' and '## user' headings."""
    if SYSTEM_MARK not in text or USER_MARK not in text:
        raise PromptError(f"prompt '{name}' must have a '{SYSTEM_MARK}' and a '{USER_MARK}' heading")
    system = text.split(SYSTEM_MARK, 1)[1].split(USER_MARK, 1)[0]
    user = text.split(USER_MARK, 1)[1]
    return PromptTemplate(name, system.strip(), user.strip(), hashlib.sha1(text.encode("utf-8")).hexdigest()[:12])


@lru_cache(maxsize=None)
def load_prompt(name: str, folder: str | None = None) -> PromptTemplate:
    """The template ``<name>.md`` from ``folder`` or from this package (describe, judge, reflect)."""
    if folder:
        path = Path(folder) / f"{name}.md"
        if not path.is_file():
            raise PromptError(f"no prompt template at {path}. Fix: copy one from the vplink `prompts/` folder")
        text = path.read_text(encoding="utf-8")
    else:
        try:
            text = resources.files("vplink.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PromptError(f"no built-in prompt named '{name}' (have: choose, describe, judge, reflect)") from None
    return parse_template(name, text)


def prompt_versions() -> dict[str, str]:
    """The version hash of every built-in prompt, for run reports."""
    names = sorted(p.name[:-3] for p in resources.files("vplink.prompts").iterdir() if p.name.endswith(".md"))
    return {name: load_prompt(name).version for name in names}
