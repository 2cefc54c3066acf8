"""Prompt templates: every built-in one parses and renders; versions follow the text."""

from __future__ import annotations

from pathlib import Path

import pytest

from vplink.prompts.loader import PromptError, load_prompt, parse_template, prompt_versions


@pytest.mark.parametrize("name, values", [
    ("describe", {"image_note": "n", "evidence": "e", "caption": "c", "mention": "m"}),
    ("reflect", {"description": "d", "evidence": "e", "caption": "c", "mention": "m", "candidates": "- Q1: A"}),
    ("judge", {"caption": "c", "mention": "m", "evidence": "e", "candidates": "- Q1: A"}),
])
def test_builtin_prompts_render(name: str, values: dict) -> None:
    messages = load_prompt(name).render(**values)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "JSON" in messages[0]["content"]
    assert all(v in messages[1]["content"] for v in values.values())
    assert "${" not in messages[1]["content"]


def test_missing_value_is_an_error() -> None:
    with pytest.raises(PromptError, match="needs a value for 'caption'"):
        load_prompt("judge").render(mention="m", evidence="e", candidates="c")


def test_version_hash_follows_the_text(tmp_path: Path) -> None:
    text = "## system\nS\n## user\nU ${x}\n"
    a, b = parse_template("t", text), parse_template("t", text + " ")
    assert a.version != b.version and len(a.version) == 12
    (tmp_path / "t.md").write_text(text, encoding="utf-8")
    assert load_prompt("t", str(tmp_path)).version == a.version
    assert set(prompt_versions()) == {"choose", "describe", "judge", "reflect"}


def test_malformed_and_missing_templates(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="'## user'"):
        parse_template("bad", "## system\nonly a system part")
    with pytest.raises(PromptError, match="no prompt template at"):
        load_prompt("absent", str(tmp_path))
    with pytest.raises(PromptError, match="no built-in prompt named"):
        load_prompt("absent")


def test_prompts_load_outside_the_checkout(tmp_path) -> None:
    """The installed package finds its prompt files from any directory (the `vplink` command runs anywhere)."""
    import subprocess
    import sys

    script = "from vplink.prompts.loader import load_prompt, prompt_versions; load_prompt('describe'); print('ok')"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
