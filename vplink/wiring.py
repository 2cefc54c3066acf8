"""The one place a `Linker` is built: the store opened once, the model server checked, the distilled scorer
handed to the agent as its reranker (the agent never imports `distill`)."""

from __future__ import annotations

from typing import Any

from vplink.agent.confidence import Calibrator
from vplink.agent.linker import Linker
from vplink.agent.llm_client import LLMClient, LLMConfig
from vplink.agent.reranker import Reranker
from vplink.agent.settings import LinkerSettings


def open_linker(settings: LinkerSettings | None = None, /, *, reranker: Reranker | None = None,
                llm_config: LLMConfig | None = None, **given: Any) -> Linker:
    """A linker as ``settings`` (or the ``given`` fields, e.g. ``store=..., k=10``) say.

    The model server is asked for its models at once (a few seconds at most), so a wrong URL or a silent
    server fails here, not mid-run. ``reranker`` and ``llm_config`` hand in ready parts instead of the
    scorer folder and the URL (tests, notebooks).
    """
    from vplink.retrieval.factory import open_retriever

    settings = settings if settings is not None else LinkerSettings.load(**given)
    config = settings.workflow()
    retriever = open_retriever(settings.store, text_model=settings.text_model, prefix=settings.prefix,
                               image_encoder=settings.image_encoder if config.image_retrieval else "none")
    if reranker is None and settings.scorer is not None:
        from vplink.distill.scorer import load_scorer

        reranker = load_scorer(settings.scorer, store=retriever.store)  # the retriever's store: opened once
    llm = None
    if llm_config is not None or settings.llm_url:
        llm_config = llm_config or LLMConfig(url=settings.llm_url, model=settings.llm_model, vision=settings.vision)
        if settings.llm_timeout:
            llm_config = llm_config.model_copy(update={"timeout_s": settings.llm_timeout})
        llm = LLMClient(llm_config)
        llm.check()  # fail now, with the fix, when no server (or not this model) answers at that URL
    calibrator = Calibrator.load(settings.calibration) if settings.calibration else None
    return Linker(retriever, llm=llm, reranker=reranker, config=config, checkpoint=settings.checkpoint,
                  calibrator=calibrator)
