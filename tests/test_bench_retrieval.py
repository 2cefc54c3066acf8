"""The weight tuning of `benchmarks/bench_retrieval.py` ranks exactly as the production fusion does."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_retrieval import TEXT_CHANNELS, channel_matrices, fused_gold_ranks, rrf_features
from vplink.retrieval.search import DEFAULT_WEIGHTS, FusionConfig, MultiViewRetriever, QueryViews

WEIGHTS = {
    "default": DEFAULT_WEIGHTS,
    "baseline": {"context>description": 1.0, "mention>lexical": 1.0},
    "all equal": {c: 1.0 for c in TEXT_CHANNELS},
    "mention>name only, dates strong": {"mention>name": 2.0, "context>dates": 1.0},
}


@pytest.fixture(scope="module")
def tuning_input(small_store, text_encoder, dev_slice):
    """What the benchmark tunes on: every channel's ranking of the 60 real dev mentions, as it computes them."""
    queries = [QueryViews(mention=r.get("mention"), context=r.get("text")) for r in dev_slice]
    all_channels = MultiViewRetriever(small_store, text_encoder,
                                      config=FusionConfig(weights={**DEFAULT_WEIGHTS, **{c: 1.0 for c in TEXT_CHANNELS}}))
    rankings = all_channels.channel_rankings(queries)
    gold = [r["answer"] for r in dev_slice]
    return queries, gold, channel_matrices(rankings, gold)


def _production_ranks(store, encoder, queries, gold, config: FusionConfig) -> np.ndarray:
    found = MultiViewRetriever(store, encoder, config=config).search_batch(queries, k=10_000)
    ids = [[c.id for c in cands] for cands in found]
    return np.array([r.index(g) + 1 if g in r else 0 for r, g in zip(ids, gold)])


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_tuning_ranks_gold_as_production_does(small_store, text_encoder, tuning_input, name) -> None:
    queries, gold, (ranks, scores, gold_rows) = tuning_input
    weights = {c: w for c, w in WEIGHTS[name].items() if c in TEXT_CHANNELS}
    production = _production_ranks(small_store, text_encoder, queries, gold, FusionConfig(weights=weights))
    tuned = fused_gold_ranks(scores, gold_rows, np.array([weights.get(c, 0.0) for c in TEXT_CHANNELS]), ranks)
    assert (production > 0).sum() > 30  # a real comparison: most golds are ranked
    assert tuned.tolist() == production.tolist()


def test_rrf_tuning_ranks_gold_as_production_does(small_store, text_encoder, tuning_input) -> None:
    # Without the dates channel: its ranks (not its scores) depend on which channels ran.
    queries, gold, (ranks, _, gold_rows) = tuning_input
    weights = {"context>description": 1.0, "context>name": 0.5, "mention>lexical": 2.0}
    production = _production_ranks(small_store, text_encoder, queries, gold,
                                   FusionConfig(method="rrf", rrf_k=10.0, weights=weights))
    tuned = fused_gold_ranks(rrf_features(ranks, 10.0), gold_rows,
                             np.array([weights.get(c, 0.0) for c in TEXT_CHANNELS]), ranks)
    assert tuned.tolist() == production.tolist()
