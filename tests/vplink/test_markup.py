"""Data is printed as it is: square brackets and emoji codes in names, queries and notes are never rich markup."""

from __future__ import annotations

import io
import json

from rich.console import Console
from typer.testing import CliRunner

from vplink.agent.state import Description, LinkResult
from vplink.cli import app
from vplink.cli_link import print_result
from vplink.core.records import LinkQuery, RankedEntity

EVIL = "[bold red]Evil[/bold red] [/x] :smile:"


def test_kb_search_prints_brackets_in_names_and_queries(tmp_path, monkeypatch) -> None:
    import vplink.cli_kb

    monkeypatch.setattr(vplink.cli_kb.console, "width", 400)  # no folded cells
    kb = tmp_path / "kb.jsonl"
    kb.write_text(json.dumps({"id": "Q[1]", "name": EVIL, "description": "a [link=file:///etc]trap[/link]"}) + "\n"
                  + json.dumps({"id": "Q2", "name": "Ada Lovelace", "description": "mathematician"}) + "\n",
                  encoding="utf-8")
    index = CliRunner().invoke(app, ["kb", "index", str(kb), "--store", str(tmp_path / "s"),
                                     "--image-encoder", "none"])
    assert index.exit_code == 0, index.output
    out = CliRunner().invoke(app, ["kb", "search", str(tmp_path / "s"), "[/x] Evil", "--mention", "[bold]"])
    assert out.exit_code == 0, out.output
    assert "[bold red]Evil[/bold red] [/x] :smile:" in out.stdout
    assert "Q[1]" in out.stdout and "[link=file:///etc]trap[/link]" in out.stdout
    assert "'[/x] Evil'" in out.stdout and "'[bold]'" in out.stdout


def test_link_result_prints_every_field_as_text() -> None:
    result = LinkResult(
        query=LinkQuery(id="q", text=EVIL),
        ranking=[RankedEntity(id="Q[1]", name=EVIL, score=0.5, description="[/desc]")],
        description=Description(entity_type="[person]", names=["[/a]"], rationale="[italic]why[/italic]"),
        used_model="[model]", evidence_text="OCR: [/b]", notes=["note [red]x[/red]"], timings_ms={"[t]": 1.0})
    buffer = io.StringIO()
    print_result(result, Console(file=buffer, width=400, emoji=False, highlight=False))
    text = buffer.getvalue()
    for piece in (EVIL, "Q[1]", "[/desc]", "[person]", "[/a]", "[italic]why[/italic]", "[model]", "OCR: [/b]",
                  "note [red]x[/red]", "[t] 1 ms"):
        assert piece in text, piece
