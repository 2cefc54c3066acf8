"""`vplink kb`: index a KB into Chroma and search it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from vplink.console import data_console

kb_app = typer.Typer(help="Index a knowledge base and search it.", no_args_is_help=True)
console = data_console()


@kb_app.command("index")
def index(
    kb: Annotated[Path, typer.Argument(help="KB file, JSON Lines: id, name, aliases, description, type, image")],
    store: Annotated[Optional[Path], typer.Option(help="Folder of the embedded Chroma store")] = None,
    chroma_url: Annotated[Optional[str], typer.Option(help="A Chroma server instead, e.g. http://127.0.0.1:8000")] = None,
    text_model: Annotated[Optional[Path], typer.Option(help="Local sentence-transformers folder")] = None,
    text_backend: Annotated[Optional[str], typer.Option(
        help="torch (GPU), openvino (CPU, same vectors; the CPU default), onnx (onnxruntime, same vectors), "
             "openvino-bf16 (CPUs with bfloat16: faster, nearly the same vectors) or onnx-int8 (int8 weights, "
             "a little less accurate); $VPLINK_TEXT_BACKEND sets the default")] = None,
    image_encoder: Annotated[str, typer.Option(help="efficientnet-lite0, clip:/path/to/clip, or none")] = "efficientnet-lite0",
    faces: Annotated[bool, typer.Option(help="Add a face view (dlib descriptors of the entities' portraits)")] = True,
    face_models: Annotated[Optional[Path], typer.Option(help="Folder of dlib's face model files "
                                                        "(default: the face-recognition-models package)")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Index the valid lines and report the others")] = False,
    rebuild: Annotated[bool, typer.Option(help="Drop the store's views and re-embed everything")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 256,
    prefix: Annotated[str, typer.Option(help="Collection name prefix: several KBs can share one server")] = "vplink",
    image_root: Annotated[Optional[Path], typer.Option(
        help="Folder the KB's image paths must stay under (default: the KB file's folder)")] = None,
) -> None:
    """Embed every entity into one Chroma collection per view; re-running updates only what changed."""
    from vplink.retrieval.kb import load_kb
    from vplink.retrieval.store import CATALOGUE_VIEW, KBStore
    from vplink.retrieval.text_encoder import TextEncoder

    location = _location(store, chroma_url)
    loaded = load_kb(kb, skip_invalid=skip_invalid, image_root=image_root)
    for skipped in loaded.skipped:
        console.print(f"[yellow]skipped[/] {escape(skipped.reason)}")
    images = None
    if image_encoder != "none" and any(e.image for e in loaded.entities):
        from vplink.retrieval.image_encoders import load_image_encoder

        images = load_image_encoder(image_encoder)
    face_encoder = None
    if faces and any(e.image for e in loaded.entities):
        from vplink.retrieval.faces import FaceEncoder, FaceModels

        face_encoder = FaceEncoder(FaceModels(face_models))
    started = time.perf_counter()
    kb_store = KBStore(location, prefix=prefix)
    # Re-indexing keeps the backend the store was built with (a store made before openvino was the CPU
    # default stays onnx): only --text-backend or --rebuild changes it.
    backend = text_backend or (None if rebuild else kb_store.backend_of(CATALOGUE_VIEW))
    try:
        report = kb_store.index(loaded.entities, TextEncoder(text_model, backend=backend), images,
                                face_encoder=face_encoder, batch_size=batch_size, rebuild=rebuild)
    except KeyboardInterrupt:
        # Every chunk embedded before the interruption is written; the store's hashes skip them next time.
        data_console(stderr=True).print(f"[yellow]interrupted[/]: what was embedded so far is kept in "
                                        f"{escape(str(location))}. Run the same command again to resume: "
                                        "unchanged entities are skipped")
        raise typer.Exit(130) from None
    console.print(escape(report.summary()))
    for problem in report.image_errors:
        console.print(f"[yellow]image skipped[/] {escape(str(problem))}")
    console.print(f"{len(loaded.entities)} entities indexed into {escape(str(location))} in {time.perf_counter() - started:.1f} s"
                  + (f"; {len(loaded.skipped)} invalid lines skipped" if loaded.skipped else ""))


@kb_app.command("search")
def search(
    store: Annotated[str, typer.Argument(help="Store folder or Chroma server URL")],
    query: Annotated[str, typer.Argument(help="Context text, e.g. a caption")],
    mention: Annotated[Optional[str], typer.Option(help="The mention, if there is one")] = None,
    name: Annotated[Optional[list[str]], typer.Option(help="A name guess (repeatable)")] = None,
    k: Annotated[int, typer.Option("-k", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines")] = False,
    prefix: Annotated[Optional[str], typer.Option(help="The KB's collection prefix (needed when the store "
                                                         "holds several KBs)")] = None,
    text_model: Annotated[Optional[Path], typer.Option(help="Local sentence-transformers folder (default: the "
                                                             "one the store was built with)")] = None,
) -> None:
    """Print the top-k fused candidates for a query with their per-view ranks."""
    from vplink.retrieval.factory import open_retriever
    from vplink.retrieval.search import QueryViews

    retriever = open_retriever(store, prefix=prefix, text_model=text_model)
    started = time.perf_counter()
    candidates = retriever.search(QueryViews(mention=mention, context=query, names=name or []), k=k)
    elapsed = (time.perf_counter() - started) * 1000
    if as_json:
        typer.echo(json.dumps([c.model_dump(mode="json", exclude={"entity"}) | {
            "description": c.entity.description if c.entity else ""} for c in candidates], ensure_ascii=False, indent=1))
        return
    table = Table(title=escape(f"top {len(candidates)} for {query!r}" + (f" (mention {mention!r})" if mention else "")))
    for column in ("#", "id", "name", "score", "ranks by channel", "description"):
        table.add_column(column, overflow="fold")
    for rank, cand in enumerate(candidates, start=1):
        ranks = ", ".join(f"{ch}:{hit.rank}" for ch, hit in sorted(cand.hits.items(), key=lambda kv: kv[1].rank))
        desc = cand.entity.description[:80] if cand.entity else ""
        table.add_row(str(rank), escape(cand.id), escape(cand.name), f"{cand.score:.4f}", ranks, escape(desc))
    console.print(table)
    console.print(f"[dim]{elapsed:.0f} ms[/]")


@kb_app.command("ablate")
def ablate(
    kb: Annotated[Path, typer.Argument(help="KB file, JSON Lines")],
    dataset: Annotated[Path, typer.Option(help="The dataset (vplink JSON Lines) whose mentions pick the removed "
                                               "entities")],
    out: Annotated[Path, typer.Option(help="Folder for kb.jsonl, the ablated dataset and ablation.json")],
    fraction: Annotated[float, typer.Option(help="Share of the dataset's linkable mentions whose gold is removed")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the random pick")] = 0,
) -> None:
    """Remove the gold entities of a seeded random share of DATASET's mentions from KB, so that their answer is
    NIL: the standard way to measure NIL detection on data without NIL answers."""
    from vplink.eval.ablation import ablate as run_ablation

    done = run_ablation(kb, dataset, out, fraction=fraction, seed=seed)
    console.print(f"{len(done.removed_entities)} entities removed ({done.entities_before} -> {done.entities_after}); "
                  f"{done.nil_mentions} of {done.mentions} mentions now answer NIL. Wrote "
                  f"{escape(str(out / 'kb.jsonl'))}, {escape(str(out / dataset.name))} and ablation.json")


def _location(store: Path | None, chroma_url: str | None) -> str:
    if bool(store) == bool(chroma_url):
        raise typer.BadParameter("give exactly one of --store DIR or --chroma-url URL")
    return chroma_url or str(store)
