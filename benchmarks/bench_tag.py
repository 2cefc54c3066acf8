"""`vplink tag` over the 38 WikiMEL pictures with their captions: pictures a minute, the faces found against the
people the captions name, and how many of the boxed people the tags name.

    python benchmarks/bench_tag.py --dataset tests/fixtures/wikimel_with_images_boxed.jsonl \
        --images ../shared/data/wikimel --store stores/wikimel --out benchmarks/results/tag_wikimel.json

Each picture once, with its caption, no box (every face found), no model server; the run folder (pictures.jsonl,
people.csv, contact_sheet.html) goes to --run (a temporary folder by default). The boxed mentions' gold answers
are read only to count how many of those people the tags name. Writes JSON with the commit and CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from vplink.agent.alignment import PERSON_SCORE_FOR_COUNT
from vplink.agent.archive import read_archive, tag_archive
from vplink.agent.caption_people import find_people
from vplink.core.jsonl import write_json, write_jsonl
from vplink.core.provenance import provenance
from vplink.eval.datasets import read_dataset
from vplink.wiring import open_linker


def main(argv: list[str] | None = None) -> None:
    """Tag every picture of the dataset once and count what was found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run", type=Path, default=None, help="the tag run folder (default: a temporary one)")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    pictures: dict[str, dict] = {}
    for example in read_dataset(args.dataset, images=args.images).examples:
        picture = pictures.setdefault(example.image, {"image": example.image, "text": example.text, "gold": set()})
        picture["gold"].add(example.answer)
    run = args.run or Path(tempfile.mkdtemp(prefix="vplink-bench-tag-"))
    archive = run.parent / f"{run.name}-archive.jsonl"
    write_jsonl(archive, [{"image": p["image"], "text": p["text"]} for p in pictures.values()])
    linker = open_linker(store=args.store)
    load_before = os.getloadavg()
    started = time.perf_counter()
    lines = tag_archive(linker, read_archive(archive), run, identity={"store": args.store}, resume=False,
                        concurrency=args.concurrency)
    seconds = time.perf_counter() - started
    named = {p["image"]: sum(1 for span in find_people(p["text"], linker.retriever.person_names).spans
                             if span.person_score >= PERSON_SCORE_FOR_COUNT) for p in pictures.values()}
    faces = {line.image: len(line.people) for line in lines}
    answers = {line.image: {person.answer for person in line.people if person.answer} for line in lines}
    boxed = sum(len(p["gold"]) for p in pictures.values())
    result = {
        "dataset": str(args.dataset), "store": args.store, "pictures": len(lines), "concurrency": args.concurrency,
        "seconds": round(seconds, 1), "pictures_per_minute": round(60 * len(lines) / seconds, 2),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "skipped": sum(1 for line in lines if line.error),
        "faces_found": sum(faces.values()), "people_the_captions_name": sum(named.values()),
        "pictures_with_as_many_faces_as_named_people": sum(1 for i in faces if faces[i] == named[i]),
        "pictures_with_fewer_faces": sum(1 for i in faces if faces[i] < named[i]),
        "pictures_with_more_faces": sum(1 for i in faces if faces[i] > named[i]),
        "faces_named": sum(len(a) for a in answers.values()),
        "faces_unknown": sum(faces.values()) - sum(len(a) for a in answers.values()),
        "boxed_people": boxed,
        "boxed_people_among_the_tags": sum(len(p["gold"] & answers.get(p["image"], set())) for p in pictures.values()),
        "provenance": provenance(),
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
