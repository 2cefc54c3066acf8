"""The boxes of one picture, each linked alone by the workflow, decided together (see :mod:`vplink.agent.joint`)."""

from __future__ import annotations

from collections.abc import Sequence

from vplink.agent.alignment import SpanAlignment, with_choice
from vplink.agent.confidence import Calibrator, assess
from vplink.agent.joint import BoxEvidence, JointParams, assign, box_options
from vplink.agent.nodes import query_context
from vplink.agent.settings import LinkerConfig
from vplink.agent.state import JointDecision, LinkResult
from vplink.core.records import Candidate, RankedEntity
from vplink.retrieval.faces import face_distance
from vplink.retrieval.search import FACE_CHANNEL, MultiViewRetriever, QueryViews
from vplink.retrieval.store import FACE_VIEW


def box_evidence(result: LinkResult, retriever: MultiViewRetriever, config: LinkerConfig) -> BoxEvidence:
    """The evidence one box brings: the caption's people as the box aligns them, its ranking, its face."""
    query, evidence = result.query, result.evidence or {}
    people: list[tuple[str, float]] = []
    if not query.mention:  # a given mention names the person; the alignment is not used then
        alignment = SpanAlignment.model_validate(evidence.get("alignment") or {})
        if result.choice is not None:
            alignment = with_choice(alignment, result.choice.person, config.choice_weight)
        people = [(name, p) for name, p in zip(alignment.spans, alignment.probabilities) if p > 0]
    face = (evidence.get("faces") or {}).get("descriptor")
    distances, floor = None, None
    if face is not None and retriever.face_models is not None and FACE_VIEW in retriever.store.views():
        found = retriever.channel_rankings([QueryViews(face=face)])[0].get(FACE_CHANNEL, [])
        distances = {eid: face_distance(score) for eid, score in found}
        # A full page of portraits: the ones not returned lie at least as far as the last one.
        floor = max(distances.values()) if len(found) >= retriever.config.depth else None
    return BoxEvidence(people=people, ranking=[(r.id, r.score) for r in result.ranking],
                       text=bool(query.text or query.mention), face_distances=distances, face_floor=floor)


def decide_jointly(results: Sequence[LinkResult], retriever: MultiViewRetriever, config: LinkerConfig,
                   params: JointParams | None = None, calibrator: Calibrator | None = None) -> list[LinkResult]:
    """The results of one picture's boxes after the joint decision: each box's answer first in its ranking
    (or NIL for unknown), with a :class:`JointDecision` and a note where the decision changed the answer.

    Each box's confidence is that of its joint answer (see :func:`vplink.agent.confidence.assess`), and a box
    the calibration calls NIL stays NIL: the joint decision never turns an unsure answer into a sure one."""
    params = params or config.joint
    boxes = [box_evidence(result, retriever, config) for result in results]
    # Each caption person's name searched in each box's context (the caption and the text read in that box).
    asked = list(dict.fromkeys((name, query_context(r.query, r.evidence or {}))
                               for r, box in zip(results, boxes) for name, _ in box.people))
    searched = dict(zip(asked, retriever.search_batch([QueryViews(mention=name, context=context)
                                                       for name, context in asked], k=config.k)))
    for result, box in zip(results, boxes):
        context = query_context(result.query, result.evidence or {})
        box.named = {name: [(c.id, c.score) for c in searched[name, context]] for name, _ in box.people}
    candidates = {c.id: c for found in searched.values() for c in found}
    chosen = assign(box_options(boxes, params), len(results), params.unknown_log_prob)
    out = []
    for result, option in zip(results, chosen):
        answer = option.entity if option is not None else None
        alone = result.top.id if result.top else None
        decision = JointDecision(answer=answer, person=option.person if option is not None else None,
                                 log_prob=round(option.log_prob if option is not None else params.unknown_log_prob, 4),
                                 alone=alone, boxes=len(results))
        ranking = list(result.ranking)
        if answer is not None:
            first = next((r for r in ranking if r.id == answer), None) or _ranked(answer, candidates, retriever)
            ranking = [first] + [r for r in ranking if r.id != answer]
        notes = list(result.notes)
        if decision.changed:
            was = _name(result.ranking, alone) if alone else "unknown"
            now = _name(ranking, answer) if answer else "unknown"
            notes.append(f"linked jointly with the picture's {len(results)} boxes: {now}, not {was} as alone")
        judged = assess(ranking, mention=result.query.mention, evidence=result.evidence, calibrator=calibrator,
                        threshold=config.nil_threshold, allow_nil=config.nil) if ranking else None
        if answer is not None and judged is not None and judged.nil and judged.reason:
            notes.append(judged.reason)
        out.append(result.model_copy(update={"ranking": ranking, "joint": decision, "notes": notes,
                                             "nil": answer is None or bool(judged and judged.nil),
                                             "confidence": judged.confidence if judged else None}))
    return out


def _ranked(eid: str, candidates: dict[str, Candidate], retriever: MultiViewRetriever) -> RankedEntity:
    """An entity that the caption's names (or the face view) found but the box's own ranking lacked."""
    candidate = candidates.get(eid)
    if candidate is None:  # found by the face view alone
        entity = retriever.store.get_entities([eid]).get(eid)
        return RankedEntity(id=eid, name=entity.name if entity else eid,
                            description=entity.description if entity else "")
    return RankedEntity(id=candidate.id, name=candidate.name, score=candidate.score, retrieval_score=candidate.score,
                        description=candidate.entity.description if candidate.entity else "",
                        hits={ch: h.model_dump() for ch, h in candidate.hits.items()})


def _name(ranking: Sequence[RankedEntity], eid: str) -> str:
    return next((f"{r.name} ({r.id})" for r in ranking if r.id == eid), eid)
