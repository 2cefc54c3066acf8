"""Multi-view candidate retrieval: several query views against several entity views, fused into one ranking."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from itertools import chain, repeat
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vplink.core.records import Candidate, Entity, ViewHit
from vplink.retrieval.dates import date_consistency_many, life_window, lifespan, text_years
from vplink.retrieval.lexical import LexicalIndex, PersonNameIndex
from vplink.retrieval.store import FACE_VIEW, IMAGE_VIEW, SCORE_DECIMALS, KBStore


class QueryViews(BaseModel):
    """The views of one query: mention, context text, name guesses, a description, an image crop."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    mention: str | None = None
    context: str | None = None
    names: list[str] = Field(default_factory=list)
    #: Weighted pseudo-mentions: the caption's people, each with the probability that the box marks it.
    people: list[tuple[str, float]] = Field(default_factory=list)
    description: str | None = None
    image: object | None = Field(default=None, exclude=True)  # a PIL image of the marked region
    #: The marked face's identity descriptor (dlib, 128-d), for the store's face view.
    face: list[float] | None = Field(default=None, exclude=True)

    def is_empty(self) -> bool:
        """Whether no view carries anything to search with."""
        return not (self.mention or self.context or self.names or self.people or self.description
                    or self.image is not None or self.face is not None)


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


# Score-fusion weights tuned on WikiMEL dev only (`python benchmarks/bench_retrieval.py --tune`; the grid's best
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
    # The marked face against the KB's portraits (dlib descriptors; see retrieval/faces.py).
    "face>face": 2.0,
    "description>description": 0.5,
    "image>image": 0.25,
}
LEXICAL_SUFFIX = ">lexical"
DATES_CHANNEL = "context>dates"
#: The marked face against the KB's portraits.
FACE_CHANNEL = "face>face"
# Channels whose absence means "no evidence" (score 0), not "below the last hit".
ZERO_FLOOR = (LEXICAL_SUFFIX, DATES_CHANNEL, FACE_CHANNEL)
# Query texts whose embeddings are kept between searches (least recently used dropped first).
QUERY_CACHE_SIZE = 4096


def _channel_weight(weights: dict[str, float], channel: str) -> float:
    return weights.get(channel, weights.get(channel.split("#")[0], 0.0))


class FusedRanking(Mapping[str, tuple[float, dict[str, ViewHit]]]):
    """One query's fused ranking: every candidate's fused score, and its per-channel hits built on demand.

    Reads like ``{id: (score, hits)}``. Only the top k are ever shown, and building hits for every
    candidate of every channel took longer than the search itself (a profile of the test split).
    """

    def __init__(self, scores: dict[str, float], hits_of: Callable[[str], dict[str, ViewHit]]) -> None:
        self.scores = scores
        self._hits_of = hits_of

    @classmethod
    def from_channels(cls, ids: Sequence[str], fused: np.ndarray,
                      rankings: dict[str, list[tuple[str, float]]]) -> FusedRanking:
        """Scores of ``ids``, with hits looked up in the channel rankings they were fused from."""
        positions: dict[str, dict[str, tuple[int, float]]] = {}

        def hits_of(eid: str) -> dict[str, ViewHit]:
            if not positions:
                positions.update({channel: {e: (rank, s) for rank, (e, s) in enumerate(ranking, start=1)}
                                  for channel, ranking in rankings.items()})
            # model_construct: the values are ints and floats already; validating 0.5M of them cost seconds.
            return {channel: ViewHit.model_construct(rank=found[0], score=round(float(found[1]), SCORE_DECIMALS))
                    for channel, listed in positions.items() if (found := listed.get(eid))}

        return cls(dict(zip(ids, fused.tolist())), hits_of)

    def __getitem__(self, eid: str) -> tuple[float, dict[str, ViewHit]]:
        return self.scores[eid], self._hits_of(eid)

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def hits(self, eid: str) -> dict[str, ViewHit]:
        """Where each channel ranked ``eid`` (channels that missed it are left out)."""
        return self._hits_of(eid)

    def top(self, k: int, *, explain: bool | int = True) -> list[Candidate]:
        """The k best candidates: scores rounded by :func:`rank_scores` first, ties to the smaller id, so
        float noise below 1e-6 cannot reorder two runs. ``explain=False`` leaves their hits empty; a number n
        fills them for the first n only."""
        ids = sorted(self.scores)
        rounded = rank_scores(np.fromiter(map(self.scores.__getitem__, ids), dtype=np.float64, count=len(ids)))
        best = np.argsort(-rounded, kind="stable")[:k]  # stable: among equal scores the smaller id first
        explained = k if explain is True else int(explain)
        # model_construct: ids, floats and hits are built right here; validating them was 6 % of `retrieve`.
        return [Candidate.model_construct(id=ids[i], score=float(rounded[i]),
                                          hits=self._hits_of(ids[i]) if n < explained else {})
                for n, i in enumerate(best.tolist())]


def rank_scores(scores: np.ndarray) -> np.ndarray:
    """Fused scores as they are ranked: rounded to :data:`SCORE_DECIMALS` (ties then go to the smaller id)."""
    return np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS)


def channel_matrix(rankings: dict[str, list[tuple[str, float]]], channels: Sequence[str]
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The fusion's input for one query: candidate ids (sorted), and candidates x channels matrices of
    similarities (a dense channel's lowest returned score where it missed a candidate, 0 for lexical and
    dates) and of 1-based ranks (inf where it missed). Tuning (`benchmarks/bench_retrieval.py`) uses it too."""
    ids = sorted({eid for channel in channels for eid, _ in rankings.get(channel, [])})
    row = {eid: i for i, eid in enumerate(ids)}
    scores = np.zeros((len(ids), len(channels)))
    ranks = np.full((len(ids), len(channels)), np.inf)
    for j, channel in enumerate(channels):
        listed = rankings.get(channel, [])
        if not listed:
            continue
        rows = [row[eid] for eid, _ in listed]
        values = np.round(np.fromiter((s for _, s in listed), dtype=np.float64, count=len(listed)), SCORE_DECIMALS)
        if not channel.split("#")[0].endswith(ZERO_FLOOR):
            scores[:, j] = values.min()
        ranks[rows, j] = np.arange(1, len(listed) + 1)
        scores[rows, j] = values
    return ids, scores, ranks


def fused_scores(features: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Σ_j weight_j × features[:, j], added column by column in order: the same numbers for the same
    inputs, however many candidates there are (a BLAS product may sum in another order)."""
    out = np.zeros(features.shape[0])
    for j, weight in enumerate(weights):
        if weight:
            out = out + weight * features[:, j]
    return out


def _weighted_channels(rankings: dict[str, list], weights: dict[str, float]) -> list[str]:
    # A fixed (sorted) channel order: the sum is then the same as in tuning.
    return sorted(c for c in rankings if _channel_weight(weights, c) > 0)


def reciprocal_rank_fusion(rankings: dict[str, list[tuple[str, float]]], weights: dict[str, float],
                           rrf_k: float) -> FusedRanking:
    """Fuse ranked lists: score(e) = Σ_channel weight / (rrf_k + rank); rank starts at 1."""
    channels = _weighted_channels(rankings, weights)
    ids, _, ranks = channel_matrix(rankings, channels)
    fused = fused_scores(1.0 / (rrf_k + ranks), [_channel_weight(weights, c) for c in channels])
    return FusedRanking.from_channels(ids, fused, rankings)


def weighted_score_fusion(rankings: dict[str, list[tuple[str, float]]],
                          weights: dict[str, float]) -> FusedRanking:
    """Fuse by Σ_channel weight × similarity; a candidate missing from a channel gets its floor."""
    channels = _weighted_channels(rankings, weights)
    ids, scores, _ = channel_matrix(rankings, channels)
    fused = fused_scores(scores, [_channel_weight(weights, c) for c in channels])
    return FusedRanking.from_channels(ids, fused, rankings)


def mix_fused(parts: Sequence[tuple[float, FusedRanking]]) -> FusedRanking:
    """Mix several fused rankings by weight: score(e) = Σ weight_i × score_i(e), where a ranking that
    lacks e gives it its own lowest score. Hits come from the heaviest ranking that holds e."""
    total = sum(weight for weight, _ in parts) or 1.0
    floors = [min(fused.scores.values(), default=0.0) for _, fused in parts]
    mixed = {eid: sum(weight * fused.scores.get(eid, floor) for (weight, fused), floor in zip(parts, floors)) / total
             for eid in dict.fromkeys(chain.from_iterable(fused.scores for _, fused in parts))}
    heaviest_first = sorted(parts, key=lambda part: -part[0])

    def hits_of(eid: str) -> dict[str, ViewHit]:
        return next(fused.hits(eid) for _, fused in heaviest_first if eid in fused.scores)

    return FusedRanking(mixed, hits_of)


class MultiViewRetriever:
    """Searches a :class:`KBStore` with every available query view and fuses the rankings."""

    def __init__(self, store: KBStore, text_encoder, *, image_encoder=None, face_models=None,
                 config: FusionConfig | None = None) -> None:
        self.store = store
        self.text_encoder = text_encoder
        self._query_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()  # the linker searches from several threads
        self.image_encoder = image_encoder
        #: dlib's face models when the store has a face view (:class:`vplink.retrieval.faces.FaceModels`).
        self.face_models = face_models
        self.config = config or FusionConfig()

    @cached_property
    def lexical(self) -> LexicalIndex:
        """The name/alias index, built once from the store's catalogue."""
        return LexicalIndex(self._catalogue)

    @cached_property
    def person_names(self) -> PersonNameIndex:
        """The KB's people by full name, surname and first name, built once from the catalogue."""
        return PersonNameIndex(self._catalogue)

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

    def search(self, query: QueryViews, k: int) -> list[Candidate]:
        """The top-k fused candidates of one query."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[QueryViews], k: int, *, explain: bool | int = True
                     ) -> list[list[Candidate]]:
        """The top-k fused candidates of each query; encoders and Chroma are called once per view.

        A query without a mention but with weighted ``people`` is searched once per person (that
        person as the mention) and the fused scores are mixed by the people's probabilities.
        ``explain=False`` leaves each candidate's per-channel ``hits`` empty (a ranking-only evaluation
        needs none, and they are a quarter of its time); a number n explains the first n candidates only.
        """
        expanded: list[tuple[int, float, QueryViews]] = []
        for i, query in enumerate(queries):
            people = [(text, p) for text, p in query.people if p > 0] if not query.mention else []
            if people:
                expanded += [(i, p, query.model_copy(update={"mention": text, "people": []})) for text, p in people]
            else:
                expanded.append((i, 1.0, query))
        rankings = self.channel_rankings([views for _, _, views in expanded])
        parts: list[list[tuple[float, FusedRanking]]] = [[] for _ in queries]
        for (i, weight, views), per_query in zip(expanded, rankings):
            parts[i].append((weight, self.fuse(per_query, self._query_weights(per_query))))
        results = [(mixture[0][1] if len(mixture) == 1 else mix_fused(mixture)).top(k, explain=explain)
                   for mixture in parts]
        self._attach_entities(results)
        return results

    def fuse(self, rankings: dict[str, list[tuple[str, float]]],
             weights: dict[str, float] | None = None) -> FusedRanking:
        """Fuse one query's channel rankings with the configured method."""
        weights = weights if weights is not None else self.config.weights
        if self.config.method == "rrf":
            return reciprocal_rank_fusion(rankings, weights, self.config.rrf_k)
        return weighted_score_fusion(rankings, weights)

    def _query_weights(self, per_query: dict[str, list]) -> dict[str, float]:
        """Per-channel weights of one query: name guess i decays by ``guess_decay ** i``."""
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
        # The face channel: the marked face against the KB's portraits.
        with_faces = [i for i, q in enumerate(queries) if q.face is not None]
        if with_faces and self.face_models is not None and FACE_CHANNEL in active and FACE_VIEW in self.store.views():
            vectors = np.asarray([queries[i].face for i in with_faces], dtype=np.float32)
            for i, ranking in zip(with_faces, self.store.query(FACE_VIEW, vectors, depth, self.face_models.name)):
                out[i][FACE_CHANNEL] = ranking
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
        with self._cache_lock:
            known = {t: cache[t] for t in dict.fromkeys(texts) if t in cache}
            for text in known:
                cache.move_to_end(text)
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = dict(zip(missing, self.text_encoder.encode(missing)))
            known.update(fresh)
            with self._cache_lock:
                cache.update(fresh)
                while len(cache) > QUERY_CACHE_SIZE:
                    cache.popitem(last=False)
        return np.stack([known[t] for t in texts])

    def _attach_entities(self, results: list[list[Candidate]]) -> None:
        entities = self._entities
        missing = [c.id for cands in results for c in cands if c.id not in entities]
        if missing:  # added to the store after the catalogue was read
            entities = {**entities, **self.store.get_entities(missing)}
        for cands in results:
            for cand in cands:
                cand.entity = entities.get(cand.id)
                cand.name = cand.entity.name if cand.entity else cand.id

