"""`vplink tag`: name everyone in every picture of an archive (a folder, or a JSONL of {"image", "text"})."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vplink.cli_options import linker_settings, say_model_server, with_linker_flags
from vplink.console import data_console


@with_linker_flags
def tag(
    source: Annotated[Path, typer.Argument(help="A folder of pictures, or a JSONL of {\"image\", \"text\"} records "
                                                "(paths relative to the file)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: pictures.jsonl, people.csv, "
                                                          "contact_sheet.html; resumed if it exists")],
    concurrency: Annotated[int, typer.Option(min=1, help="Pictures linked at once")] = 1,
    restart: Annotated[bool, typer.Option(help="Start the run in --out over, dropping its pictures")] = False,
    *, linker_flags: dict[str, Any],
) -> None:
    """Link every face in every picture jointly (one entity per person, unknown allowed), resumably."""
    from vplink.agent.archive import CONTACT_SHEET, PEOPLE_CSV, PICTURES, read_archive, tag_archive
    from vplink.retrieval.store import is_url
    from vplink.wiring import open_linker

    settings = linker_settings(**linker_flags)
    err = data_console(stderr=True)
    tasks = read_archive(source)  # a bad input file stops here, before any model loads
    say_model_server(settings, err)
    linker = open_linker(settings)
    store = settings.store if is_url(settings.store) else str(Path(settings.store).resolve())
    identity = {"source": str(source.resolve()), "store": store, "prefix": settings.prefix, "k": settings.k,
                "llm_url": settings.llm_url, "llm_model": settings.llm_model, "vision": settings.vision,
                "scorer": str(settings.scorer.resolve()) if settings.scorer else None}
    lines = tag_archive(linker, tasks, out, identity=identity, concurrency=concurrency, resume=not restart)
    people = [person for line in lines for person in line.people]
    named = sum(1 for person in people if person.answer)
    skipped = sum(1 for line in lines if line.error)
    data_console().print(escape(f"{len(lines)} pictures: {len(people)} people found, {named} named, "
                                f"{len(people) - named} unknown; {skipped} skipped. Wrote {out / PICTURES}, "
                                f"{out / PEOPLE_CSV}, {out / CONTACT_SHEET}"))
