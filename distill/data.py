"""Turning rationale records (and candidates at inference) into the student's input tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vplink.core.records import Entity
from vplink.distill.features import FeatureCache, N_NUMERIC, retrieval_features, store_vectors
from vplink.distill.rationales import NIL, RationaleRecord

#: The keys of a batch the model reads; the others are training targets.
MODEL_KEYS = ("q_mention", "q_caption", "q_visual", "q_visual_mask", "c_name", "c_desc", "numeric", "mask")


def candidate_texts(entity: Entity | None, name: str) -> tuple[str, str]:
    """The (name view, description view) texts of one candidate; a missing entity falls back to its name."""
    if entity is None:
        return name, name
    return entity.name_view(), entity.description_view()


@dataclass
class Tensors:
    """A whole dataset as padded tensors, and the record ids in row order."""

    ids: list[str]
    data: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, index: torch.Tensor | Sequence[int]) -> dict[str, torch.Tensor]:
        """A batch of rows."""
        index = torch.as_tensor(index, dtype=torch.long)
        return {k: v[index] for k, v in self.data.items()}


def build_tensors(records: Sequence[RationaleRecord], entities: Mapping[str, Entity], cache: FeatureCache, *,
                  gold: Mapping[str, str | None] | None = None, k: int | None = None, store=None) -> Tensors:
    """Encode records (queries, candidates, rationales) through the cache and pad them to ``k`` candidates.

    Targets: the teacher's choice (``gold`` given: the gold answer); -1 when it is NIL or not shown.
    ``store``: a KBStore embedded by the same encoder; candidate vectors are read from it, not re-encoded.
    """
    k = k or max(len(r.candidates) for r in records)
    n, d = len(records), cache.dim
    qm = cache.encode([r.mention or r.text or "" for r in records])
    qc = cache.encode([r.text or r.mention or "" for r in records])
    rat = cache.encode([r.rationale or "" for r in records])
    names: list[str] = []
    descs: list[str] = []
    slot_ids: list[str] = []
    slots: list[tuple[int, int]] = []
    numeric = np.zeros((n, k, N_NUMERIC), dtype=np.float32)
    mask = np.zeros((n, k), dtype=bool)
    teacher = np.zeros((n, k), dtype=np.float32)
    target = np.full(n, -1, dtype=np.int64)
    for i, rec in enumerate(records):
        views = {v.id: v for v in rec.retrieval}
        top = max((views[c].score for c in rec.candidates[:k] if c in views), default=0.0)
        for j, cid in enumerate(rec.candidates[:k]):
            view = views.get(cid)
            name_text, desc_text = candidate_texts(entities.get(cid), view.name if view else cid)
            names.append(name_text)
            descs.append(desc_text)
            slots.append((i, j))
            slot_ids.append(cid)
            numeric[i, j] = retrieval_features(j, view.score if view else 0.0, view.hits if view else {}, top)
            mask[i, j] = True
            teacher[i, j] = rec.scores.get(cid, 0.0)
        if rec.choice in rec.candidates[:k] and rec.scores.get(rec.choice, 0.0) < 0.01:
            # an early teacher version gave a score-less choice 1e-3: the choice itself is the signal
            teacher[i, rec.candidates.index(rec.choice)] = max(1.0, float(teacher[i].max()))
        shown = rec.candidates[:k]
        answer = (gold or {}).get(rec.id) if gold is not None else (None if rec.choice == NIL else rec.choice)
        if answer in shown:
            target[i] = shown.index(answer)
    cn = np.zeros((n, k, d), dtype=np.float32)
    cd = np.zeros((n, k, d), dtype=np.float32)
    if slots:
        rows, cols = zip(*slots)
        cn[rows, cols] = _candidate_vectors(store, "name", slot_ids, names, cache)
        cd[rows, cols] = _candidate_vectors(store, "description", slot_ids, descs, cache)
    data = {
        "q_mention": torch.from_numpy(qm), "q_caption": torch.from_numpy(qc),
        "q_visual": torch.zeros(n, d), "q_visual_mask": torch.zeros(n),  # WikiMEL-style records carry no image
        "c_name": torch.from_numpy(cn), "c_desc": torch.from_numpy(cd), "numeric": torch.from_numpy(numeric),
        "mask": torch.from_numpy(mask), "teacher": torch.from_numpy(teacher), "target": torch.from_numpy(target),
        "rationale": torch.from_numpy(rat),
        "has_rationale": torch.tensor([bool(r.rationale.strip()) for r in records]),
        "has_teacher": torch.tensor([gold is None and r.choice != NIL for r in records]),
        # NIL as the labels say: the gold answer is None (gold given), else the teacher said NIL
        "teacher_nil": torch.tensor([(gold.get(r.id) is None) if gold is not None else r.choice == NIL
                                     for r in records]),
    }
    return Tensors(ids=[r.id for r in records], data=data)


def _candidate_vectors(store, view: str, ids: list[str], texts: list[str], cache: FeatureCache) -> np.ndarray:
    """Candidate vectors of one view: from the store when it holds them, else encoded through the cache."""
    stored = store_vectors(store, view, sorted(set(ids))) if store is not None else {}
    todo = [n for n, cid in enumerate(ids) if cid not in stored]
    out = np.zeros((len(ids), cache.dim), dtype=np.float32)
    if todo:
        out[todo] = cache.encode([texts[n] for n in todo])
    for n, cid in enumerate(ids):
        if cid in stored:
            out[n] = stored[cid]
    return out
