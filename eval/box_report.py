"""VP-MEL measures of a run: did the caption parsing find the marked person, did the box pick them,
and does the box change the answer?

Computed from a run folder's predictions (``extra["alignment"]``, written by the agent pipeline)
and the dataset with its mentions (hidden from the run itself by ``--no-mention``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from vplink.core.jsonl import write_json
from vplink.core.records import LabeledQuery
from vplink.core.rundir import RunDirError
from vplink.eval.harness import PREDICTIONS, read_predictions
from vplink.retrieval.lexical import normalize

BOX_REPORT = "box_report.json"


def _names_mention(span: str, mention: str) -> bool:
    """Whether a caption span is the mention ("Noah Beery" ~ "Noah Beery, Sr."; "Scott" ~ "Scott")."""
    a, b = normalize(span), normalize(mention)
    return bool(a) and bool(b) and (a == b or f" {b} " in f" {a} " or f" {a} " in f" {b} ")


def box_report(run_dir: str | Path, examples: list[LabeledQuery]) -> dict[str, Any]:
    """Span recall, box-to-span accuracy, Hits@1/5 and MRR, answer diversity per picture, seconds per node."""
    path = Path(run_dir) / PREDICTIONS
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no {PREDICTIONS} here. Fix: make the run first, e.g. `vplink eval DATASET "
                          f"--store STORE --pipeline agent --no-mention --out {run_dir}`")
    predictions = read_predictions(path)
    rows = [(e, predictions[e.id]) for e in examples if e.id in predictions]
    recall = aligned = scored = 0
    ranks: list[int | None] = []
    per_picture: dict[str, list[str | None]] = defaultdict(list)
    nodes: dict[str, list[float]] = defaultdict(list)
    for example, prediction in rows:
        alignment = prediction.extra.get("alignment") or {}
        spans = alignment.get("spans") or []
        if example.mention:
            scored += 1
            recall += any(_names_mention(span, example.mention) for span in spans)
            if spans:
                best = spans[int(np.argmax(alignment.get("probabilities") or [0]))]
                aligned += _names_mention(best, example.mention)
        # A NIL answer (a box the joint decision left unknown) is a miss, and shares its top-1 with nobody.
        ranks.append(None if prediction.nil else prediction.rank_of(example.answer))
        per_picture[example.image or example.id].append(prediction.ranking[0].id if prediction.ranking
                                                        and not prediction.nil else None)
        for node, ms in prediction.latency_ms.items():
            nodes[node].append(ms / 1000)
    multi = {image: tops for image, tops in per_picture.items() if len(tops) >= 2}
    model = _model_choices(rows)
    n = len(rows)
    return {
        "examples": n,
        "span_recall": round(recall / scored, 4) if scored else None,
        "box_to_span_accuracy": round(aligned / scored, 4) if scored else None,
        "hits@1": round(sum(1 for r in ranks if r == 1) / n, 4) if n else None,
        "hits@5": round(sum(1 for r in ranks if r is not None and r <= 5) / n, 4) if n else None,
        "mrr": round(sum(1 / r for r in ranks if r) / n, 4) if n else None,
        "multi_box_pictures": len(multi),
        "pictures_where_boxes_differ": round(sum(1 for tops in multi.values() if len(set(tops)) > 1) / len(multi), 4)
        if multi else None,
        "pictures_where_every_box_differs": round(sum(1 for tops in multi.values() if len(set(tops)) == len(tops))
                                                  / len(multi), 4) if multi else None,
        "pictures_where_two_boxes_share_a_top1": round(sum(1 for tops in multi.values() if _shared(tops))
                                                       / len(multi), 4) if multi else None,
        "nil_answers": sum(1 for _, prediction in rows if prediction.nil),
        "changed_by_joint_decision": sum(1 for _, prediction in rows
                                         if (prediction.extra.get("joint") or {}).get("changed")),
        "model_choice": model,
        "seconds_per_box": {node: {"mean": round(statistics.fmean(v), 3), "p50": round(float(np.percentile(v, 50)), 3),
                                   "p95": round(float(np.percentile(v, 95)), 3)} for node, v in sorted(nodes.items())},
    }


def _shared(tops: list[str | None]) -> bool:
    """Whether two boxes of one picture got the same entity (unknown boxes share nothing)."""
    named = [top for top in tops if top is not None]
    return len(set(named)) < len(named)


_CHOSE = "the model chose "


def _chosen(prediction) -> str | None:
    """The caption person the model chose, if it was asked (older runs carry it only in their notes)."""
    choice = prediction.extra.get("choice")
    if choice:
        return choice.get("person")
    note = next((n for n in prediction.extra.get("notes", []) if n.startswith(_CHOSE)), None)
    return note[len(_CHOSE):].split(":", 1)[0] if note else None


def _model_choices(rows) -> dict[str, int]:
    """How often the model's choice named the hidden mention, overall and where it differed from the
    alignment's likeliest person (and how often the alignment was right there)."""
    out = {"asked": 0, "right": 0, "disagreed_with_alignment": 0, "right_where_disagreed": 0,
           "alignment_right_where_disagreed": 0}
    for example, prediction in rows:
        person, alignment = _chosen(prediction), prediction.extra.get("alignment") or {}
        if person is None or not example.mention or not alignment.get("spans"):
            continue
        best = alignment["spans"][int(np.argmax(alignment["probabilities"]))]
        right = _names_mention(person, example.mention)
        out["asked"] += 1
        out["right"] += right
        if person != best:
            out["disagreed_with_alignment"] += 1
            out["right_where_disagreed"] += right
            out["alignment_right_where_disagreed"] += _names_mention(best, example.mention)
    return out


def write_box_report(run_dir: str | Path, examples: list[LabeledQuery]) -> dict[str, Any]:
    """Compute :func:`box_report` and write it as ``box_report.json`` in the run folder."""
    report = box_report(run_dir, examples)
    write_json(Path(run_dir) / BOX_REPORT, report)
    return report
