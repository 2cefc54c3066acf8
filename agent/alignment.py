"""Which of the caption's people the box marks: a probability over the person spans.

Captions of group photos name people in an order, most often left to right ("L-R:" makes it
sure), sometimes by rows ("Back row: ... Front: ..."). The marked person's place among the faces
found (or the box's place, when the detector missed that face) is matched to that order. Counts
that differ — a missed face, an extra face, a caption naming someone not pictured — widen the
distribution instead of switching the signal off, and the mass left over is spread evenly, so
the result is never one hard guess.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from vplink.agent.caption_people import CaptionPeople, PersonSpan
from vplink.retrieval.lexical import normalize


class AlignmentParams(BaseModel):
    """The alignment's knobs; the defaults were fitted by leave-one-picture-out cross-validation on the
    69 boxed WikiMEL mentions (``python -m vplink.eval.tune_box``; results/box/tune.json)."""

    #: Trust in "the caption lists people left to right" when it says so, and when it does not.
    order_trust_stated: float = Field(default=0.9, ge=0, le=1)
    order_trust_assumed: float = Field(default=0.2, ge=0, le=1)
    #: Spread (in span positions) of the marked person's expected place when counts agree; each face
    #: missing or extra widens it.
    spread_exact: float = Field(default=0.15, gt=0)
    spread_per_mismatch: float = Field(default=0.1, ge=0)
    #: Odds multiplier for a person whose name or caption number ("Hope Solo (1)") is read in the box.
    ocr_boost: float = Field(default=25.0, ge=1)


#: Spans less person-like than this do not count as pictured people when positions are matched.
PERSON_SCORE_FOR_COUNT = 0.5


class SpanAlignment(BaseModel):
    """The probability that the box marks each person span, and why."""

    spans: list[str] = Field(default_factory=list)
    probabilities: list[float] = Field(default_factory=list)
    #: How the distribution was made: "single-person", "whole-image", "faces", "box-position", "no-people".
    method: str = "no-people"
    reason: str = ""

    @property
    def best(self) -> tuple[str, float] | None:
        """The likeliest span and its probability."""
        if not self.spans:
            return None
        i = max(range(len(self.spans)), key=self.probabilities.__getitem__)
        return self.spans[i], self.probabilities[i]

    def weighted(self, sharpness: float = 1.0) -> list[tuple[str, float]]:
        """``(span text, weight)`` pairs, likeliest first; weights are the probabilities raised to
        ``sharpness`` and renormalised (above 1 commits more to the likeliest person)."""
        raised = [p ** sharpness for p in self.probabilities]
        total = sum(raised) or 1.0
        return sorted(((text, w / total) for text, w in zip(self.spans, raised)), key=lambda item: -item[1])


def align_box(people: CaptionPeople, faces: dict[str, Any] | None, box: tuple[float, float, float, float] | None,
              image_width: float | None = None, ocr_text: str = "",
              params: AlignmentParams | None = None) -> SpanAlignment:
    """The distribution over ``people.spans`` for the person the box marks.

    ``faces`` is the face evidence (``FaceEvidence.model_dump()``) or None; ``box`` is in the same
    pixels (None: the whole picture); ``ocr_text`` is the text read inside the box, matched against
    the spans' names and the numbers the caption gives them (jerseys).
    """
    params = params or AlignmentParams()
    spans = people.spans
    texts = [s.text for s in spans]
    if not spans:
        return SpanAlignment(reason="the caption names no person")
    prior = _normalised([s.person_score for s in spans])
    if len(spans) == 1:
        return SpanAlignment(spans=texts, probabilities=[1.0], method="single-person",
                             reason=f"the caption names one person: {texts[0]}")
    if box is None:
        return SpanAlignment(spans=texts, probabilities=_rounded(prior), method="whole-image",
                             reason="the box is the whole picture, so it singles out nobody the caption names")
    faces = faces or {}
    found = faces.get("faces") or []
    marked = faces.get("marked")
    pool, in_row = _pools(people, found, marked, faces.get("rows", 1))
    people_in_pool = [i for i in pool if spans[i].person_score >= PERSON_SCORE_FOR_COUNT] or pool
    n = len(people_in_pool)
    centres = [(found[i]["box"][0] + found[i]["box"][2]) / 2 for i in in_row]
    box_centre = (box[0] + box[2]) / 2
    width = image_width or max([box[2], *[found[i]["box"][2] for i in in_row]])
    # The people seen: the faces found in the row, plus the box itself when its face was missed.
    points = sorted(centres + ([] if marked in in_row else [box_centre]))
    here = centres[in_row.index(marked)] if marked in in_row else box_centre
    place, count = points.index(here), len(points)
    method = "faces" if marked is not None else "box-position"
    if len(found) == 1 and marked is not None:
        # One face in the whole picture: the person pictured is most often the caption's subject.
        expected, where = 0.0, "the only face found"
    elif count == n:
        expected = float(place)
        where = f"person {place + 1} of {count} seen from the left"
    elif count > n:  # more faces than names: someone pictured is not named; scale the place
        expected = place * (n - 1) / (count - 1)
        where = f"person {place + 1} of {count} seen from the left (more than the caption names)"
    else:
        expected = place + _missed_to_the_left(points, place, n - count, width)
        where = (f"person {place + 1} of {count} seen from the left, with {n - count} of the caption's people "
                 "not found (placed in the widest gaps)")
    if not found:
        where += "; no face was found"
    share = expected / (n - 1) if n > 1 else 0.0
    if people.order == "right-to-left":
        share, expected = 1.0 - share, (n - 1) - expected
    mismatch = abs(count - n)
    spread = params.spread_exact + params.spread_per_mismatch * min(mismatch, 3)
    trust = params.order_trust_stated if people.order else params.order_trust_assumed
    weights = [0.0] * len(spans)
    for place, i in enumerate(people_in_pool):
        weights[i] = math.exp(-((place - expected) ** 2) / (2 * spread ** 2))
    for i, span in enumerate(spans):
        weights[i] *= _side_agreement(span, share)
    ordered = _normalised(weights) if sum(weights) > 0 else prior
    probabilities = [trust * o + (1 - trust) * p for o, p in zip(ordered, prior)]
    read = _read_in_box(spans, ocr_text)
    if read:
        probabilities = _normalised([p * (params.ocr_boost if i in read else 1.0) for i, p in enumerate(probabilities)])
    stated = "says it lists people left to right" if people.order == "left-to-right" else \
        "says right to left" if people.order == "right-to-left" else "is assumed to list people left to right"
    counted = f"{n} people named" + ("" if mismatch == 0 else f", {count} found (they differ by {mismatch})")
    best = max(range(len(spans)), key=probabilities.__getitem__)
    seen = f"; the box shows the text of {', '.join(texts[i] for i in read)}" if read else ""
    reason = f"the marked person is {where}; the caption {stated}; {counted}{seen}; so most likely {texts[best]}"
    return SpanAlignment(spans=texts, probabilities=_rounded(probabilities), method=method, reason=reason)


def _missed_to_the_left(points: list[float], place: int, missed: int, width: float) -> float:
    """How many of the people the detector missed stand left of the marked one.

    The missed people are put where the row has room for them: in each gap between neighbours
    wider than the usual spacing, and at each end wider than half of it, in proportion to the room.
    """
    spacing = float(np.median(np.diff(points))) if len(points) >= 2 else width / (len(points) + missed)
    rooms = [max(0.0, points[0] - spacing / 2)]
    rooms += [max(0.0, b - a - spacing) for a, b in zip(points, points[1:])]
    rooms.append(max(0.0, width - points[-1] - spacing / 2))
    total = sum(rooms)
    left = sum(rooms[: place + 1]) / total if total > 0 else (place + 0.5) / len(points)
    return missed * left


def _pools(people: CaptionPeople, found: list[dict[str, Any]], marked: int | None,
           rows: int) -> tuple[list[int], list[int]]:
    """The spans and the faces to match: those after the caption's order cue, and within the marked
    person's row when both the caption and the picture have rows."""
    spans = people.spans
    pool = [i for i, s in enumerate(spans) if s.after_order_cue] or list(range(len(spans)))
    in_row = list(range(len(found)))
    row_of_marked = found[marked].get("row") if marked is not None and marked < len(found) else None
    if rows >= 2 and row_of_marked is not None and any(spans[i].row for i in pool):
        wanted = "back" if row_of_marked == 0 else "front"
        row_spans = [i for i in pool if spans[i].row == wanted]
        if row_spans:
            pool = row_spans
            in_row = [i for i, f in enumerate(found) if f.get("row") == row_of_marked]
    return pool, in_row


def _read_in_box(spans: list[PersonSpan], ocr_text: str) -> set[int]:
    """Spans whose name (a word of 3+ letters) or caption number is read inside the box."""
    words = set(normalize(ocr_text).split())
    if not words:
        return set()
    return {i for i, span in enumerate(spans)
            if (span.number and span.number in words)
            or any(len(w) >= 3 and w in words for w in normalize(span.text).split())}


def with_choice(alignment: SpanAlignment, person: str | None, weight: float) -> SpanAlignment:
    """The alignment after the model chose ``person``: that span's odds are multiplied by ``1 + weight``.

    The model's answer is one more piece of evidence, weighted by how often it is right, never a
    replacement for the distribution; "none of them" (or a name not listed) changes nothing.
    """
    if not person or person not in alignment.spans or weight <= 0:
        return alignment
    boosted = [p * (1 + weight) if text == person else p for text, p in zip(alignment.spans, alignment.probabilities)]
    return alignment.model_copy(update={"probabilities": _rounded(_normalised(boosted)),
                                        "reason": f"{alignment.reason}; the model chose {person}"})


def _side_agreement(span: PersonSpan, share: float) -> float:
    """Weight from a "(left)"/"(right)" cue: high when the marked place is on that side."""
    if span.side is None:
        return 1.0
    target = {"left": 0.0, "centre": 0.5, "right": 1.0}[span.side]
    return 0.2 + 0.8 * (1.0 - abs(share - target))


def _normalised(values: list[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values] if total > 0 else [1.0 / len(values)] * len(values)


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]
