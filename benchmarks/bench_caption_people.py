"""How often the caption's person spans hold the hidden mention, and how many spans a caption yields.

    python benchmarks/bench_caption_people.py --dataset ../shared/data/wikimel/dev.jsonl \
        --kb ../shared/data/wikimel/kb.jsonl --out benchmarks/results/caption_people.json

Text only (no pictures): WikiMEL's captions and mentions, the KB's own name index. Writes JSON with
the git commit it ran on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vplink.agent.caption_people import find_people
from vplink.core.jsonl import read_jsonl, write_json
from vplink.core.provenance import provenance
from vplink.retrieval.kb import load_kb
from vplink.retrieval.lexical import PersonNameIndex, normalize


def main(argv: list[str] | None = None) -> None:
    """Span recall and spans per caption over a dataset's mentions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--kb", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    names = PersonNameIndex(load_kb(args.kb, check_images=False).entities)
    rows = [row for row in read_jsonl(args.dataset) if row.get("mention") and row.get("text")]
    started = time.perf_counter()
    found = spans = 0
    for row in rows:
        people = find_people(row["text"], names)
        spans += len(people.spans)
        mention = normalize(row["mention"])
        found += any(mention in normalize(span.text) for span in people.spans)
    seconds = time.perf_counter() - started
    result = {"dataset": str(args.dataset), "mentions": len(rows), "span_recall": round(found / len(rows), 4),
              "spans_per_caption": round(spans / len(rows), 3), "captions_per_s": round(len(rows) / seconds, 1),
              "provenance": provenance()}
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
