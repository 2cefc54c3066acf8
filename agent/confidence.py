"""How sure an answer is: the features that predict whether the top-1 is right, and the calibrator that maps them
to a probability (a logistic model fitted on a dev split by `vplink eval calibrate`) with its NIL threshold.

The features mean the same on any KB: scores, margins and agreement between channels, never ids or names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from vplink.core.errors import VplinkError
from vplink.core.records import RankedEntity
from vplink.retrieval.faces import SAME_PERSON_DISTANCE, face_similarity
from vplink.retrieval.lexical import tokens
from vplink.retrieval.search import FACE_CHANNEL

FORMAT = "vplink-calibration/1"
#: A face>face score under this is farther than dlib's same-person distance from the portrait.
FACE_MATCH_SCORE = float(face_similarity(SAME_PERSON_DISTANCE))
#: The features, in the order the calibrator's coefficients follow.
FEATURES = ("score", "margin", "lexical", "lexical_second", "lexical_ties", "coverage", "covered", "context",
            "dates", "agreeing_channels", "has_mention", "people", "alignment", "has_face", "face")
#: How many candidates from the top the features read the channel hits of (retrieval explains only these).
EXPLAINED = 5
#: The calibration shipped for the fused retrieval score (the `retrieve` pipeline and the agent's default reranker).
PACKAGED = "calibration_retrieval_score.json"


def confidence_features(ranking: Sequence[RankedEntity], *, mention: str | None,
                        evidence: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The features of one answer: the top score and its margin to the second; the top-1's best lexical name
    match, the runner-up's, and how many of the first :data:`EXPLAINED` match the name as well as the top-1;
    the share of the mention's words in the top-1's name (all of them or not);
    the top-1's best context similarity and date consistency; how many channels rank it first; the box's
    alignment to the caption's people; and its face match where the KB has portraits."""
    top = ranking[0]
    second = ranking[1] if len(ranking) > 1 else None
    lexical = [_best(r, ">lexical") for r in ranking[:EXPLAINED]]
    evidence = evidence or {}
    # The caption's people stand in for the mention only when there is none (see the agent's query views).
    probabilities = [] if mention else (evidence.get("alignment") or {}).get("probabilities") or []
    face_queried = bool((evidence.get("faces") or {}).get("descriptor")) and any(FACE_CHANNEL in r.hits
                                                                                   for r in ranking)
    # A mention whose words are not all in the answer's name names someone else more often than not: the
    # commonest NIL of a KB that lacks the person is a namesake sharing a first name or a surname.
    said, named = set(tokens(mention or "")), set(tokens(top.name))
    coverage = len(said & named) / len(said) if said else 0.0
    return {"score": top.score, "margin": top.score - (second.score if second else top.score),
            "lexical": lexical[0], "lexical_second": lexical[1] if second else 0.0,
            "lexical_ties": float(sum(value >= lexical[0] - 1e-6 for value in lexical[1:]) if lexical[0] else 0),
            "coverage": coverage, "covered": float(coverage == 1.0),
            "context": max(_best(top, "context>description"), _best(top, "context>name")),
            "dates": _best(top, "context>dates"),
            "agreeing_channels": float(sum(hit["rank"] == 1 for hit in top.hits.values())),
            "has_mention": float(bool(said)), "people": float(len(probabilities)),
            "alignment": max(probabilities, default=0.0), "has_face": float(face_queried),
            "face": best_face_score(ranking) if face_queried else 0.0}


def _best(entity: RankedEntity, channel_suffix: str) -> float:
    """The entity's best score over the channels whose name (before any ``#n``) ends with ``channel_suffix``."""
    return max((hit["score"] for channel, hit in entity.hits.items()
                if channel.split("#")[0].endswith(channel_suffix)), default=0.0)


def best_face_score(ranking: Sequence[RankedEntity]) -> float:
    """The best face>face score among the candidates (0: no candidate's portrait was a face hit)."""
    return max((r.hits[FACE_CHANNEL]["score"] for r in ranking if FACE_CHANNEL in r.hits), default=0.0)


def unknown_face(ranking: Sequence[RankedEntity], evidence: Mapping[str, Any] | None) -> bool:
    """Whether the marked face matches no portrait of the KB (farther than the same-person distance from each)
    while the caption names no one for the box: the person is not in the KB, whatever the text channels say."""
    evidence = evidence or {}
    if not (evidence.get("faces") or {}).get("descriptor") or (evidence.get("alignment") or {}).get("spans"):
        return False
    return any(FACE_CHANNEL in r.hits for r in ranking) and best_face_score(ranking) < FACE_MATCH_SCORE


class Assessment(BaseModel):
    """How sure one answer is, whether it is NIL, and why it is NIL (empty when it is not)."""

    confidence: float | None
    nil: bool
    reason: str = ""
    features: dict[str, float] = Field(default_factory=dict)


def assess(ranking: Sequence[RankedEntity], *, mention: str | None, evidence: Mapping[str, Any] | None,
           calibrator: Calibrator | None, threshold: float | None = None, allow_nil: bool = True,
           model_said_nil: bool = False) -> Assessment:
    """The confidence of ``ranking``'s top-1 and the NIL decision: NIL when the marked face is unknown, when the
    model judged that no candidate fits, or when the confidence is under ``threshold`` (None: the calibrator's
    own). ``allow_nil=False`` keeps every ranking (the confidence is still given)."""
    features = confidence_features(ranking, mention=mention, evidence=evidence)
    model, why = calibrator.model_for(features) if calibrator is not None else (None, "no calibration for these scores")
    # Four decimals, never 0 or 1: no answer is certain, and a threshold of 1 then makes every answer NIL.
    confidence = min(max(round(model.probability(features), 4), 0.0001), 0.9999) if model is not None else None
    unseen = (f"no calibrated confidence ({why}): fit one on your own dev runs with `vplink eval calibrate`"
              if why else "")
    if not allow_nil:
        return Assessment(confidence=confidence, nil=False, features=features, reason=unseen)
    if unknown_face(ranking, evidence):
        return Assessment(confidence=confidence, nil=True, features=features,
                          reason="NIL: the marked face matches no portrait of the KB and the caption names no one")
    if model_said_nil:
        return Assessment(confidence=confidence, nil=True, features=features,
                          reason="NIL: the model judged that no candidate fits")
    threshold = threshold if threshold is not None else (model.nil_threshold if model else None)
    if confidence is not None and threshold is not None and confidence < threshold:
        return Assessment(confidence=confidence, nil=True, features=features,
                          reason=f"NIL: confidence {confidence:.2f} is under the NIL threshold {threshold:.2f}")
    return Assessment(confidence=confidence, nil=False, features=features, reason=unseen)


MENTION, NO_MENTION = "mention", "no mention"


def query_kind(features: Mapping[str, float]) -> str:
    """Which model of a calibration reads these features: queries with a mention and box/caption-only queries
    differ too much (what a high score means, how often the top-1 is right) for one line to fit both."""
    return MENTION if features.get("has_mention") else NO_MENTION


class KindModel(BaseModel):
    """A logistic model of P(top-1 is right) over standardised :data:`FEATURES` for one kind of query, and the
    NIL threshold on it."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    nil_threshold: float | None = Field(default=None, description="answers less sure than this are NIL")
    constant: dict[str, float] = Field(default_factory=dict, description="features that never varied in the fit "
                                       "data, with their value: a query where one differs is one it never saw")
    metrics: dict[str, Any] = Field(default_factory=dict, description="its NIL F1, H@1 cost and ECE on the fit data")

    def probability(self, features: Mapping[str, float]) -> float:
        """The probability that the answer with these features is right."""
        z = self.intercept + sum(c * (features.get(name, 0.0) - m) / s for name, c, m, s in
                                 zip(self.features, self.coef, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def unseen(self, features: Mapping[str, float]) -> list[str]:
        """The features on which this query differs from every fit query (a calibration fitted on KBs without
        portraits says nothing about a face query)."""
        return [name for name, value in self.constant.items() if abs(features.get(name, 0.0) - value) > 1e-9]


class Calibrator(BaseModel):
    """How sure an answer is: one :class:`KindModel` per kind of query (see :func:`query_kind`)."""

    format: str = FORMAT
    reranker: str = Field(description="the reranker whose scores it reads (retrieval-score, or a scorer's name)")
    kinds: dict[str, KindModel]
    fitted_on: dict[str, Any] = Field(default_factory=dict, description="the runs and data it was fitted on")

    def fingerprint(self) -> str:
        """A short hash of the calibration's numbers: run records name the calibration they were made with."""
        import hashlib

        payload = json.dumps(self.model_dump(exclude={"fitted_on"}), sort_keys=True)
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:12]

    def model_for(self, features: Mapping[str, float]) -> tuple[KindModel | None, str]:
        """The model that speaks for a query with these features, or None and why none does."""
        kind = query_kind(features)
        model = self.kinds.get(kind)
        if model is None:
            return None, f"the calibration saw no {kind} query"
        unseen = model.unseen(features)
        return (None, f"the calibration saw no {kind} query with {', '.join(unseen)}") if unseen else (model, "")

    @classmethod
    def load(cls, path: str | Path) -> Calibrator:
        """A calibration file (JSON); a missing or malformed one is a :class:`VplinkError` naming the fix."""
        path = Path(path)
        try:
            calibrator = cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise VplinkError(f"{path}: no such calibration file. Fix: pass a file written by `vplink eval "
                              "calibrate`, or leave --calibration out for the packaged one") from None
        except (ValueError, ValidationError) as error:
            raise VplinkError(f"{path}: not a vplink calibration ({str(error).splitlines()[0]}). Fix: write it "
                              "again with `vplink eval calibrate`") from None
        if calibrator.format != FORMAT:
            raise VplinkError(f"{path}: calibration format {calibrator.format!r}, this vplink reads {FORMAT!r}. "
                              "Fix: fit it again with `vplink eval calibrate`")
        return calibrator

    def save(self, path: str | Path) -> None:
        """Write the calibration as JSON (atomically)."""
        from vplink.core.jsonl import write_json

        write_json(path, self.model_dump())


@cache
def packaged_calibrator() -> Calibrator:
    """The calibration shipped with vplink for the fused retrieval score (fitted on WikiMEL dev; see its
    ``fitted_on``)."""
    with resources.as_file(resources.files("vplink.agent") / PACKAGED) as path:
        return Calibrator.load(path)


def default_calibrator(reranker: object) -> Calibrator | None:
    """The calibration for ``reranker``'s scores: its own (``calibrator`` attribute), the packaged one for the
    fused retrieval score, or None (no confidence, no NIL threshold) for a reranker nobody calibrated."""
    own = getattr(reranker, "calibrator", None)
    if own is not None:
        return own
    return packaged_calibrator() if getattr(reranker, "name", None) == "retrieval-score" else None
