"""The `Linker`: the object a user or a notebook holds to link regions of pictures to KB entities."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vplink.agent.confidence import Calibrator, default_calibrator
from vplink.agent.display import MermaidText
from vplink.agent.graph import build_graph
from vplink.agent.llm_client import LLMClient
from vplink.agent.nodes import LinkerNodes
from vplink.agent.settings import LinkerConfig
from vplink.agent.reranker import Reranker, RetrievalScoreReranker
from vplink.agent.state import LinkResult, LinkState, PictureResult
from vplink.agent.visual_prompt import VisualPrompt
from vplink.core.records import LinkQuery
from vplink.retrieval.search import MultiViewRetriever


#: The name :meth:`Linker.stream_query` gives its last item, the finished :class:`LinkResult`.
RESULT = "result"


class Linker:
    """Links a box on a picture (and optional caption and mention) to ranked KB entities.

    Open one with :func:`vplink.open_linker`, which builds it from a store and the settings.
    """

    def __init__(self, retriever: MultiViewRetriever, *, llm: LLMClient | None = None,
                 reranker: Reranker | None = None, config: LinkerConfig | None = None,
                 checkpoint: str | Path | None = None, calibrator: Calibrator | None = None) -> None:
        self.retriever = retriever
        self.llm = llm
        self.reranker = reranker or RetrievalScoreReranker()
        self.config = config or LinkerConfig()
        #: Maps an answer to its confidence and NIL threshold: the one given, else the reranker's own (a
        #: distilled scorer's calibration.json), else the packaged one when the scores are retrieval's.
        self.calibrator = calibrator or default_calibrator(self.reranker)
        self.nodes = LinkerNodes(retriever, self.reranker, self.config, llm, calibrator=self.calibrator)
        self._checkpointer = _sqlite_saver(checkpoint) if checkpoint else None
        self.graph = build_graph(self.nodes, self._checkpointer)

    # ------------------------------------------------------------------ linking

    def link(self, image: str | Path | None = None, *, box: Sequence[float] | str | None = None,
             text: str | None = None, mention: str | None = None, id: str | None = None) -> LinkResult:
        """Link one region (``box`` in pixels, or None for the whole picture) of ``image``."""
        return self.link_query(_query(image, box, text, mention, id))

    def link_query(self, query: LinkQuery) -> LinkResult:
        """Link a :class:`LinkQuery`; with a checkpoint, a finished query is not run again."""
        config = self._run_config(query)
        if config is not None:
            snapshot = self.graph.get_state(config)
            if snapshot.values and not snapshot.next:
                return to_result(snapshot.values)
            if snapshot.values:  # interrupted mid-way: go on from the last finished step
                return to_result(self.graph.invoke(None, config))
        return to_result(self.graph.invoke({"query": query, "notes": [], "timings_ms": {}}, config))

    def replay(self, query: LinkQuery, *, from_node: str = "retrieve") -> LinkResult:
        """Run a checkpointed query again from ``from_node`` on, reusing the saved earlier steps.

        With ``from_node="retrieve"`` the model's saved description is reused, so retrieval or
        reranking changes are measured without asking the model again. A query with no saved step
        before ``from_node`` is linked from the start.
        """
        config = self._run_config(query)
        if config is None:
            raise ValueError("replay needs a linker opened with a checkpoint")
        for snapshot in self.graph.get_state_history(config):
            if snapshot.next == (from_node,):
                return to_result(self.graph.invoke(None, snapshot.config))
        return self.link_query(query)

    def link_many(self, queries: Sequence[LinkQuery], *, concurrency: int = 4) -> list[LinkResult]:
        """Link many queries with bounded concurrency (the model server batches concurrent requests)."""
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(self.link_query, queries))

    def link_all(self, image: str | Path, text: str | None = None, boxes: Sequence[Sequence[float] | str] | None = None,
                 *, id: str | None = None, link: Callable[[LinkQuery], LinkResult] | None = None) -> PictureResult:
        """Link every given box of ``image`` (None: every face the detector finds) jointly: one entity per box,
        no entity twice, "unknown" allowed (see :mod:`vplink.agent.joint`). ``link`` links one box alone
        (default :meth:`link_query`; the service passes one that stops at its deadline)."""
        boxes_from = "boxes"
        if boxes is None:
            from vplink.agent.evidence.collect import default_tools

            from vplink.retrieval.images import loaded_scale

            picture = self.nodes.load_image(str(image))
            sx, sy = loaded_scale(picture)  # boxes are in the file's pixels; a huge file was shrunk on load
            detector = (self.nodes.tools or default_tools()).face_detector
            boxes = [[f.box[0] / sx, f.box[1] / sy, f.box[2] / sx, f.box[3] / sy] for f in detector.detect(picture)]
            boxes_from = "faces"
        queries = [_query(image, box, text, None, f"{id}#{n}" if id else None) for n, box in enumerate(boxes, start=1)]
        return PictureResult(image=str(image), text=text, boxes_from=boxes_from,
                             results=self.link_jointly(queries, link=link))

    def link_jointly(self, queries: Sequence[LinkQuery], *,
                     link: Callable[[LinkQuery], LinkResult] | None = None) -> list[LinkResult]:
        """Link the queries of one picture (its boxes, one caption) each alone, then decide them together."""
        from vplink.agent.picture import decide_jointly  # scipy loads only where boxes are decided together

        results = [(link or self.link_query)(query) for query in queries]
        return decide_jointly(results, self.retriever, self.config, calibrator=self.calibrator) if results else []

    def stream(self, image: str | Path | None = None, *, box: Sequence[float] | str | None = None,
               text: str | None = None, mention: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(node, update)`` as each step finishes."""
        for node, update in self.stream_query(_query(image, box, text, mention, None)):
            if node != RESULT:
                yield node, update

    def stream_query(self, query: LinkQuery, prompt: VisualPrompt | None = None) -> Iterator[tuple[str, Any]]:
        """Yield ``(node, update)`` as each step finishes, then ``(RESULT, LinkResult)`` of the whole run.

        ``prompt``, the query's visual prompt made beforehand (a caller that checks the box before it starts),
        is used as it is instead of loading the picture again.
        """
        state = None
        start = {"query": query, "prompt": prompt, "notes": [], "timings_ms": {}}
        for mode, chunk in self.graph.stream(start, stream_mode=["updates", "values"]):
            if mode == "values":
                state = chunk  # the merged state after each step: the reducers' own result, not ours
            else:
                yield from chunk.items()
        yield RESULT, to_result(state)

    def warm_up(self) -> float:
        """Load and run once every model a link uses, so a first request costs what later ones do; its seconds.

        A made-up picture with a line of text in its box goes through the steps that run models, called directly (no
        checkpoint is written, the model server is not asked): the face detector, the OCR's detector and reader, the
        object classifier where a model server will read its labels, the text encoder, the store's vectors and
        catalogue, the lexical index and the reranker.
        """
        from PIL import Image, ImageDraw, ImageFont

        started = time.perf_counter()
        picture = Image.new("RGB", (480, 320), (235, 235, 235))
        ImageDraw.Draw(picture).text((60, 130), "WARM UP 1840", fill=(0, 0, 0), font=ImageFont.load_default(40))
        query = LinkQuery(id="warm-up", text="Ada Lovelace in London, 1840", box=[40, 100, 440, 220])
        state: dict[str, Any] = {"query": query, "prompt": VisualPrompt.of(picture, query.box), "notes": [],
                                 "timings_ms": {}}
        for step in (self.nodes.prepare, self.nodes.retrieve, self.nodes.rerank):
            state.update(step(state))
        return time.perf_counter() - started

    def mermaid(self) -> MermaidText:
        """The workflow as Mermaid text (drawn locally, no web service); a notebook draws it as a diagram."""
        return MermaidText(self.graph.get_graph().draw_mermaid())

    def _run_config(self, query: LinkQuery) -> dict[str, Any] | None:
        if self._checkpointer is None:
            return None
        if not query.id:
            raise ValueError("a checkpointed linker needs a query id to resume by")
        return {"configurable": {"thread_id": query.id}}

    def versions(self) -> dict[str, Any]:
        """The models and prompts this linker runs with, for reports."""
        from vplink.prompts.loader import prompt_versions

        return {"text_encoder": self.retriever.text_encoder.name,
                "image_encoder": getattr(self.retriever.image_encoder, "name", None),
                "fusion": self.retriever.config.model_dump(), "linker": self.config.model_dump(),
                "llm": self.llm.model if self.llm else None, "reranker": self.reranker.name,
                "calibration": self.calibrator.fingerprint() if self.calibrator else None,
                "prompts": prompt_versions()}


def _query(image, box, text, mention, id) -> LinkQuery:
    if isinstance(box, str):
        from vplink.agent.visual_prompt import parse_box

        box = parse_box(box)
    return LinkQuery(id=id or "", image=str(image) if image else None, box=list(box) if box else None,
                     text=text, mention=mention)


def to_result(state: LinkState) -> LinkResult:
    """The user-facing result of a finished workflow state."""
    return LinkResult(query=state["query"], ranking=state.get("ranking") or [], nil=bool(state.get("nil")),
                      confidence=state.get("confidence"),
                      description=state.get("description"), judgement=state.get("judgement"),
                      choice=state.get("choice"),
                      evidence=state.get("evidence"), evidence_text=state.get("evidence_text", ""),
                      used_model=state.get("used_model"), notes=list(state.get("notes") or []),
                      timings_ms=dict(state.get("timings_ms") or {}))


def _sqlite_saver(path: str | Path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # One connection shared by worker threads; SqliteSaver serialises access with its own lock.
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))
