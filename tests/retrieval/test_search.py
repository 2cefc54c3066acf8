"""Multi-view retrieval and fusion on real WikiMEL mentions."""

from __future__ import annotations

import pytest

from vplink.retrieval.search import (DEFAULT_WEIGHTS, FusionConfig, MultiViewRetriever, QueryViews,
                                     reciprocal_rank_fusion, weighted_score_fusion)


def test_rrf_matches_hand_computation() -> None:
    fused = reciprocal_rank_fusion({"a": [("x", 0.9), ("y", 0.5)], "b": [("y", 0.8)]},
                                   {"a": 1.0, "b": 2.0}, rrf_k=10)
    assert abs(fused["x"][0] - 1 / 11) < 1e-12
    assert abs(fused["y"][0] - (1 / 12 + 2 / 11)) < 1e-12
    assert fused["y"][1]["b"].rank == 1 and fused["y"][1]["a"].rank == 2


# Channel rankings of one query, as (entity, similarity) best first.
RANKINGS = {
    "mention>lexical": [("A", 3.0), ("B", 1.0)],          # weight 1; absent = 0 (no word matched)
    "context>description": [("B", 0.8), ("C", 0.6)],      # weight 1; absent = 0.6, its lowest hit
    "context>name": [("A", 0.5), ("C", 0.4)],             # weight 1; absent = 0.4
    "context>dates": [("C", 1.0), ("A", -1.0)],           # weight 0.25; absent = 0 (no date evidence)
    "names>name#1": [("B", 0.9), ("A", 0.3)],             # the 2nd name guess: "names>name" weight 0.5; absent = 0.3
    "mention>name": [("D", 0.99)],                        # weight 0: not fused, D is no candidate
}


def test_default_score_fusion_by_hand(small_store, text_encoder) -> None:
    # A: 3.0 + 0.6 (floor) + 0.5 + 0.25 * -1.0 + 0.5 * 0.3 = 4.0
    # B: 1.0 + 0.8 + 0.4 (floor) + 0 (floor) + 0.5 * 0.9 = 2.65
    # C: 0 (floor) + 0.6 + 0.4 + 0.25 * 1.0 + 0.5 * 0.3 (floor) = 1.4
    expected = {"A": 4.0, "B": 2.65, "C": 1.4}
    fused = weighted_score_fusion(RANKINGS, DEFAULT_WEIGHTS)
    assert {eid: score for eid, (score, _) in fused.items()} == pytest.approx(expected)
    hits = fused["A"][1]
    assert (hits["mention>lexical"].rank, hits["context>dates"].rank, hits["names>name#1"].rank) == (1, 2, 2)
    assert "context>description" not in hits  # a floor fills the score, not the hits
    # the retriever's default fusion is this one, with these weights
    default = MultiViewRetriever(small_store, text_encoder).fuse(RANKINGS)
    assert {eid: score for eid, (score, _) in default.items()} == pytest.approx(expected)


def test_dev_slice_recall(small_store, text_encoder, dev_slice) -> None:
    retriever = MultiViewRetriever(small_store, text_encoder)
    queries = [QueryViews(mention=row["mention"], context=row["text"]) for row in dev_slice]
    results = retriever.search_batch(queries, k=10)
    top1 = sum(r[0].id == row["answer"] for r, row in zip(results, dev_slice)) / len(dev_slice)
    top10 = sum(row["answer"] in [c.id for c in r] for r, row in zip(results, dev_slice)) / len(dev_slice)
    # 400 real entities: the gold must be near the top almost always.
    assert top10 >= 0.95 and top1 >= 0.8
    first = results[0][0]
    assert first.entity is not None and first.name == first.entity.name
    assert set(first.hits) <= {"mention>lexical", "context>description", "context>name", "context>dates"}
    assert "mention>name" not in first.hits  # weight 0 on dev: the channel is not even searched


def test_channels_follow_weights(small_store, text_encoder, dev_slice) -> None:
    row = dev_slice[0]
    only_lexical = MultiViewRetriever(small_store, text_encoder, config=
                                      FusionConfig(weights={"mention>lexical": 1.0}))
    [ranks] = only_lexical.channel_rankings([QueryViews(mention=row["mention"], context=row["text"])])
    assert list(ranks) == ["mention>lexical"]


def test_name_guesses_search_without_mention(small_store, text_encoder, dev_slice) -> None:
    retriever = MultiViewRetriever(small_store, text_encoder)
    gold = small_store.get_entities([dev_slice[3]["answer"]])[dev_slice[3]["answer"]]
    found = retriever.search(QueryViews(names=["Nobody Atall", gold.name]), k=5)
    assert found[0].id == gold.id
    assert "names>lexical#1" in found[0].hits
    assert QueryViews().is_empty() and retriever.search(QueryViews(), k=5) == []


def test_dates_channel_scores_candidates_by_life_span(small_store, text_encoder) -> None:
    retriever = MultiViewRetriever(small_store, text_encoder)
    entity = next(e for e in small_store.iter_entities() if "Death: " in e.description)
    birth, death = retriever.lifespans[entity.id]
    [alive] = retriever.channel_rankings([QueryViews(context=f"{entity.name} in {death - 1}")])
    [dead] = retriever.channel_rankings([QueryViews(context=f"{entity.name} in {death + 30}")])
    assert dict(alive["context>dates"])[entity.id] == 1.0
    assert dict(dead["context>dates"])[entity.id] == -1.0


def test_batched_search_ranks_as_single_searches(small_store, text_encoder, dev_slice) -> None:
    retriever = MultiViewRetriever(small_store, text_encoder)
    queries = [QueryViews(mention=row["mention"], context=row["text"]) for row in dev_slice[:24]]
    queries.append(QueryViews(names=[dev_slice[0]["mention"], "Nobody Atall"], description=dev_slice[1]["text"]))
    batched = retriever.search_batch(queries, k=10)
    for query, together in zip(queries, batched):
        alone = retriever.search(query, k=10)
        assert [c.id for c in alone] == [c.id for c in together]
        assert [c.score for c in alone] == pytest.approx([c.score for c in together], abs=1e-5)
        assert [sorted(c.hits) for c in alone] == [sorted(c.hits) for c in together]


def test_query_embeddings_are_reused_across_searches(small_store, text_encoder, dev_slice) -> None:
    class Counting:
        """The real encoder, counting the texts it is asked to embed."""

        def __init__(self, inner) -> None:
            self.inner, self.name, self.texts = inner, inner.name, []

        def encode(self, texts):
            self.texts += list(texts)
            return self.inner.encode(texts)

    counting = Counting(text_encoder)
    retriever = MultiViewRetriever(small_store, counting)
    query = QueryViews(mention=dev_slice[0]["mention"], context=dev_slice[0]["text"])
    first = retriever.search(query, k=5)
    assert counting.texts == [dev_slice[0]["text"]]  # one caption, embedded once for two entity views
    again = retriever.search(query.model_copy(update={"names": [dev_slice[0]["mention"]]}), k=5)
    assert counting.texts == [dev_slice[0]["text"], dev_slice[0]["mention"]]  # the caption came from the cache
    assert first[0].id == dev_slice[0]["answer"] and again[0].id == first[0].id


def test_a_ranking_without_explanations_is_the_same_ranking(small_store, text_encoder, dev_slice) -> None:
    retriever = MultiViewRetriever(small_store, text_encoder)
    queries = [QueryViews(mention=row["mention"], context=row["text"]) for row in dev_slice[:20]]
    explained = retriever.search_batch(queries, k=10)
    bare = retriever.search_batch(queries, k=10, explain=False)
    assert [[(c.id, c.score) for c in r] for r in bare] == [[(c.id, c.score) for c in r] for r in explained]
    assert all(c.hits for r in explained for c in r) and not any(c.hits for r in bare for c in r)
