"""Multi-view candidate retrieval: several query views against several entity views, fused into one ranking."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vplink.core.records import Candidate, Entity, ViewHit
from vplink.retrieval.dates import date_consistency, lifespan, text_years
from vplink.retrieval.lexical import LexicalIndex
from vplink.retrieval.store import IMAGE_VIEW, KBStore


class QueryViews(BaseModel):
    """The views of one query: mention, context text, name guesses, a description, an image crop."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    mention: str | None = None
    context: str | None = None
    names: list[str] = Field(default_factory=list)
    description: str | None = None
    image: object | None = Field(default=None, exclude=True)  # a PIL image of the marked region

    def is_empty(self) -> bool:
        """Whether no view carries anything to search with."""
        return not (self.mention or self.context or self.names or self.description or self.image is not None)


class FusionConfig(BaseModel):
    """Which channels run, how deep each looks, their weights, and how rankings are fused.

    ``method="score"`` sums each channel's weighted similarity (a candidate a dense channel did not
    return gets that channel's lowest returned score, lexical gives 0); ``method="rrf"`` is
    reciprocal-rank fusion. On WikiMEL dev the weighted score sum wins: RRF discards how much
    better the first hit is, and breaks the ties of same-name people arbitrarily.
    """

    method: Literal["score", "rrf"] = "score"
    rrf_k: float = 60.0
    depth: int = 100
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    # Later name guesses count less: guess i is weighted by guess_decay ** i.
    guess_decay: float = 0.5


# Score-fusion weights tuned on WikiMEL dev only (`python -m vplink.eval.bench_retrieval --tune`; the grid's best
# was mention>lexical = context>description = context>name = 2, context>dates = 0.5, mention>name = 0,
# scaled here so lexical = 1). The agent's channels (name guesses, description, image) follow the
# mention's and context's weights; channel = "<query view>><entity view>".
DEFAULT_WEIGHTS: dict[str, float] = {
    "mention>name": 0.0,
    "mention>lexical": 1.0,
    "context>description": 1.0,
    "context>name": 1.0,
    "context>dates": 0.25,
    "names>name": 0.5,
    "names>lexical": 1.0,
    "description>description": 0.5,
    "image>image": 0.25,
}
LEXICAL_SUFFIX = ">lexical"
DATES_CHANNEL = "context>dates"
# Channels whose absence means "no evidence" (score 0), not "below the last hit".
ZERO_FLOOR = (LEXICAL_SUFFIX, DATES_CHANNEL)


def _channel_weight(weights: dict[str, float], channel: str) -> float:
    return weights.get(channel, weights.get(channel.split("#")[0], 0.0))


def _hits(rankings: dict[str, list[tuple[str, float]]]) -> dict[str, dict[str, ViewHit]]:
    hits: dict[str, dict[str, ViewHit]] = defaultdict(dict)
    for channel, ranking in rankings.items():
        for rank, (eid, score) in enumerate(ranking, start=1):
            hits[eid][channel] = ViewHit(rank=rank, score=round(float(score), 6))
    return hits


def reciprocal_rank_fusion(rankings: dict[str, list[tuple[str, float]]], weights: dict[str, float],
                           rrf_k: float) -> dict[str, tuple[float, dict[str, ViewHit]]]:
    """Fuse ranked lists: score(e) = Σ_channel weight / (rrf_k + rank); rank starts at 1."""
    fused: dict[str, float] = defaultdict(float)
    for channel, ranking in rankings.items():
        weight = _channel_weight(weights, channel)
        for rank, (eid, _) in enumerate(ranking, start=1):
            if weight > 0:
                fused[eid] += weight / (rrf_k + rank)
    hits = _hits(rankings)
    return {eid: (fused[eid], hits[eid]) for eid in fused}


def weighted_score_fusion(rankings: dict[str, list[tuple[str, float]]],
                          weights: dict[str, float]) -> dict[str, tuple[float, dict[str, ViewHit]]]:
    """Fuse by Σ_channel weight × similarity; a candidate missing from a channel gets its floor."""
    hits = _hits(rankings)
    channels = [(c, _channel_weight(weights, c), r) for c, r in rankings.items() if _channel_weight(weights, c) > 0]
    floors = {c: 0.0 if c.split("#")[0].endswith(ZERO_FLOOR) else min((s for _, s in r), default=0.0)
              for c, _, r in channels}
    fused = {}
    for eid in {eid for _, _, r in channels for eid, _ in r}:
        fused[eid] = sum(w * (hits[eid][c].score if c in hits[eid] else floors[c]) for c, w, _ in channels)
    return {eid: (score, hits[eid]) for eid, score in fused.items()}


class MultiViewRetriever:
    """Searches a :class:`KBStore` with every available query view and fuses the rankings."""

    def __init__(self, store: KBStore, text_encoder, *, image_encoder=None, config: FusionConfig | None = None) -> None:
        self.store = store
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.config = config or FusionConfig()

    @cached_property
    def lexical(self) -> LexicalIndex:
        """The name/alias index, built once from the store's catalogue."""
        return LexicalIndex(self._catalogue)

    @cached_property
    def lifespans(self) -> dict[str, tuple[int | None, int | None]]:
        """Birth and death years of every entity whose description gives them."""
        spans = {e.id: lifespan(e.description) for e in self._catalogue}
        return {eid: span for eid, span in spans.items() if span != (None, None)}

    @cached_property
    def _catalogue(self) -> list[Entity]:
        return list(self.store.iter_entities())

    def add_date_channel(self, queries: Sequence[QueryViews], rankings: list[dict[str, list[tuple[str, float]]]]
                         ) -> None:
        """Add the temporal-consistency channel: every candidate found so far, scored by its life span
        against the years of the query's context (see :mod:`vplink.retrieval.dates`)."""
        for query, per_query in zip(queries, rankings):
            years = text_years(query.context)
            if not years:
                continue
            found = dict.fromkeys(eid for ranking in per_query.values() for eid, _ in ranking)
            scored = [(eid, date_consistency(years, self.lifespans.get(eid, (None, None)))) for eid in found]
            per_query[DATES_CHANNEL] = sorted(scored, key=lambda item: -item[1])

    def search(self, query: QueryViews, k: int = 20) -> list[Candidate]:
        """The top-k fused candidates of one query."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[QueryViews], k: int = 20) -> list[list[Candidate]]:
        """The top-k fused candidates of each query; encoders and Chroma are called once per view."""
        rankings = self.channel_rankings(queries)
        results = []
        for per_query in rankings:
            weights = self._weights_with_decay(per_query)
            fused = self.fuse(per_query, weights)
            top = sorted(fused.items(), key=lambda item: (-item[1][0], item[0]))[:k]
            results.append([Candidate(id=eid, score=round(score, 6), hits=hits) for eid, (score, hits) in top])
        self._attach_entities(results)
        return results

    def fuse(self, rankings: dict[str, list[tuple[str, float]]],
             weights: dict[str, float] | None = None) -> dict[str, tuple[float, dict[str, ViewHit]]]:
        """Fuse one query's channel rankings with the configured method."""
        weights = weights if weights is not None else self.config.weights
        if self.config.method == "rrf":
            return reciprocal_rank_fusion(rankings, weights, self.config.rrf_k)
        return weighted_score_fusion(rankings, weights)

    def _weights_with_decay(self, per_query: dict[str, list]) -> dict[str, float]:
        weights = dict(self.config.weights)
        for channel in per_query:
            base, _, index = channel.partition("#")
            if index:
                weights[channel] = self.config.weights.get(base, 0.0) * self.config.guess_decay ** int(index)
        return weights

    def channel_rankings(self, queries: Sequence[QueryViews]) -> list[dict[str, list[tuple[str, float]]]]:
        """Every channel's ranking for each query (the input of fusion; also used to tune weights)."""
        depth = self.config.depth
        active = {c for c, w in self.config.weights.items() if w > 0}
        out: list[dict[str, list[tuple[str, float]]]] = [{} for _ in queries]
        # Dense text channels: gather every text of one query view, embed once, search once per entity view.
        text_jobs: list[tuple[int, str, str, str]] = []  # (query index, channel, entity view, text)
        for i, q in enumerate(queries):
            for view, text in (("mention", q.mention), ("context", q.context), ("description", q.description)):
                if text:
                    for target in ("name", "description"):
                        if f"{view}>{target}" in active:
                            text_jobs.append((i, f"{view}>{target}", target, text))
            for g, guess in enumerate(q.names[:5]):
                if "names>name" in active:
                    text_jobs.append((i, f"names>name#{g}", "name", guess))
        if text_jobs:
            unique = list(dict.fromkeys(job[3] for job in text_jobs))
            vectors = self.text_encoder.encode(unique)
            row = {text: n for n, text in enumerate(unique)}
            for target in ("name", "description"):
                jobs = [job for job in text_jobs if job[2] == target]
                if not jobs:
                    continue
                found = self.store.query(target, vectors[[row[job[3]] for job in jobs]], depth, self.text_encoder.name)
                for (i, channel, _, _), ranking in zip(jobs, found):
                    out[i][channel] = ranking
        # Lexical channels: the mention and each name guess against names and aliases.
        for i, q in enumerate(queries):
            if q.mention and "mention>lexical" in active:
                out[i]["mention>lexical"] = self.lexical.search(q.mention, depth)
            if "names>lexical" in active:
                for g, guess in enumerate(q.names[:5]):
                    out[i][f"names>lexical#{g}"] = self.lexical.search(guess, depth)
        # The image channel: the crop against entity images, when both sides have images.
        with_images = [i for i, q in enumerate(queries) if q.image is not None]
        if with_images and self.image_encoder is not None and "image>image" in active \
                and IMAGE_VIEW in self.store.views():
            vectors = self.image_encoder.encode([queries[i].image for i in with_images])
            for i, ranking in zip(with_images, self.store.query(IMAGE_VIEW, vectors, depth, self.image_encoder.name)):
                out[i]["image>image"] = ranking
        if DATES_CHANNEL in active:
            self.add_date_channel(queries, out)
        return out

    def _attach_entities(self, results: list[list[Candidate]]) -> None:
        entities = self.store.get_entities([c.id for cands in results for c in cands])
        for cands in results:
            for cand in cands:
                cand.entity = entities.get(cand.id)
                cand.name = cand.entity.name if cand.entity else cand.id

