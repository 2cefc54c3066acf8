"""Everyone on one picture at once: boxes assigned to KB entities one to one, "unknown" allowed for any box.

Linked alone, two boxes can both take the caption's likeliest name. Jointly, each box's log-probability of
showing each entity is summed over the evidence — which caption person the box marks (the alignment) times
whom that person's name retrieves, and how far the box's face lies from the entity's portrait (dlib's
descriptors) — and scipy's ``linear_sum_assignment`` picks the one-to-one assignment with the largest total.
Every box also has its own "unknown" column at :attr:`JointParams.unknown_log_prob`, so a box whose best
remaining entity is less likely than that floor is answered "not in the KB / not named".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field

from vplink.retrieval.faces import SAME_PERSON_DISTANCE

#: A log-probability that stands for "impossible" in the cost matrix (finite: scipy needs a feasible matrix).
IMPOSSIBLE = -1e6


class JointParams(BaseModel):
    """The joint decision's knobs."""

    #: The log-probability of "not in the KB / not named" for any box: a box whose best remaining entity scores
    #: below it is answered unknown. A fixed floor today; a calibrated per-box confidence can replace it.
    unknown_log_prob: float = Field(default=math.log(0.02), le=0)
    #: Temperature that turns a name's fused retrieval scores into probabilities over its candidates.
    retrieval_temperature: float = Field(default=0.1, gt=0)
    #: Logistic scale (descriptor distance) of P(same person) around dlib's 0.6 threshold.
    face_scale: float = Field(default=0.05, gt=0)


class BoxEvidence(BaseModel):
    """What one box brings to the joint decision."""

    #: The caption's people and the probability that this box marks each (empty: the caption names nobody).
    people: list[tuple[str, float]] = Field(default_factory=list)
    #: The box's own fused ranking ``(id, score)``: the retrieval evidence when the caption names nobody.
    ranking: list[tuple[str, float]] = Field(default_factory=list)
    #: Whether the box's own ranking rests on text (else it is the face view alone and adds nothing of its own).
    text: bool = False
    #: Distance of the box's face to each KB portrait found (None: no face in the box, or no face view).
    face_distances: dict[str, float] | None = None
    #: Distance assumed for an entity whose portrait was not among those found (None: it has no portrait).
    face_floor: float | None = None


def softmax(scores: Sequence[float], temperature: float) -> np.ndarray:
    """Probabilities of fused scores at ``temperature``."""
    values = np.asarray(scores, dtype=np.float64) / temperature
    if values.size == 0:
        return values
    weights = np.exp(values - values.max())
    return weights / weights.sum()


def face_log_prob(distance: float, scale: float) -> float:
    """log P(same person) of two face descriptors ``distance`` apart: a logistic centred at dlib's 0.6."""
    z = (SAME_PERSON_DISTANCE - distance) / scale
    return -float(np.logaddexp(0.0, -z))  # log sigmoid(z), stable for large |z|


def log_prob_matrix(boxes: Sequence[BoxEvidence], names: Mapping[str, Sequence[tuple[str, float]]],
                    params: JointParams) -> tuple[list[str], np.ndarray]:
    """The entity ids (columns) and each box's log-probability of showing each entity (boxes x entities).

    ``names`` maps each caption person to the ranking ``(id, fused score)`` that person's name retrieves.
    """
    by_name = {name: dict(zip((eid for eid, _ in ranking), softmax([s for _, s in ranking],
                                                                      params.retrieval_temperature)))
               for name, ranking in names.items()}
    ids = list(dict.fromkeys([eid for ranking in names.values() for eid, _ in ranking]
                             + [eid for box in boxes for eid, _ in box.ranking]
                             + [eid for box in boxes for eid in (box.face_distances or {})]))
    matrix = np.zeros((len(boxes), len(ids)))
    for i, box in enumerate(boxes):
        matrix[i] = _retrieval_log_probs(box, by_name, ids, params) + _face_log_probs(box, ids, params)
    return ids, matrix


def _retrieval_log_probs(box: BoxEvidence, by_name: Mapping[str, Mapping[str, float]], ids: list[str],
                         params: JointParams) -> np.ndarray:
    """log sum over the caption's people of P(box marks that person) x P(that name retrieves the entity)."""
    if box.people:
        mixed = np.array([sum(p * by_name.get(name, {}).get(eid, 0.0) for name, p in box.people) for eid in ids])
    elif box.text and box.ranking:
        own = dict(zip((eid for eid, _ in box.ranking),
                       softmax([s for _, s in box.ranking], params.retrieval_temperature)))
        mixed = np.array([own.get(eid, 0.0) for eid in ids])
    else:
        return np.zeros(len(ids))  # no text: retrieval says nothing, the face decides
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(mixed), IMPOSSIBLE)


def _face_log_probs(box: BoxEvidence, ids: list[str], params: JointParams) -> np.ndarray:
    """log P(same person) of the box's face and each entity's portrait; 0 where either is missing."""
    if box.face_distances is None:
        return np.zeros(len(ids))
    distances = [box.face_distances.get(eid, box.face_floor) for eid in ids]
    return np.array([0.0 if d is None else face_log_prob(d, params.face_scale) for d in distances])


def assign(log_probs: np.ndarray, unknown_log_prob: float) -> list[int | None]:
    """The column each row (box) takes, one to one, maximising the summed log-probability; None: unknown.

    Each box gets a dummy column of its own worth ``unknown_log_prob``, so any box may stay unknown.
    """
    from scipy.optimize import linear_sum_assignment  # lazy: the settings import this module, scipy costs 0.3 s

    rows, cols = log_probs.shape
    dummies = np.full((rows, rows), IMPOSSIBLE)
    np.fill_diagonal(dummies, unknown_log_prob)
    chosen = np.full(rows, -1)
    row_ind, col_ind = linear_sum_assignment(np.hstack([log_probs, dummies]), maximize=True)
    chosen[row_ind] = col_ind
    return [int(c) if c < cols and log_probs[r, c] > IMPOSSIBLE else None for r, c in enumerate(chosen)]
