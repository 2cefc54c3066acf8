"""Everyone on one picture at once: boxes assigned to caption people and KB entities one to one, "unknown" allowed.

Linked alone, two boxes can both take the caption's likeliest name. Jointly, each option "box i shows entity e,
named in the caption as person s" gets the summed log-probability of its evidence — the alignment (that box i
marks person s), retrieval (that the name s means e rather than its best candidate), and the face view (that the box's face and e's portrait
are one person) — and the options are chosen so that the total is largest, with every box taking one option,
every caption person at most one box, and every entity at most one box. Two "at most one" sides make this a
three-index assignment, which ``linear_sum_assignment`` cannot express; it is a small integer program, solved
exactly by HiGHS (``scipy.optimize.milp``) in milliseconds. Every box also has its own "unknown" option at
:attr:`JointParams.unknown_log_prob`, so a box whose best remaining option is less likely than that floor is
answered "not in the KB / not named".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from vplink.retrieval.faces import SAME_PERSON_DISTANCE


class JointParams(BaseModel):
    """The joint decision's knobs."""

    #: The log-probability of "not in the KB / not named" for any box: a box whose best remaining option scores
    #: below it is answered unknown. A fixed floor today; a calibrated per-box confidence can replace it.
    unknown_log_prob: float = Field(default=math.log(0.02), le=0)
    #: The log-probability that a box shows someone the caption does not name (when it names anybody): such a
    #: box can still be linked by its face alone.
    unnamed_log_prob: float = Field(default=math.log(0.1), le=0)
    #: Temperature that turns fused retrieval scores into probabilities over a name's candidates.
    retrieval_temperature: float = Field(default=0.1, gt=0)
    #: Logistic scale (descriptor distance) of P(same person) around dlib's 0.6 threshold.
    face_scale: float = Field(default=0.05, gt=0)


class BoxEvidence(BaseModel):
    """What one box brings to the joint decision."""

    #: The caption's people and the probability that this box marks each (empty: the caption names nobody).
    people: list[tuple[str, float]] = Field(default_factory=list)
    #: The ranking ``(id, fused score)`` each caption person's name retrieves in this box's context (the caption
    #: and the text read in the box).
    named: dict[str, list[tuple[str, float]]] = Field(default_factory=dict)
    #: The box's own fused ranking ``(id, score)``: the retrieval evidence when the caption names nobody.
    ranking: list[tuple[str, float]] = Field(default_factory=list)
    #: Whether the box's own ranking rests on text (else it is the face view alone and adds nothing of its own).
    text: bool = False
    #: Distance of the box's face to each KB portrait found (None: no face in the box, or no face view).
    face_distances: dict[str, float] | None = None
    #: Distance assumed for an entity whose portrait was not among those found (None: it has no portrait).
    face_floor: float | None = None

    def face_log_prob(self, eid: str, scale: float) -> float:
        """log P(same person) of the box's face and ``eid``'s portrait; 0 where either is missing."""
        if self.face_distances is None:
            return 0.0
        distance = self.face_distances.get(eid, self.face_floor)
        return 0.0 if distance is None else face_log_prob(distance, scale)


class Option(BaseModel):
    """One way to answer one box: the entity it shows, the caption person naming it (None: unnamed), how likely."""

    box: int
    person: str | None
    entity: str
    log_prob: float


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


def _against_best(ranking: Sequence[tuple[str, float]], temperature: float) -> dict[str, float]:
    """Each candidate's probability over the best one's: 1 for the best.

    How many namesakes a name has says nothing about which box shows its person, so a name's best candidate
    counts as sure as the name; the others pay for how much less likely they are.
    """
    probabilities = softmax([s for _, s in ranking], temperature)
    best = probabilities.max(initial=0.0)
    return {eid: float(p / best) for (eid, _), p in zip(ranking, probabilities)} if best > 0 else {}


def box_options(boxes: Sequence[BoxEvidence], params: JointParams) -> list[Option]:
    """Every option of every box with its log-probability.

    A box may be the caption's person s showing one of the candidates s's name retrieves; or someone the caption
    does not name, known by the face view (or, when the caption names nobody, by the box's own ranking).
    """
    options: list[Option] = []
    for i, box in enumerate(boxes):
        for name, p in box.people:
            if p <= 0:
                continue
            retrieved = _against_best(box.named.get(name, []), params.retrieval_temperature)
            options += [Option(box=i, person=name, entity=eid,
                               log_prob=math.log(p) + math.log(r) + box.face_log_prob(eid, params.face_scale))
                        for eid, r in retrieved.items() if r > 0]
        if box.people:  # the caption names people, but maybe not this one: only the face can name the box then
            unnamed = {eid: params.unnamed_log_prob for eid in box.face_distances or {}}
        elif box.text:  # the caption names nobody: the box's own ranking is the retrieval evidence
            unnamed = {eid: math.log(r) for eid, r in _against_best(box.ranking, params.retrieval_temperature).items()
                       if r > 0}
        else:  # no text at all: the face decides
            unnamed = {eid: 0.0 for eid in box.face_distances or dict(box.ranking)}
        options += [Option(box=i, person=None, entity=eid, log_prob=prior + box.face_log_prob(eid, params.face_scale))
                    for eid, prior in unnamed.items()]
    return options


def assign(options: Sequence[Option], boxes: int, unknown_log_prob: float) -> list[Option | None]:
    """The option each box takes (None: unknown), maximising the summed log-probability with every caption
    person and every entity used by at most one box."""
    from scipy.optimize import Bounds, LinearConstraint, milp  # lazy: the settings import this module

    # Variables: one per option, then one "unknown" per box.
    n = len(options) + boxes
    rows: list[np.ndarray] = []
    lower: list[float] = []
    for i in range(boxes):  # each box takes exactly one option (or its unknown)
        row = np.zeros(n)
        row[[k for k, o in enumerate(options) if o.box == i] + [len(options) + i]] = 1
        rows.append(row)
        lower.append(1)
    groups: dict[tuple[str, str], list[int]] = {}
    for k, option in enumerate(options):
        groups.setdefault(("entity", option.entity), []).append(k)
        if option.person is not None:
            groups.setdefault(("person", option.person), []).append(k)
    for members in groups.values():  # each entity, and each caption person, at most once
        if len({options[k].box for k in members}) > 1:
            row = np.zeros(n)
            row[members] = 1
            rows.append(row)
            lower.append(0)
    gains = np.array([o.log_prob for o in options] + [unknown_log_prob] * boxes)
    solved = milp(-gains, constraints=LinearConstraint(np.array(rows), lower, 1), integrality=np.ones(n),
                  bounds=Bounds(0, 1))
    if not solved.success:  # cannot happen (every box may stay unknown), but never answer from a failed solve
        raise RuntimeError(f"the joint assignment failed: {solved.message}")
    chosen: list[Option | None] = [None] * boxes
    for k, option in enumerate(options):
        if solved.x[k] > 0.5:
            chosen[option.box] = option
    return chosen
