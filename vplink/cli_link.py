"""`vplink link`: link a box on a picture to KB entities and show why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vplink.console import data_console

LLM_TIMEOUT_HELP = "Seconds one model request may take (the first check that the server answers takes seconds)"


def link(
    image: Annotated[Path, typer.Argument(help="The picture")],
    store: Annotated[str, typer.Option(help="Store folder or Chroma server URL")],
    box: Annotated[Optional[str], typer.Option(help="x0,y0,x1,y1 in pixels; omit for the whole picture")] = None,
    text: Annotated[Optional[str], typer.Option(help="Caption or text around the picture")] = None,
    mention: Annotated[Optional[str], typer.Option(help="The mention word, if any")] = None,
    llm_url: Annotated[Optional[str], typer.Option(help="vLLM server, e.g. http://127.0.0.1:8801/v1")] = None,
    llm_model: Annotated[Optional[str], typer.Option(help="Served model name (default: the server's first)")] = None,
    llm_timeout: Annotated[Optional[float], typer.Option(min=0.1, help=LLM_TIMEOUT_HELP)] = None,
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
    from vplink.agent.llm_client import LLMConfig
    from vplink.agent.nodes import LinkerConfig
    from vplink.wiring import load_reranker

    err = data_console(stderr=True)
    if llm_url:
        err.print(f"asking the model server at {escape(llm_url)} "
                  f"(up to {llm_timeout or LLMConfig().timeout_s:g} s per request; --llm-timeout changes it) ...")
    linker = Linker.open(store, llm_url=llm_url, llm_model=llm_model, vision=vision, llm_timeout=llm_timeout,
                         reranker=load_reranker(scorer, store, prefix=prefix), config=LinkerConfig(k=k),
                         prefix=prefix, text_model=text_model)
    with err.status("linking ..."):  # a spinner on a terminal, silent in a pipe
        result = linker.link(image, box=box, text=text, mention=mention)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, indent=1))
        return
    print_result(result, data_console())


def print_result(result, console: Console) -> None:
    """A readable ranking, the model's reasoning, the evidence and the notes (data is never read as markup)."""
    table = Table(title="NIL: no KB entity fits" if result.nil else "ranking")
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
