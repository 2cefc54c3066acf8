"""Fit the box-to-person alignment's knobs by leave-one-picture-out cross-validation.

    python -m vplink.eval.tune_box tests/fixtures/wikimel_with_images_boxed.jsonl --store stores/wikimel \
        --images ../shared/data/wikimel --out results/box

The visual evidence of every box (faces, text in the box) is computed once and cached in
``OUT/evidence.jsonl`` (resumable); each caption person is searched once as the mention, so a
grid point costs only the mixing. For each picture, the grid point with the best Hits@1 on the
*other* pictures is scored on it; the cross-validated Hits@1 is the mean over pictures' boxes.
The point best on all pictures is the one to ship as the defaults (``tune.json`` records both).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from vplink.agent.alignment import AlignmentParams, align_box
from vplink.agent.caption_people import find_people
from vplink.agent.settings import LinkerConfig
from vplink.core.jsonl import append_jsonl, read_completed_ids, read_jsonl, write_json
from vplink.core.provenance import provenance
from vplink.eval.datasets import read_dataset
from vplink.retrieval.factory import open_retriever
from vplink.retrieval.search import QueryViews, mix_fused

GRID: dict[str, list[float]] = {
    "order_trust_assumed": [0.2, 0.4, 0.6, 0.8],
    "spread_exact": [0.15, 0.25, 0.35, 0.5],
    "spread_per_mismatch": [0.1, 0.25, 0.45, 0.7],
    "sharpness": [1.0, 4.0, 8.0, 16.0, 32.0],
}


def collect(examples, out: Path) -> dict[str, dict[str, Any]]:
    """Faces and text in the box of every example, cached line by line in ``out/evidence.jsonl``."""
    path = out / "evidence.jsonl"
    read_completed_ids(path)  # drops a line torn by an interrupted run, so the cache reads back whole
    done = {row["id"]: row for row in read_jsonl(path)} if path.is_file() else {}
    with path.open("a", encoding="utf-8") as handle:
        _collect_missing(examples, done, handle)
    return done


def _collect_missing(examples, done: dict[str, dict[str, Any]], handle) -> None:
    from vplink.agent.evidence.collect import collect_evidence
    from vplink.agent.visual_prompt import VisualPrompt

    for example in examples:
        if example.id in done:
            continue
        # What `prepare` computes for the alignment: the prompt's marked box and width, faces and text in the box.
        prompt = VisualPrompt.load(example.image, example.box)
        marked = None if prompt.marked_box is None else list(prompt.marked_box)
        found = collect_evidence(prompt, tools=("faces", "ocr")).model_dump(mode="json")
        row = {"id": example.id, "faces": found["faces"], "box": marked, "width": prompt.size[0],
               "ocr": " ".join(line["text"] for line in (found.get("ocr") or {}).get("lines", []))}
        append_jsonl(handle, row)  # flushed line by line: an interrupted run keeps what it computed
        done[example.id] = row


def hits_at_1(params: AlignmentParams, sharpness: float, items: list[dict[str, Any]]) -> list[bool]:
    """Whether each item's top entity is its gold answer under these knobs."""
    out = []
    for item in items:
        alignment = align_box(item["people"], item["faces"], item["box"], item["width"], item["ocr"], params)
        weights = dict(alignment.weighted(sharpness))
        parts = [(weights.get(text, 0.0), fused) for text, fused in item["fused"].items() if weights.get(text, 0) > 0]
        mixed = mix_fused(parts) if parts else item["no_people"]
        top = min(mixed.scores.items(), key=lambda kv: (-kv[1], kv[0]))[0] if mixed else None
        out.append(top == item["answer"])
    return out


def main(argv: list[str] | None = None) -> None:
    """Cache the evidence, search each caption person once, grid-search the knobs, cross-validate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--store", required=True)
    parser.add_argument("--images", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    examples = read_dataset(args.dataset, "auto", args.images).examples
    evidence = collect(examples, args.out)
    retriever = open_retriever(args.store, image_encoder="none")
    items = []
    for example in examples:
        ev = evidence[example.id]
        people = find_people(example.text, retriever.person_names)
        views = [QueryViews(mention=span.text, context=" ".join(t for t in (example.text, ev["ocr"]) if t))
                 for span in people.spans]
        base = QueryViews(context=" ".join(t for t in (example.text, ev["ocr"]) if t))
        rankings = retriever.channel_rankings([*views, base])
        fused = {span.text: retriever.fuse(r) for span, r in zip(people.spans, rankings)}
        items.append({"id": example.id, "picture": example.image, "answer": example.answer, "people": people,
                      "faces": ev["faces"], "box": ev["box"], "width": ev["width"], "ocr": ev["ocr"],
                      "fused": fused, "no_people": retriever.fuse(rankings[-1])})
    points = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    scores = []
    for point in points:
        knobs = {k: v for k, v in point.items() if k != "sharpness"}
        scores.append(hits_at_1(AlignmentParams(**knobs), point["sharpness"], items))
    pictures = sorted({item["picture"] for item in items})
    held_out_hits = 0
    for picture in pictures:
        train = [i for i, item in enumerate(items) if item["picture"] != picture]
        test = [i for i, item in enumerate(items) if item["picture"] == picture]
        best = max(range(len(points)), key=lambda p: (sum(scores[p][i] for i in train), -p))
        held_out_hits += sum(scores[best][i] for i in test)
    best_all = max(range(len(points)), key=lambda p: (sum(scores[p]), -p))
    default, sharpness = AlignmentParams(), LinkerConfig().people_sharpness
    default_point = next(p for p, point in enumerate(points) if point == {
        "order_trust_assumed": default.order_trust_assumed, "spread_exact": default.spread_exact,
        "spread_per_mismatch": default.spread_per_mismatch, "sharpness": sharpness})
    result = {"dataset": str(args.dataset), "examples": len(items), "pictures": len(pictures), "grid": GRID,
              "lopo_cv_hits@1": round(held_out_hits / len(items), 4),
              "best_on_all": points[best_all], "best_on_all_hits@1": round(sum(scores[best_all]) / len(items), 4),
              "shipped_defaults_hits@1": round(sum(scores[default_point]) / len(items), 4),
              "note": "Hits@1 of retrieval mixed over the caption's people, no model; evidence: faces + OCR",
              "provenance": provenance()}
    write_json(args.out / "tune.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
