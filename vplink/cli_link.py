"""`vplink link`: link a box on a picture to KB entities and show why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table


def link(
    image: Annotated[Path, typer.Argument(help="The picture")],
    store: Annotated[str, typer.Option(help="Store folder or Chroma server URL")],
    box: Annotated[Optional[str], typer.Option(help="x0,y0,x1,y1 in pixels; omit for the whole picture")] = None,
    text: Annotated[Optional[str], typer.Option(help="Caption or text around the picture")] = None,
    mention: Annotated[Optional[str], typer.Option(help="The mention word, if any")] = None,
    llm_url: Annotated[Optional[str], typer.Option(help="vLLM server, e.g. http://127.0.0.1:8801/v1")] = None,
    llm_model: Annotated[Optional[str], typer.Option(help="Served model name (default: the server's first)")] = None,
    vision: Annotated[bool, typer.Option(help="The model sees images: send the marked picture and the crop")] = False,
    scorer: Annotated[Optional[Path], typer.Option(help="A distilled scorer folder to rerank with")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="Candidates to keep")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON")] = False,
    prefix: Annotated[Optional[str], typer.Option(help="The KB's collection prefix (needed when the store holds "
                                                         "several KBs)")] = None,
    text_model: Annotated[Optional[Path], typer.Option(help="Text model folder (default: the one the store was "
                                                             "built with)")] = None,
) -> None:
    """Link the region of IMAGE marked by --box to an entity of the KB in --store."""
    from vplink.agent.linker import Linker
    from vplink.agent.nodes import LinkerConfig
    from vplink.wiring import load_reranker

    linker = Linker.open(store, llm_url=llm_url, llm_model=llm_model, vision=vision,
                         reranker=load_reranker(scorer, store, prefix=prefix), config=LinkerConfig(k=k),
                         prefix=prefix, text_model=text_model)
    result = linker.link(image, box=box, text=text, mention=mention)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=1))
        return
    print_result(result, Console())


def print_result(result, console: Console) -> None:
    """A readable ranking, the model's reasoning, the evidence and the notes."""
    table = Table(title="NIL: no KB entity fits" if result.nil else "ranking")
    for column in ("#", "id", "name", "score", "description"):
        table.add_column(column, overflow="fold")
    for rank, entity in enumerate(result.ranking[:10], start=1):
        table.add_row(str(rank), entity.id, entity.name, f"{entity.score:.4f}", entity.description[:70])
    console.print(table)
    if result.description:
        d = result.description
        console.print(f"[bold]model[/] {result.used_model}: {d.entity_type}; guesses {', '.join(d.names) or '—'} "
                      f"(confidence {d.confidence:.2f})")
    if result.rationale:
        console.print(f"[bold]rationale[/] {result.rationale}")
    console.print(f"[bold]evidence[/] {result.evidence_text}")
    for note in result.notes:
        console.print(f"[yellow]note[/] {note}")
    console.print("[dim]" + ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items()) + "[/]")
