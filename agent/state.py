"""The typed records of the workflow: the model's description, ranked entities, and the final result."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, create_model

from vplink.agent.visual_prompt import VisualPrompt
from vplink.core.records import Candidate, LinkQuery, RankedEntity


class Description(BaseModel):
    """What the model says the marked region shows (the describe prompt's JSON schema)."""

    model_config = ConfigDict(extra="ignore")

    entity_type: str = Field(default="unknown", max_length=40)
    names: list[str] = Field(default_factory=list, max_length=3)
    evidence: list[str] = Field(default_factory=list, max_length=6)
    rationale: str = Field(default="", max_length=800)
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)

    def as_query_text(self) -> str:
        """The description as one text for the description view: type, evidence and reasoning."""
        parts = [self.entity_type] + list(self.evidence) + [self.rationale]
        return ". ".join(p.strip().rstrip(".") for p in parts if p and p.strip())


class Judgement(BaseModel):
    """The reflect (and teacher judge) prompt's JSON schema: a choice among candidates, with reasons."""

    model_config = ConfigDict(extra="ignore")

    choice: str = Field(description="a candidate id, or NIL")
    rationale: str = Field(default="", max_length=800)
    scores: dict[str, float] = Field(default_factory=dict)


NONE_OF_THEM = "none of them"


class Choice(BaseModel):
    """The choose prompt's answer: which of the caption's people the box marks, and why (one sentence)."""

    model_config = ConfigDict(extra="ignore")

    person: str
    reason: str = Field(default="", max_length=300)



def choice_model(names: list[str]) -> type[Choice]:
    """A :class:`Choice` whose ``person`` may only be one of ``names`` or "none of them": its JSON schema
    constrains the model's decoding to the list."""
    allowed = Literal[tuple([*names, NONE_OF_THEM])]  # type: ignore[valid-type]
    return create_model("Choice", __base__=Choice, person=(allowed, ...),
                        reason=(str, Field(default="", max_length=200)))


class JointDecision(BaseModel):
    """How the joint decision over every box of the picture answered this box."""

    #: The entity the box was assigned (None: unknown, not in the KB or not named).
    answer: str | None
    #: The caption's person the box was taken to be (None: unknown, or someone the caption does not name).
    person: str | None = None
    #: The summed evidence's log-probability of that answer (the unknown floor when unknown).
    log_prob: float
    #: The box's own top-1 when linked alone (None: it was NIL or empty).
    alone: str | None
    #: How many boxes were linked together.
    boxes: int

    @property
    def changed(self) -> bool:
        """Whether the joint decision gave this box another answer than linking it alone."""
        return self.answer != self.alone


class LinkResult(BaseModel):
    """What linking one query produced: the ranking (or NIL), what the model saw and said, and timings."""

    query: LinkQuery
    ranking: list[RankedEntity] = Field(default_factory=list)
    nil: bool = False
    #: The calibrated probability that the top-1 is right (None: no calibration for this pipeline).
    confidence: float | None = None
    description: Description | None = None
    judgement: Judgement | None = None
    choice: Choice | None = None
    evidence: dict[str, Any] | None = None
    evidence_text: str = ""
    used_model: str | None = None
    notes: list[str] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    #: Set when the box was linked together with the picture's other boxes (:meth:`Linker.link_all`).
    joint: JointDecision | None = None

    @property
    def top(self) -> RankedEntity | None:
        """The best entity, or None when the result is NIL or empty."""
        return None if self.nil or not self.ranking else self.ranking[0]

    @property
    def headline(self) -> str:
        """The answer in one line, as every output shows it: the entity and how sure, or NIL with the nearest miss."""
        sure = f"confidence {self.confidence:.2f}" if self.confidence is not None else "no calibrated confidence"
        if self.nil:
            nearest = f"; nearest: {self.ranking[0].name} ({self.ranking[0].id})" if self.ranking else ""
            return f"NIL: not in the knowledge base ({sure}{nearest})"
        if self.top is None:
            return "no answer: nothing was retrieved"
        return f"{self.top.name} ({self.top.id}), {sure}"

    @property
    def rationale(self) -> str:
        """The model's reasoning: the reflect step's if it ran, else the description's."""
        if self.judgement and self.judgement.rationale:
            return self.judgement.rationale
        if self.choice and self.choice.reason:
            return self.choice.reason
        return self.description.rationale if self.description else ""

    def __repr__(self) -> str:
        head = self.headline
        others = ", ".join(f"{r.name} ({r.id})" for r in self.ranking[1:4])
        model = self.used_model or "no model"
        return f"<LinkResult {self.query.id or 'query'}: {head}; next: {others or '—'}; {model}; " \
               f"{sum(self.timings_ms.values()):.0f} ms>"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        from vplink.agent.display import link_result_html  # lazy: PIL and drawing only when a notebook asks

        return link_result_html(self)


class PersonRecord(BaseModel):
    """One box of a picture linked jointly, as `--json`, `vplink tag` and `/link/all` give it."""

    box: list[float] | None
    #: The entity id, or None: unknown (not in the KB, or not named).
    answer: str | None
    name: str | None
    nil: bool
    confidence: float | None
    #: Whether the joint decision changed the answer the box got alone.
    changed_by_joint: bool
    ranking: list[dict[str, Any]]


#: How many ranked entities a person record keeps.
PERSON_RANKING = 5


class PictureResult(BaseModel):
    """Every box of one picture (given, or every face found), linked jointly."""

    image: str | None
    text: str | None = None
    #: "boxes" when the caller gave the boxes, "faces" when they are the faces the detector found.
    boxes_from: str
    results: list[LinkResult] = Field(default_factory=list)

    def people(self) -> list[PersonRecord]:
        """One record per box, in the order of the boxes."""
        return [PersonRecord(box=r.query.box, answer=r.top.id if r.top else None, name=r.top.name if r.top else None,
                             nil=r.top is None, confidence=r.confidence,
                             changed_by_joint=bool(r.joint and r.joint.changed),
                             ranking=[{"id": e.id, "name": e.name, "score": e.score} for e in r.ranking[:PERSON_RANKING]])
                for r in self.results]

    def __repr__(self) -> str:
        named = ", ".join(f"{n}. {p.name or 'unknown'}" for n, p in enumerate(self.people(), start=1))
        return f"<PictureResult {self.image}: {len(self.results)} {self.boxes_from}: {named or '—'}>"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        from vplink.agent.display import picture_result_html  # lazy, as for LinkResult

        return picture_result_html(self)


class PictureLine(BaseModel):
    """One line of ``pictures.jsonl``: everyone in the picture, or the error that made it skipped."""

    id: str
    image: str
    text: str | None = None
    boxes_from: str | None = None
    people: list[PersonRecord] = Field(default_factory=list)
    error: str | None = None


def merge_dicts(left: dict, right: dict) -> dict:
    """State reducer: later nodes add keys to a dict (timings) instead of replacing it."""
    return {**(left or {}), **(right or {})}


class LinkState(TypedDict, total=False):
    """The one state every node reads and writes. The visual prompt's picture and crops are not data: the
    SQLite checkpointer stores only its small fields, and a resumed query reloads the picture from its path."""

    query: LinkQuery
    prompt: VisualPrompt | None
    evidence: dict[str, Any] | None
    evidence_text: str
    description: Description | None
    choice: Choice | None
    candidates: list[Candidate]
    ranking: list[RankedEntity]
    nil: bool
    confidence: float | None
    judgement: Judgement | None
    reflections: int
    used_model: str | None
    notes: Annotated[list[str], operator.add]
    timings_ms: Annotated[dict[str, float], merge_dicts]
