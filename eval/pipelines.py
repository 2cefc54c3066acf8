"""The pipelines `vplink eval` runs, each wrapped as a harness predictor.

- ``retrieve``: multi-view retrieval over the mention and the caption (batched), no model.
- ``rerank``: retrieval, then a reranker (the distilled scorer, handed in by the front door).
- ``agent``: the whole LangGraph workflow, with a model server when ``llm_url`` is given.
- ``joint``: the agent on every box, then the boxes of each picture decided together (one entity per box).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from vplink.agent.confidence import EXPLAINED, Calibrator, assess, confidence_features
from vplink.agent.settings import LinkerConfig, LinkerSettings
from vplink.agent.state import LinkResult
from vplink.core.errors import VplinkError
from vplink.core.records import LinkQuery, RankedEntity
from vplink.eval.metrics import Prediction
from vplink.retrieval.search import MultiViewRetriever, QueryViews

if TYPE_CHECKING:  # the workflow's modules load only where a linker is opened
    from vplink.agent.linker import Linker

PIPELINES = ("retrieve", "rerank", "agent", "joint")


class RetrievePredictor:
    """Ranks KB entities by fused multi-view retrieval of the mention and caption."""

    def __init__(self, retriever: MultiViewRetriever, k: int, *, calibrator: Calibrator | None = None,
                 config: LinkerConfig | None = None) -> None:
        self.retriever = retriever
        self.k = k
        self.calibrator = calibrator
        self.config = config or LinkerConfig()

    @property
    def entity_names(self) -> dict[str, str]:
        """Every KB entity's name, for reports."""
        return {e.id: e.name for e in self.retriever.store.iter_entities()}

    def versions(self) -> dict[str, Any]:
        """The encoders and fusion settings behind the numbers."""
        return {"text_encoder": self.retriever.text_encoder.name, "text_weights": self.retriever.text_encoder.weights,
                "store": self.retriever.store.fingerprint(), "fusion": self.retriever.config.model_dump(),
                "calibration": self.calibrator.fingerprint() if self.calibrator else None,
                "nil": self.config.nil, "nil_threshold": self.config.nil_threshold, "pipeline": "retrieve"}

    def predict(self, batch: list[LinkQuery]) -> list[Prediction]:
        """One batched search for the whole batch; latency is the batch's time shared per query."""
        started = time.perf_counter()
        views = [QueryViews(mention=q.mention, context=q.text) for q in batch]
        # Only the first few candidates' hits feed the confidence; explaining all costs a quarter of the time.
        results = self.retriever.search_batch(views, k=self.k, explain=EXPLAINED)
        out = []
        for query, cands in zip(batch, results):
            ranking = [RankedEntity(id=c.id, score=c.score, name=c.name, retrieval_score=c.score,
                                    hits={ch: h.model_dump() for ch, h in c.hits.items()}) for c in cands]
            judged = assess(ranking, mention=query.mention, evidence=None, calibrator=self.calibrator,
                            threshold=self.config.nil_threshold, allow_nil=self.config.nil) if ranking else None
            out.append(Prediction(id=query.id, ranking=[r.model_copy(update={"hits": {}}) for r in ranking],
                                  nil=judged.nil if judged else self.config.nil,
                                  confidence=judged.confidence if judged else None,
                                  confidence_features=judged.features if judged else {}))
        per_query = (time.perf_counter() - started) * 1000 / max(len(batch), 1)
        for prediction in out:
            prediction.latency_ms = {"retrieve": per_query}
        return out


class LinkerPredictor:
    """Runs the agent's workflow on each query (the rerank pipeline is the same graph without a model)."""

    def __init__(self, linker: Linker, name: str, replay_from: str | None = None) -> None:
        self.linker = linker
        self.name = name
        self.replay_from = replay_from

    @property
    def entity_names(self) -> dict[str, str]:
        """Every KB entity's name, for reports."""
        return {e.id: e.name for e in self.linker.retriever.store.iter_entities()}

    def versions(self) -> dict[str, Any]:
        """Models, prompts and the reranker behind the numbers."""
        retriever = self.linker.retriever
        return {**self.linker.versions(), "text_weights": getattr(retriever.text_encoder, "weights", None),
                "store": retriever.store.fingerprint(), "pipeline": self.name}

    def predict(self, batch: list[LinkQuery]) -> list[Prediction]:
        """Link each query; a query that fails is recorded with its error, the others go on."""
        out = []
        for query in batch:
            try:
                result = self.linker.replay(query, from_node=self.replay_from) if self.replay_from \
                    else self.linker.link_query(query)
                out.append(to_prediction(result))
            except VplinkError as error:
                out.append(Prediction.failed(query.id, str(error)))
        return out


class JointPredictor(LinkerPredictor):
    """The agent on every box, then each picture's boxes (queries sharing an image) decided together."""

    @staticmethod
    def group(query: LinkQuery) -> str:
        """The picture a query belongs to: the harness keeps a picture's boxes in one batch."""
        return query.image or query.id

    def predict(self, batch: list[LinkQuery]) -> list[Prediction]:
        """Link each picture's boxes jointly; a picture that fails is recorded with its error, the others go on."""
        pictures: dict[str, list[LinkQuery]] = {}
        for query in batch:
            pictures.setdefault(self.group(query), []).append(query)
        out = []
        for queries in pictures.values():
            try:
                out += [to_prediction(result) for result in self.linker.link_jointly(queries)]
            except VplinkError as error:
                out += [Prediction.failed(query.id, str(error)) for query in queries]
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
    if result.choice:
        extra["choice"] = result.choice.model_dump()
    if result.evidence and result.evidence.get("alignment"):
        extra["alignment"] = result.evidence["alignment"]
    if result.joint:
        extra["joint"] = {**result.joint.model_dump(), "changed": result.joint.changed}
    features = confidence_features(result.ranking, mention=result.query.mention,
                                   evidence=result.evidence) if result.ranking else {}
    return Prediction(id=result.query.id, ranking=ranking, nil=result.nil, confidence=result.confidence,
                      confidence_features=features, latency_ms=result.timings_ms,
                      candidates=[r.id for r in result.ranking], extra=extra)


def check_pipeline(pipeline: str, settings: LinkerSettings, replay_from: str | None = None) -> LinkerSettings:
    """The settings ``pipeline`` runs with (only the agent asks the model server); a pipeline that cannot run
    with them is refused with the fix.

    ``replay_from`` (with the settings' ``checkpoint``) re-runs saved queries from that step on, reusing the
    model's earlier answers.
    """
    if pipeline not in PIPELINES:
        raise VplinkError(f"unknown pipeline '{pipeline}'. Fix: use one of {', '.join(PIPELINES)}")
    if pipeline == "rerank" and settings.scorer is None:
        raise VplinkError("the rerank pipeline needs a distilled scorer. Fix: pass --scorer DIR "
                          "(train one with `vplink distill train`)")
    if replay_from and not settings.checkpoint:
        raise VplinkError("replay_from needs the run's --checkpoint file. Fix: pass --checkpoint RUN/checkpoints.sqlite")
    return settings if pipeline in ("agent", "joint") else settings.model_copy(update={"llm_url": None})


def build_predictor(pipeline: str, linker: Linker, *, replay_from: str | None = None):
    """The predictor of ``pipeline`` over an opened linker (see :func:`check_pipeline` for the settings)."""
    if pipeline == "retrieve":
        return RetrievePredictor(linker.retriever, k=linker.config.k, calibrator=linker.calibrator,
                                 config=linker.config)
    if pipeline == "joint":
        return JointPredictor(linker, pipeline, replay_from=replay_from)
    return LinkerPredictor(linker, pipeline, replay_from=replay_from)
