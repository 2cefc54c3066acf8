"""Multi-view candidate retrieval: several query views against several entity views, fused into one ranking."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import cached_property
from itertools import chain, repeat
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vplink.retrieval.dates import date_consistency_many, life_window, lifespan, text_years
from vplink.retrieval.lexical import LexicalIndex
from vplink.retrieval.records import Entity
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


class ViewHit(BaseModel):
    """Where one channel ranked a candidate."""

    rank: int
    score: float


class Candidate(BaseModel):
    """A fused candidate with its per-channel ranks and scores."""

    id: str
    name: str = ""
    score: float
    hits: dict[str, ViewHit] = Field(default_factory=dict)
    entity: Entity | None = None


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
# Query texts whose embeddings are kept between searches (least recently used dropped first).
QUERY_CACHE_SIZE = 4096


def _channel_weight(weights: dict[str, float], channel: str) -> float:
    return weights.get(channel, weights.get(channel.split("#")[0], 0.0))


class ChannelMatrix:
    """One query's channel rankings as arrays: a row per candidate, a column per channel."""

    def __init__(self, rankings: dict[str, list[tuple[str, float]]]) -> None:
        self.channels = list(rankings)
        # zip/map/chain keep the per-candidate work in C: a query has a few hundred (channel, candidate) pairs.
        columns = [tuple(zip(*ranking)) or ((), ()) for ranking in rankings.values()]
        self.ids = list(dict.fromkeys(chain.from_iterable(ids for ids, _ in columns)))
        row = dict(zip(self.ids, range(len(self.ids))))
        self.ranks = np.zeros((len(self.ids), len(self.channels)), dtype=np.int64)  # 0: not returned
        self.scores = np.zeros((len(self.ids), len(self.channels)), dtype=np.float64)
        self.floors = np.zeros(len(self.channels), dtype=np.float64)
        for j, (channel, (ids, values)) in enumerate(zip(self.channels, columns)):
            if not ids:
                continue
            rows = np.fromiter(map(row.__getitem__, ids), dtype=np.intp, count=len(ids))
            scores = np.asarray(values, dtype=np.float64)
            self.ranks[rows, j] = np.arange(1, len(ids) + 1)
            self.scores[rows, j] = scores
            # A dense channel's floor is its lowest returned similarity; lexical and dates mean "no evidence": 0.
            if not channel.split("#")[0].endswith(ZERO_FLOOR):
                self.floors[j] = scores.min()

    def fuse(self, weights: dict[str, float], method: str = "score", rrf_k: float = 60.0) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
        """Fused scores and the rows they belong to: candidates found by at least one weighted channel."""
        w = np.array([_channel_weight(weights, c) for c in self.channels], dtype=np.float64)
        w = np.where(w > 0, w, 0.0)
        present = self.ranks > 0
        rows = np.flatnonzero(present[:, w > 0].any(axis=1))
        if method == "rrf":
            contrib = np.where(present, 1.0 / (rrf_k + np.maximum(self.ranks, 1)), 0.0)
        else:
            contrib = np.where(present, self.scores, self.floors)
        return (contrib[rows] @ w), rows

    def top(self, weights: dict[str, float], k: int, method: str = "score", rrf_k: float = 60.0) -> list[Candidate]:
        """The k best fused candidates, ties broken by id, each with its per-channel ranks and scores."""
        fused, rows = self.fuse(weights, method, rrf_k)
        if not len(rows):
            return []
        ids = np.array(self.ids, dtype=object)[rows]
        order = np.lexsort((ids.astype(str), -fused))[:k]
        return [Candidate(id=ids[i], score=round(float(fused[i]), 6), hits=self.hits(int(rows[i]))) for i in order]

    def hits(self, row: int) -> dict[str, ViewHit]:
        """Where each channel ranked the candidate of one row."""
        ranks, scores = self.ranks[row].tolist(), self.scores[row].tolist()
        return {c: ViewHit(rank=r, score=round(s, 6)) for c, r, s in zip(self.channels, ranks, scores) if r}


class MultiViewRetriever:
    """Searches a :class:`KBStore` with every available query view and fuses the rankings."""

    def __init__(self, store: KBStore, text_encoder, *, image_encoder=None, config: FusionConfig | None = None) -> None:
        self.store = store
        self.text_encoder = text_encoder
        self._query_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
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
    def _windows(self) -> dict[str, tuple[int, int]]:
        return {eid: life_window(span) for eid, span in self.lifespans.items()}

    @cached_property
    def _catalogue(self) -> list[Entity]:
        return list(self.store.iter_entities())

    @cached_property
    def _entities(self) -> dict[str, Entity]:
        # The catalogue is read once for the lexical index anyway; looking candidates up here spares a
        # Chroma read and a JSON decode per candidate on every search.
        return {e.id: e for e in self._catalogue}

    def add_date_channel(self, queries: Sequence[QueryViews], rankings: list[dict[str, list[tuple[str, float]]]]
                         ) -> None:
        """Add the temporal-consistency channel: every candidate found so far, scored by its life span
        against the years of the query's context (see :mod:`vplink.retrieval.dates`)."""
        unknown = (np.nan, np.nan)
        for query, per_query in zip(queries, rankings):
            years = text_years(query.context)
            if not years:
                continue
            found = list(dict.fromkeys(chain.from_iterable(next(zip(*r), ()) for r in per_query.values())))
            windows = np.array(list(map(self._windows.get, found, repeat(unknown, len(found)))), dtype=np.float64)
            scores = date_consistency_many(years, *windows.reshape(-1, 2).T)
            order = np.argsort(-scores, kind="stable")  # stable: ties keep the order channels found them in
            per_query[DATES_CHANNEL] = [(found[i], float(scores[i])) for i in order]

    def search(self, query: QueryViews, k: int = 20) -> list[Candidate]:
        """The top-k fused candidates of one query."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[QueryViews], k: int = 20) -> list[list[Candidate]]:
        """The top-k fused candidates of each query; encoders and Chroma are called once per view."""
        results = [ChannelMatrix(per_query).top(self._weights_with_decay(per_query), k, self.config.method,
                                                self.config.rrf_k)
                   for per_query in self.channel_rankings(queries)]
        self._attach_entities(results)
        return results

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
            vectors = self.embed_queries(unique)
            row = {text: n for n, text in enumerate(unique)}
            for target in ("name", "description"):
                jobs = [job for job in text_jobs if job[2] == target]
                if not jobs:
                    continue
                found = self.store.query(target, vectors[[row[job[3]] for job in jobs]], depth, self.text_encoder.name)
                for (i, channel, _, _), ranking in zip(jobs, found):
                    out[i][channel] = ranking
        # Lexical channels: the mention and each name guess against names and aliases, one batch for all.
        lexical_jobs = [(i, "mention>lexical", q.mention) for i, q in enumerate(queries)
                        if q.mention and "mention>lexical" in active]
        if "names>lexical" in active:
            lexical_jobs += [(i, f"names>lexical#{g}", guess) for i, q in enumerate(queries)
                             for g, guess in enumerate(q.names[:5])]
        for (i, channel, _), ranking in zip(lexical_jobs, self.lexical.search_many([j[2] for j in lexical_jobs], depth)):
            out[i][channel] = ranking
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

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Embeddings of query texts; recently embedded ones come from a small cache (the agent searches again
        with the same caption after `describe`, and a caption serves the name and description channels)."""
        cache = self._query_vectors
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            cache.update(zip(missing, self.text_encoder.encode(missing)))
        for text in texts:
            cache.move_to_end(text)
        vectors = np.stack([cache[t] for t in texts])
        while len(cache) > QUERY_CACHE_SIZE:
            cache.popitem(last=False)
        return vectors

    def _attach_entities(self, results: list[list[Candidate]]) -> None:
        entities = self._entities
        missing = [c.id for cands in results for c in cands if c.id not in entities]
        if missing:  # added to the store after the catalogue was read
            entities = {**entities, **self.store.get_entities(missing)}
        for cands in results:
            for cand in cands:
                cand.entity = entities.get(cand.id)
                cand.name = cand.entity.name if cand.entity else cand.id

