"""`vplink link`: link a box on a picture to KB entities and show why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vplink.cli_options import linker_settings, say_model_server, with_linker_flags
from vplink.console import data_console


@with_linker_flags
def link(
    image: Annotated[Path, typer.Argument(help="The picture")],
    box: Annotated[Optional[str], typer.Option(help="x0,y0,x1,y1 in pixels; omit for the whole picture")] = None,
    text: Annotated[Optional[str], typer.Option(help="Caption or text around the picture")] = None,
    mention: Annotated[Optional[str], typer.Option(help="The mention word, if any")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON")] = False,
    *, linker_flags: dict[str, Any],
) -> None:
    """Link the region of IMAGE marked by --box to an entity of the KB in --store."""
    from vplink.wiring import open_linker

    settings = linker_settings(**linker_flags)
    err = data_console(stderr=True)
    say_model_server(settings, err)
    linker = open_linker(settings)
    with err.status("linking ..."):  # a spinner on a terminal, silent in a pipe
        result = linker.link(image, box=box, text=text, mention=mention)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=1))
        return
    print_result(result, data_console())


def print_result(result, console: Console) -> None:
    """A readable ranking, the model's reasoning, the evidence and the notes (data is never read as markup)."""
    console.print(("[bold red]" if result.nil else "[bold green]") + escape(result.headline) + "[/]")
    table = Table(title="the near misses (the answer is NIL)" if result.nil else "ranking")
    for column in ("#", "id", "name", "score", "description"):
        table.add_column(column, overflow="fold")
    for rank, entity in enumerate(result.ranking[:10], start=1):
        table.add_row(str(rank), escape(entity.id), escape(entity.name), f"{entity.score:.4f}",
                      escape(entity.description[:70]))
    console.print(table)
    if result.description:
        d = result.description
        guesses = escape(", ".join(d.names) or "—")
        console.print(f"[bold]model[/] {escape(str(result.used_model))}: {escape(d.entity_type)}; guesses {guesses} "
                      f"(confidence {d.confidence:.2f})")
    if result.rationale:
        console.print(f"[bold]rationale[/] {escape(result.rationale)}")
    console.print(f"[bold]evidence[/] {escape(result.evidence_text)}")
    for note in result.notes:
        console.print(f"[yellow]note[/] {escape(note)}")
    console.print("[dim]" + escape(", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items())) + "[/]")
