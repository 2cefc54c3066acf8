"""KB ablation: the standard way to measure NIL on a dataset whose answers are all in the KB.

The gold entities of a seeded random share of the dataset's mentions are removed from the KB, and every
mention whose gold was removed gets the answer null (NIL). Linking the ablated dataset against the ablated KB
then measures NIL precision / recall / F1 and what abstention costs the in-KB mentions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from vplink.core.errors import InputFileError, VplinkError
from vplink.core.jsonl import iter_jsonl, write_json, write_jsonl
from vplink.core.provenance import git_version
from vplink.eval.datasets import file_sha1

#: Fields of KB and dataset lines that hold picture paths relative to their file's folder.
_IMAGE_FIELDS = ("image",)


class Ablation(BaseModel):
    """What an ablation removed, and from which files (written as ``ablation.json`` beside its outputs)."""

    kb: str
    kb_sha1: str
    dataset: str
    dataset_sha1: str
    fraction: float
    seed: int
    sampled_mentions: int
    removed_entities: list[str]
    nil_mentions: int
    mentions: int
    entities_before: int
    entities_after: int
    code: dict[str, Any]


def ablate(kb: Path, dataset: Path, out: Path, *, fraction: float = 0.2, seed: int = 0) -> Ablation:
    """Write ``out/kb.jsonl`` without the golds of a seeded random ``fraction`` of ``dataset``'s linkable mentions,
    and ``out/<dataset name>`` with the answers of every mention whose gold was removed set to null."""
    if not 0 < fraction < 1:
        raise VplinkError(f"--fraction {fraction} is not between 0 and 1. Fix: pass e.g. --fraction 0.2")
    kb_rows, rows = _objects(kb), _objects(dataset)
    known = {str(row.get("id")) for row in kb_rows}
    linkable = [i for i, row in enumerate(rows) if row.get("answer") is not None and str(row["answer"]) in known]
    if not linkable:
        raise VplinkError(f"{dataset}: no mention's answer is an entity of {kb}. Fix: pass the dataset of this KB")
    picked = np.random.default_rng(seed).choice(len(linkable), size=max(1, round(fraction * len(linkable))),
                                                replace=False)
    removed = sorted({str(rows[linkable[i]]["answer"]) for i in picked.tolist()})
    gone = set(removed)
    out.mkdir(parents=True, exist_ok=True)
    kept = [_rebased(row, kb.parent, out) for row in kb_rows if str(row.get("id")) not in gone]
    ablated = [_rebased({**row, "answer": None} if str(row.get("answer")) in gone else row, dataset.parent, out)
               for row in rows]
    write_jsonl(out / "kb.jsonl", kept)
    write_jsonl(out / dataset.name, ablated)
    record = Ablation(kb=str(kb), kb_sha1=file_sha1(kb), dataset=str(dataset), dataset_sha1=file_sha1(dataset),
                      fraction=fraction, seed=seed, sampled_mentions=len(picked), removed_entities=removed,
                      nil_mentions=sum(row["answer"] is None for row in ablated) -
                      sum(row.get("answer") is None for row in rows),
                      mentions=len(rows), entities_before=len(kb_rows), entities_after=len(kept),
                      code=git_version())
    write_json(out / "ablation.json", record.model_dump())
    return record


def _objects(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file; a line that is not an object is an error naming it."""
    rows = []
    for line, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise InputFileError(path, f"a {type(row).__name__}, not a JSON object", line=line,
                                 fix="write one JSON object per line")
        rows.append(row)
    return rows


def _rebased(row: dict[str, Any], source: Path, out: Path) -> dict[str, Any]:
    """``row`` with its relative picture paths rewritten to point from ``out`` to the same files."""
    fixed = dict(row)
    for field in _IMAGE_FIELDS:
        value = row.get(field)
        if isinstance(value, str):
            fixed[field] = _relative(value, source, out)
        elif isinstance(value, list):
            fixed[field] = [_relative(v, source, out) if isinstance(v, str) else v for v in value]
    return fixed


def _relative(path: str, source: Path, out: Path) -> str:
    # A path that is not a file beside its source is one the user resolves with --images: left as it is.
    if "://" in path or Path(path).is_absolute() or not (source / path).is_file():
        return path
    return os.path.relpath((source / path).resolve(), out.resolve())
