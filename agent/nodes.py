"""The workflow's steps. Each node reads the state and returns only the keys it changes."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any

from vplink.agent.alignment import SpanAlignment, align_box, with_choice
from vplink.agent.caption_people import find_people
from vplink.agent.confidence import Calibrator, assess
from vplink.agent.llm_client import LLMClient
from vplink.agent.llm_errors import LLMError
from vplink.agent.reranker import Reranker
from vplink.agent.settings import LinkerConfig
from vplink.agent.state import Description, Judgement, LinkState, choice_model
from vplink.agent.visual_prompt import VisualPrompt
from vplink.core.records import LinkQuery, RankedEntity
from vplink.prompts.loader import load_prompt
from vplink.retrieval.search import MultiViewRetriever, QueryViews


def _ocr_text(evidence: dict[str, Any]) -> str:
    """The text read inside the box."""
    return " ".join(line.get("text", "") for line in (evidence.get("ocr") or {}).get("lines", []))


def query_context(query: LinkQuery, evidence: dict[str, Any]) -> str | None:
    """The context view of a query: its caption and the text read inside the box."""
    return " ".join(t for t in (query.text, _ocr_text(evidence)) if t) or None


def _alignment(state: LinkState) -> SpanAlignment:
    """The box-to-person alignment that ``prepare`` left in the evidence (empty when there is none)."""
    return SpanAlignment.model_validate((state.get("evidence") or {}).get("alignment") or {})


def alignment_text(alignment: SpanAlignment) -> str:
    """A factual paragraph for the prompt: the people the caption names and which one the box likely marks."""
    if not alignment.spans:
        return ""
    listed = "; ".join(f"{i}. {text} ({p:.0%})" for i, (text, p) in
                       enumerate(zip(alignment.spans, alignment.probabilities), start=1))
    return (f"People the caption names, in order, with the chance that the box marks each: {listed}. "
            f"Why: {alignment.reason}.")


def _load_image(path: str):
    from vplink.retrieval.images import load_image

    return load_image(path)


def timed(name: str) -> Callable:
    """Record a node's wall time in ``timings_ms`` under its name."""
    def wrap(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        @wraps(fn)
        def run(self, state: LinkState) -> dict[str, Any]:
            started = time.perf_counter()
            update = fn(self, state)
            spent = (time.perf_counter() - started) * 1000
            timings = dict(update.get("timings_ms", {}))
            timings[name] = timings.get(name, 0.0) + spent + state.get("timings_ms", {}).get(name, 0.0)
            return {**update, "timings_ms": timings}
        return run
    return wrap


class LinkerNodes:
    """The resources the nodes share (retriever, model client, reranker, evidence tools) and the nodes."""

    def __init__(self, retriever: MultiViewRetriever, reranker: Reranker, config: LinkerConfig,
                 llm: LLMClient | None = None, evidence_tools: Any = None,
                 calibrator: Calibrator | None = None) -> None:
        self.retriever = retriever
        self.reranker = reranker
        self.calibrator = calibrator
        self.config = config
        self.llm = llm
        self.tools = evidence_tools
        self.describe_prompt = load_prompt("describe")
        self.choose_prompt = load_prompt("choose")
        self.reflect_prompt = load_prompt("reflect")
        # Several boxes on one picture (a dataset's group photos) load it once.
        self.load_image = lru_cache(maxsize=8)(_load_image)

    # -------------------------------------------------------------- prepare

    @timed("prepare")
    def prepare(self, state: LinkState) -> dict[str, Any]:
        """Make the visual prompt (picture loaded, box checked), run the evidence tools, find the caption's people
        and align the box to them."""
        query = state["query"]
        evidence: dict[str, Any] = {}
        parts: list[str] = []
        prompt = state.get("prompt")
        if prompt is None and query.image:
            # The one place a query's picture is loaded and its box checked: a bad box stops here, before any model.
            prompt = VisualPrompt.load(query.image, query.box, self.load_image)
        if prompt is not None:
            from vplink.agent.evidence.collect import collect_evidence

            found = collect_evidence(prompt, tools=self.config.evidence_tools, toolbox=self.tools,
                                     for_model=self.llm is not None)
            evidence = found.model_dump(mode="json")
            parts.append(found.to_prompt_text())
        people = find_people(query.text, self.retriever.person_names)
        alignment = align_box(people, evidence.get("faces"), prompt.marked_box if prompt else None,
                              prompt.size[0] if prompt else None, ocr_text=_ocr_text(evidence),
                              params=self.config.alignment)
        evidence["people"] = [span.model_dump() for span in people.spans]
        evidence["caption_order"] = people.order
        evidence["alignment"] = alignment.model_dump()
        parts.append(alignment_text(alignment))
        notes = people.notes + ([] if self.llm is not None else ["no model server: linked on evidence and text alone"])
        return {"prompt": prompt, "evidence": evidence, "evidence_text": "\n".join(p for p in parts if p) or "none",
                "notes": notes}

    def needs_model(self, state: LinkState) -> bool:
        """Whether to ask the model: there is one, and the caption's people leave the box's person open.

        Without a mention, a caption naming one person, or an alignment whose likeliest person
        carries at least ``route_confidence`` of the (sharpened) weight, is linked without the model.
        """
        if self.llm is None:
            return False
        if state["query"].mention:
            return True
        alignment = _alignment(state)
        if len(alignment.spans) == 1:
            return False
        weights = alignment.weighted(self.config.people_sharpness)
        return not weights or weights[0][1] < self.config.route_confidence

    # -------------------------------------------------------------- describe

    @timed("describe")
    def describe(self, state: LinkState) -> dict[str, Any]:
        """Ask the model which caption person the box marks, or, with no caption people, what it shows."""
        query = state["query"]
        prompt = state.get("prompt")
        images = [prompt.marked, prompt.crop()] if prompt is not None and self.llm.config.vision else []
        alignment = _alignment(state)
        if len(alignment.spans) >= 2 and not query.mention:
            return self._choose(state, alignment, images)
        messages = self.describe_prompt.render(
            image_note=("The first picture has the region boxed in red; the second is the region zoomed in."
                        if images else "You cannot see the picture; rely on the evidence and the caption."),
            evidence=state.get("evidence_text") or "none", caption=query.text or "(none)",
            mention=query.mention or "(none: the box is the mention)")
        try:
            description, info = self.llm.complete_structured(messages, Description, images=images,
                                                             max_tokens=self.config.describe_max_tokens)
        except LLMError as error:
            return {"description": None, "used_model": self.llm.config.model,
                    "notes": [f"the model's description failed, linked without it: {error}"]}
        notes = [f"description repaired after {info.attempts} attempt(s)"] if info.repaired else []
        return {"description": description, "used_model": info.model, "notes": notes}

    def _choose(self, state: LinkState, alignment: SpanAlignment, images: list) -> dict[str, Any]:
        """The IIER question as a constrained choice: which of the caption's people does the box mark?"""
        messages = self.choose_prompt.render(
            image_note=("The first picture has the person boxed in red; the second is the box zoomed in."
                        if images else "You cannot see the picture; rely on the facts."),
            caption=state["query"].text or "(none)", evidence=state.get("evidence_text") or "none",
            names="; ".join(alignment.spans))
        try:
            choice, info = self.llm.complete_structured(messages, choice_model(alignment.spans), images=images,
                                                        max_tokens=self.config.choose_max_tokens)
        except LLMError as error:
            return {"description": None, "choice": None, "used_model": self.llm.config.model,
                    "notes": [f"the model's choice failed, linked without it: {error}"]}
        return {"description": None, "choice": choice, "used_model": info.model,
                "notes": [f"the model chose {choice.person}: {choice.reason}"]}

    # -------------------------------------------------------------- retrieve

    def query_views(self, state: LinkState) -> QueryViews:
        """The query views: mention, caption (+ text read in the box), model's guesses and description."""
        query, description = state["query"], state.get("description")
        evidence = state.get("evidence") or {}
        context = query_context(query, evidence)
        names = list(description.names) if description else []
        alignment = _alignment(state)
        choice = state.get("choice")
        if choice is not None:
            alignment = with_choice(alignment, choice.person, self.config.choice_weight)
        # The marked face is a query view only where the store has a face view to match it against.
        face = (evidence.get("faces") or {}).get("descriptor") if self.retriever.face_models is not None else None
        prompt = state.get("prompt")
        image = None
        if prompt is not None and self.config.image_retrieval and self.retriever.image_encoder is not None:
            image = prompt.crop()
        return QueryViews(mention=query.mention, context=context, names=names,
                          people=[] if query.mention else alignment.weighted(self.config.people_sharpness), face=face,
                          description=description.as_query_text() if description else None, image=image)

    @timed("retrieve")
    def retrieve(self, state: LinkState) -> dict[str, Any]:
        """Candidates from the store, fused over every query view."""
        views = self.query_views(state)
        if views.is_empty():
            return {"candidates": [], "notes": ["nothing to search with: no text, no name guess, no image"]}
        return {"candidates": self.retriever.search(views, k=self.config.k)}

    # -------------------------------------------------------------- rerank

    @timed("rerank")
    def rerank(self, state: LinkState) -> dict[str, Any]:
        """Score every candidate with the reranker and sort."""
        candidates = state.get("candidates") or []
        scores = self.reranker.score(state["query"], state.get("description"), state.get("evidence_text", ""),
                                     candidates) if candidates else []
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        ranking = [RankedEntity(id=candidates[i].id, name=candidates[i].name, score=round(float(scores[i]), 6),
                                description=candidates[i].entity.description if candidates[i].entity else "",
                                retrieval_score=candidates[i].score,
                                hits={ch: h.model_dump() for ch, h in candidates[i].hits.items()}) for i in order]
        return {"ranking": ranking}

    # -------------------------------------------------------------- decide / reflect

    def needs_reflection(self, state: LinkState) -> bool:
        """Whether the top two are too close to call and the model can still be asked once more."""
        ranking = state.get("ranking") or []
        if self.llm is None or len(ranking) < 2 or state.get("reflections", 0) >= self.config.max_reflections:
            return False
        top, second = ranking[0].score, ranking[1].score
        return top <= 0 or (top - second) / abs(top) < self.config.reflect_margin

    @timed("decide")
    def decide(self, state: LinkState) -> dict[str, Any]:
        """The answer's calibrated confidence, and NIL when it is under the threshold, when the marked face
        matches no portrait of the KB, or when the model judged that no candidate fits."""
        ranking = state.get("ranking") or []
        if not ranking:
            return {"nil": self.config.nil, "confidence": None}
        judgement = state.get("judgement")
        assessment = assess(ranking, mention=state["query"].mention, evidence=state.get("evidence"),
                            calibrator=self.calibrator, threshold=self.config.nil_threshold, allow_nil=self.config.nil,
                            model_said_nil=judgement is not None and judgement.choice.upper() == "NIL")
        return {"nil": assessment.nil, "confidence": assessment.confidence,
                "notes": [assessment.reason] if assessment.reason else []}

    @timed("reflect")
    def reflect(self, state: LinkState) -> dict[str, Any]:
        """Show the model the close candidates and let it choose, with reasons; its choice moves to the top."""
        query, ranking = state["query"], list(state.get("ranking") or [])
        shown = ranking[: self.config.reflect_top]
        listing = "\n".join(f"- {r.id}: {r.name}. {r.description[:160]}" for r in shown)
        description = state.get("description")
        messages = self.reflect_prompt.render(
            description=description.as_query_text() if description else "(no description)",
            evidence=state.get("evidence_text") or "none", caption=query.text or "(none)",
            mention=query.mention or "(none: the box is the mention)", candidates=listing)
        reflections = state.get("reflections", 0) + 1
        try:
            judgement, _ = self.llm.complete_structured(messages, Judgement, max_tokens=self.config.reflect_max_tokens)
        except LLMError as error:
            return {"reflections": reflections, "notes": [f"reflection failed, kept the ranking: {error}"]}
        chosen = next((r for r in shown if r.id == judgement.choice), None)
        if chosen is None:
            note = "the model chose NIL" if judgement.choice.upper() == "NIL" else \
                f"the model chose {judgement.choice!r}, not a shown candidate; kept the ranking"
            return {"reflections": reflections, "judgement": judgement, "notes": [note]}
        reordered = [chosen] + [r for r in ranking if r.id != chosen.id]
        return {"reflections": reflections, "judgement": judgement, "ranking": reordered,
                "notes": [f"reflection chose {chosen.name} ({chosen.id})"]}
