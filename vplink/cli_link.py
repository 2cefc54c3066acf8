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
from vplink.core.errors import VplinkError
from vplink.core.jsonl import atomic_write


@with_linker_flags
def link(
    image: Annotated[Path, typer.Argument(help="The picture")],
    box: Annotated[Optional[list[str]], typer.Option(help="x0,y0,x1,y1 in pixels; omit for the whole picture "
                                                     "(with --all: repeat it, one per person)")] = None,
    text: Annotated[Optional[str], typer.Option(help="Caption or text around the picture")] = None,
    mention: Annotated[Optional[str], typer.Option(help="The mention word, if any")] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Link every face found (or every --box) jointly: "
                                                         "one entity per person, unknown allowed")] = False,
    html: Annotated[Optional[Path], typer.Option(help="With --all: write the picture, every box numbered and "
                                                      "named, as a self-contained HTML page here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON (with --all: one record "
                                                         "per person)")] = False,
    *, linker_flags: dict[str, Any],
) -> None:
    """Link the region of IMAGE marked by --box to an entity of the KB in --store (--all: everyone in IMAGE)."""
    from vplink.wiring import open_linker

    if not everyone and (len(box or []) > 1 or html):
        raise VplinkError("several --box, or --html, link several people at once. Fix: add --all")
    if everyone and mention:
        raise VplinkError("--mention names one person, --all links everyone. Fix: drop one of them")
    settings = linker_settings(**linker_flags)
    err = data_console(stderr=True)
    say_model_server(settings, err)
    linker = open_linker(settings)
    if everyone:
        with err.status("linking everyone ..."):
            picture = linker.link_all(image, text, boxes=box or None)
        _show_picture(picture, as_json, html)
        return
    with err.status("linking ..."):  # a spinner on a terminal, silent in a pipe
        result = linker.link(image, box=box[0] if box else None, text=text, mention=mention)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=1))
        return
    print_result(result, data_console())


def _show_picture(picture, as_json: bool, html: Path | None) -> None:
    """Everyone in the picture: JSON records, or a table; and the HTML page when asked."""
    if html is not None:
        with atomic_write(html) as handle:
            handle.write("<!doctype html><meta charset=utf-8><title>vplink</title>" + picture._repr_html_())
    people = picture.people()
    if as_json:
        typer.echo(json.dumps([person.model_dump(mode="json") for person in people], ensure_ascii=False, indent=1))
        return
    console = data_console()
    table = Table(title=f"{len(people)} {picture.boxes_from}, linked jointly")
    for column in ("#", "box", "answer", "name", "confidence", "changed by the joint decision", "next"):
        table.add_column(column, overflow="fold")
    for number, person in enumerate(people, start=1):
        table.add_row(str(number), escape(",".join(f"{v:g}" for v in person.box or [])) or "whole picture",
                      escape(person.answer or "unknown"), escape(person.name or ""),
                      "" if person.confidence is None else f"{person.confidence:.2f}",
                      "yes" if person.changed_by_joint else "",
                      escape(", ".join(r["name"] or r["id"] for r in person.ranking[1:4])))
    console.print(table)
    if html is not None:
        console.print(f"Wrote {escape(str(html))}")


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
