"""Wiring the front door does: hand the distilled scorer to the agent as its reranker."""

from __future__ import annotations

from pathlib import Path


def load_reranker(scorer: Path | None, store: str | None = None, *, prefix: str | None = None):
    """The distilled scorer at ``scorer`` as a reranker, or None for retrieval's own scores."""
    if scorer is None:
        return None
    from vplink.distill.scorer import load_scorer
    from vplink.retrieval.factory import open_store

    return load_scorer(scorer, store=open_store(store, prefix=prefix) if store else None)
