"""The teacher's output record (one per annotated example) and the compact answer schema it is asked for."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NIL = "NIL"


class TeacherAnswer(BaseModel):
    """The JSON schema the teacher decodes under: reasons first (they steer the choice), then the choice."""

    model_config = ConfigDict(extra="ignore")

    # Short on purpose: CPU decoding is the bottleneck, and one or two sentences carry the decisive facts.
    rationale: str = Field(default="", max_length=200)
    choice: str = Field(description="a candidate id, or NIL")
    scores: dict[str, float] = Field(default_factory=dict)


class CandidateView(BaseModel):
    """A shown candidate with the retrieval signals the student also sees (fused score, per-channel hits)."""

    id: str
    name: str = ""
    score: float = 0.0
    hits: dict[str, dict[str, float]] = Field(default_factory=dict)


class RationaleRecord(BaseModel):
    """One annotated example: what the teacher saw (no gold), what it chose and why, and what it cost."""

    model_config = ConfigDict(extra="ignore")

    id: str
    mention: str | None = None
    text: str | None = None
    candidates: list[str] = Field(description="the candidate ids shown, in retrieval order")
    retrieval: list[CandidateView] = Field(default_factory=list)
    choice: str = Field(description="a shown candidate id, or NIL")
    rationale: str = ""
    scores: dict[str, float] = Field(default_factory=dict, description="one score in [0, 1] per shown id")
    model: str
    prompt_version: str
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    notes: list[str] = Field(default_factory=list)
    #: The probability the model gave to the id (or NIL) it wrote as its choice; None when the server
    #: returned no log-probabilities (records from before they were asked for).
    confidence: float | None = Field(default=None, ge=0, le=1)

    @property
    def is_nil(self) -> bool:
        """Whether the teacher said no candidate fits."""
        return self.choice == NIL

    def teacher_ranking(self) -> list[str]:
        """The shown ids ordered the teacher's way: its choice first, then its scores, ties in retrieval order."""
        order = sorted(range(len(self.candidates)), key=lambda i: (-self.scores.get(self.candidates[i], 0.0), i))
        ranked = [self.candidates[i] for i in order]
        if self.choice in ranked:
            ranked.remove(self.choice)
            ranked.insert(0, self.choice)
        return ranked


#: Confidence cut-offs at which kept labels are counted (a label under the cut is not a label).
CONFIDENCE_CUTS = (0.5, 0.8, 0.9, 0.95, 0.99)


def disagreement_with_retrieval(records: list[RationaleRecord], answers: dict[str, str | None]) -> dict[str, object]:
    """Where the teacher's choice differs from retrieval's first candidate (both as recorded), who was right:
    the measure of whether the teacher knows more than retrieval. Gold is used to measure, never to train.
    With confidences, the same for the labels kept at each cut-off, and the precision of all kept labels."""
    scored = [r for r in records if r.id in answers and r.candidates]

    def teacher_right(rows: list[RationaleRecord]) -> int:
        return sum(r.choice == answers[r.id] for r in rows)

    def retrieval_right(rows: list[RationaleRecord]) -> int:
        return sum(r.candidates[0] == answers[r.id] for r in rows)

    def disagreeing(rows: list[RationaleRecord]) -> list[RationaleRecord]:
        return [r for r in rows if r.choice != r.candidates[0]]

    by_cut = {}
    for cut in CONFIDENCE_CUTS if any(r.confidence is not None for r in scored) else ():
        kept = [r for r in scored if r.confidence is not None and r.confidence >= cut]
        kept_differ = disagreeing(kept)
        by_cut[str(cut)] = {
            "kept": len(kept), "kept_share": round(len(kept) / len(scored), 4),
            "kept_precision": round(teacher_right(kept) / len(kept), 4) if kept else None,
            "kept_disagree": len(kept_differ),
            "teacher_right_where_disagree": teacher_right(kept_differ),
            "retrieval_right_where_disagree": retrieval_right(kept_differ)}
    differ = disagreeing(scored)
    return {"n": len(scored), "agree": len(scored) - len(differ), "disagree": len(differ),
            "disagree_nil": sum(r.is_nil for r in differ),
            "teacher_right_where_disagree": teacher_right(differ),
            "retrieval_right_where_disagree": retrieval_right(differ),
            "teacher_precision_where_disagree": round(teacher_right(differ) / len(differ), 4) if differ else None,
            "retrieval_precision_where_disagree": round(retrieval_right(differ) / len(differ), 4) if differ else None,
            "retrieval_hits@1": round(retrieval_right(scored) / len(scored), 4) if scored else None,
            "teacher_hits@1": round(teacher_right(scored) / len(scored), 4) if scored else None,
            "by_confidence": by_cut}
