"""The pipelines `vplink eval` runs, built and run directly on a real KB slice (no stand-in builder)."""

from __future__ import annotations

import pytest

from tests.stub_servers import silent_server
from vplink.agent.llm_errors import LLMTimeoutError
from vplink.agent.state import Description, LinkResult
from vplink.core.errors import SettingsError, VplinkError
from vplink.core.records import LabeledQuery, LinkQuery, RankedEntity
from vplink.eval.metrics import compute_metrics
from vplink.agent.settings import LinkerSettings
from vplink.eval.pipelines import LinkerPredictor, RetrievePredictor, build_predictor, check_pipeline, to_prediction
from vplink.retrieval.search import MultiViewRetriever, QueryViews
from vplink.wiring import open_linker


@pytest.fixture(scope="module")
def store(small_store) -> str:
    return str(small_store.location)


def _queries(dev_slice, n: int) -> list[LabeledQuery]:
    return [LabeledQuery(**{k: row[k] for k in ("id", "text", "mention", "answer")}) for row in dev_slice[:n]]


def test_retrieve_pipeline_ranks_the_gold_first_on_real_mentions(store, small_store, text_encoder, dev_slice) -> None:
    predictor = build_predictor("retrieve", open_linker(store=store, k=5))
    assert isinstance(predictor, RetrievePredictor) and predictor.k == 5
    queries = _queries(dev_slice, 20)
    predictions = predictor.predict(queries)
    assert [p.id for p in predictions] == [q.id for q in queries]
    for prediction in predictions:
        assert len(prediction.ranking) == 5 and prediction.error is None
        scores = [r.score for r in prediction.ranking]
        assert scores == sorted(scores, reverse=True)
        assert set(prediction.latency_ms) == {"retrieve"}
    # the same ranking a retriever gives for the mention and caption views
    direct = MultiViewRetriever(small_store, text_encoder).search_batch(
        [QueryViews(mention=q.mention, context=q.text) for q in queries[:3]], k=5)
    assert [[r.id for r in p.ranking] for p in predictions[:3]] == [[c.id for c in d] for d in direct]
    metrics = compute_metrics(predictions, queries)
    assert metrics.hits["1"] >= 0.8  # 400 real entities holding every gold: retrieval alone finds most
    assert predictor.entity_names[queries[0].answer]  # names for the report come from the store


def test_agent_pipeline_without_a_model_links_and_records_a_bad_query_alone(store, dev_slice, shared_data) -> None:
    predictor = build_predictor("agent", open_linker(store=store, k=5, max_reflections="0"))
    assert isinstance(predictor, LinkerPredictor) and predictor.linker.llm is None
    assert predictor.linker.config.k == 5 and predictor.linker.config.max_reflections == 0
    good = _queries(dev_slice, 2)
    photo = str(shared_data / "people" / "images" / "two_people.jpg")
    bad = LinkQuery(id="bad-box", image=photo, box=[5000, 5000, 6000, 6000], text="x")  # outside the picture
    predictions = predictor.predict([good[0], bad, good[1]])
    assert [p.id for p in predictions] == [good[0].id, "bad-box", good[1].id]
    assert "outside" in predictions[1].error and predictions[1].ranking == []
    for prediction, query in zip([predictions[0], predictions[2]], good):
        assert prediction.error is None and prediction.ranking[0].id == query.answer
        assert "no model server" in " ".join(prediction.extra["notes"])
    assert predictor.versions()["pipeline"] == "agent" and predictor.versions()["llm"] is None


def test_to_prediction_carries_the_ranking_and_what_the_model_said() -> None:
    result = LinkResult(query=LinkQuery(id="q1"), nil=True, evidence_text="OCR read no text",
                        ranking=[RankedEntity(id="Q2", name="B", score=0.9), RankedEntity(id="Q1", name="A", score=0.2)],
                        description=Description(entity_type="person", names=["B"]), notes=["n1"],
                        timings_ms={"retrieve": 3.0})
    prediction = to_prediction(result)
    assert prediction.id == "q1" and prediction.nil
    assert [(r.id, r.score, r.name) for r in prediction.ranking] == [("Q2", 0.9, "B"), ("Q1", 0.2, "A")]
    assert prediction.candidates == ["Q2", "Q1"] and prediction.latency_ms == {"retrieve": 3.0}
    assert prediction.extra["description"]["names"] == ["B"] and prediction.extra["notes"] == ["n1"]
    assert prediction.extra["evidence_text"] == "OCR read no text" and "judgement" not in prediction.extra


@pytest.mark.parametrize("pipeline, options, replay_from, message", [
    ("bm25", {}, None, "unknown pipeline 'bm25'"),
    ("rerank", {}, None, "needs a distilled scorer"),
    ("agent", {}, "retrieve", "needs the run's --checkpoint"),
])
def test_bad_pipeline_settings_are_refused_with_the_fix(store, pipeline, options, replay_from, message) -> None:
    with pytest.raises(VplinkError, match="Fix:") as err:
        check_pipeline(pipeline, LinkerSettings.load(store=store, **options), replay_from)
    assert message in str(err.value)


def test_unknown_or_bad_options_are_refused_with_the_fix(store) -> None:
    with pytest.raises(SettingsError, match="Fix:") as err:
        LinkerSettings.load(store=store, no_such_knob="1")
    assert "unknown option(s) ['no_such_knob']" in str(err.value)
    with pytest.raises(SettingsError, match="max_reflections"):  # the graph reflects once at most
        LinkerSettings.load(store=store, max_reflections="3")


def test_only_the_agent_asks_the_model_server(store) -> None:
    settings = LinkerSettings.load(store=store, llm_url="http://127.0.0.1:1/v1")
    assert check_pipeline("retrieve", settings).llm_url is None
    assert check_pipeline("agent", settings).llm_url == "http://127.0.0.1:1/v1"


def test_agent_pipeline_with_a_silent_model_server_fails_at_open(store) -> None:
    with silent_server() as url, pytest.raises(LLMTimeoutError, match="within 1 s"):
        open_linker(store=store, llm_url=url, llm_timeout="1")


def test_joint_pipeline_decides_each_pictures_boxes_together(portrait_store, shared_data, tmp_path) -> None:
    """The four boxes of the two group photos: a picture's boxes share one batch, each is answered once."""
    from vplink.core.jsonl import read_jsonl
    from vplink.eval.harness import make_batches, read_predictions, run_eval

    examples = [LabeledQuery(id=row["id"], image=str(shared_data / "people" / row["image"]), box=row["box"],
                             answer=row["answer"])
                for row in read_jsonl(shared_data / "people" / "photos.jsonl") if row["box"]]
    predictor = build_predictor("joint", open_linker(store=portrait_store, k=5, evidence_tools=["faces"],
                                                     image_retrieval=False))
    assert make_batches(examples, 1, predictor.group) == [examples[:2], examples[2:]]
    assert [len(b) for b in make_batches(examples, 3)] == [3, 1]  # without groups: plain slices
    result = run_eval(examples, predictor, tmp_path / "run", pipeline="joint", dataset="people", batch_size=1,
                      concurrency=2, progress=False)
    assert result["hits"]["1"] == 1.0 and result["errors"] == 0
    predictions = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert all(p.extra["joint"]["boxes"] == 2 and not p.extra["joint"]["changed"] for p in predictions.values())
