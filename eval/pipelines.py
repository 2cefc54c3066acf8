"""The pipelines `vplink eval` runs, each wrapped as a harness predictor.

- ``retrieve``: multi-view retrieval over the mention and the caption (batched), no model.
- ``rerank``: retrieval, then a reranker (the distilled scorer, handed in by the front door).
- ``agent``: the whole LangGraph workflow, with a model server when ``llm_url`` is given.
"""

from __future__ import annotations

import time
from typing import Any

from agent.query import LinkQuery
from agent.state import LinkResult
from eval.metrics import Prediction, RankedEntity
from retrieval.errors import VplinkError
from retrieval.factory import open_retriever
from retrieval.search import MultiViewRetriever, QueryViews

PIPELINES = ("retrieve", "rerank", "agent")


class RetrievePredictor:
    """Ranks KB entities by fused multi-view retrieval of the mention and caption."""

    def __init__(self, retriever: MultiViewRetriever, k: int = 20) -> None:
        self.retriever = retriever
        self.k = k

    @property
    def entity_names(self) -> dict[str, str]:
        """Every KB entity's name, for reports."""
        return {e.id: e.name for e in self.retriever.store.iter_entities()}

    def versions(self) -> dict[str, Any]:
        """The encoders and fusion settings behind the numbers."""
        return {"text_encoder": self.retriever.text_encoder.name,
                "fusion": self.retriever.config.model_dump(), "pipeline": "retrieve"}

    def predict(self, batch: list[LinkQuery]) -> list[Prediction]:
        """One batched search for the whole batch; latency is the batch's time shared per query."""
        started = time.perf_counter()
        views = [QueryViews(mention=q.mention, context=q.text) for q in batch]
        results = self.retriever.search_batch(views, k=self.k)
        per_query = (time.perf_counter() - started) * 1000 / max(len(batch), 1)
        return [Prediction(id=q.id, ranking=[RankedEntity(id=c.id, score=c.score, name=c.name) for c in cands],
                           latency_ms={"retrieve": per_query}) for q, cands in zip(batch, results)]


class LinkerPredictor:
    """Runs the agent's workflow on each query (the rerank pipeline is the same graph without a model)."""

    def __init__(self, linker, name: str) -> None:
        self.linker = linker
        self.name = name

    @property
    def entity_names(self) -> dict[str, str]:
        """Every KB entity's name, for reports."""
        return {e.id: e.name for e in self.linker.retriever.store.iter_entities()}

    def versions(self) -> dict[str, Any]:
        """Models, prompts and the reranker behind the numbers."""
        return {**self.linker.versions(), "pipeline": self.name}

    def predict(self, batch: list[LinkQuery]) -> list[Prediction]:
        """Link each query; a query that fails is recorded with its error, the others go on."""
        out = []
        for query in batch:
            try:
                out.append(to_prediction(self.linker.link_query(query)))
            except VplinkError as error:
                out.append(Prediction.failed(query.id, str(error)))
        return out


def to_prediction(result: LinkResult) -> Prediction:
    """A harness prediction from a workflow result; the description and notes travel in ``extra``."""
    ranking = [RankedEntity(id=r.id, score=r.score, name=r.name) for r in result.ranking]
    extra: dict[str, Any] = {"notes": result.notes}
    if result.description:
        extra["description"] = result.description.model_dump()
    if result.judgement:
        extra["judgement"] = result.judgement.model_dump()
    if result.evidence_text:
        extra["evidence_text"] = result.evidence_text
    return Prediction(id=result.query.id, ranking=ranking, nil=result.nil, latency_ms=result.timings_ms,
                      candidates=[r.id for r in result.ranking], extra=extra)


def build_predictor(pipeline: str, store: str, *, k: int = 20, reranker=None, llm_url: str | None = None,
                    llm_model: str | None = None, vision: bool | str = False, checkpoint: str | None = None,
                    nil_threshold: float | str | None = None, **unknown: Any):
    """A predictor for ``pipeline`` over the store; unknown options are an error that lists the known ones."""
    if unknown:
        raise VplinkError(f"unknown pipeline option(s) {sorted(unknown)}; known: llm_url, llm_model, vision, "
                          "checkpoint, nil_threshold (and --scorer for rerank)")
    k = int(k)
    if pipeline == "retrieve":
        return RetrievePredictor(open_retriever(store), k=k)
    if pipeline not in PIPELINES:
        raise VplinkError(f"unknown pipeline '{pipeline}'. Fix: use one of {', '.join(PIPELINES)}")
    from agent.linker import Linker
    from agent.nodes import LinkerConfig

    if pipeline == "rerank" and reranker is None:
        raise VplinkError("the rerank pipeline needs a distilled scorer. Fix: pass --scorer DIR "
                          "(train one with `vplink distill train`)")
    config = LinkerConfig(k=k, nil_threshold=float(nil_threshold) if nil_threshold not in (None, "") else None)
    vision = vision if isinstance(vision, bool) else str(vision).lower() in ("1", "true", "yes")
    linker = Linker.open(store, llm_url=llm_url if pipeline == "agent" else None, llm_model=llm_model,
                         vision=vision, reranker=reranker, config=config, checkpoint=checkpoint)
    return LinkerPredictor(linker, pipeline)
