"""Teacher annotation mechanics against a real (tiny, random-weight) vLLM server and a real KB slice."""

from __future__ import annotations

import json

import pytest

from vplink.agent.llm_client import LLMClient
from vplink.core.records import LabeledQuery, LinkQuery
from vplink.distill.rationales import NIL, RationaleRecord, TeacherAnswer
from vplink.distill.teacher import annotate, candidate_listing, normalise_answer
from vplink.prompts.loader import load_prompt
from vplink.retrieval.search import MultiViewRetriever, QueryViews

SENTINEL = "Q_GOLD_SENTINEL_424242"


class RecordingClient(LLMClient):
    """A real client that also keeps every request body it sends."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.bodies: list[str] = []

    async def _acreate(self, request):
        self.bodies.append(json.dumps(request))
        return await super()._acreate(request)


@pytest.fixture(scope="module")
def retriever(small_store, text_encoder) -> MultiViewRetriever:
    return MultiViewRetriever(small_store, text_encoder)


def _queries(dev_slice, n=6) -> list[LabeledQuery]:
    # gold answers replaced by a sentinel that must never reach the model or the output
    return [LabeledQuery(**{**row, "answer": SENTINEL}) for row in dev_slice[:n]]


def test_annotate_writes_valid_records_and_resumes(tiny_text_llm, retriever, dev_slice, tmp_path):
    out = tmp_path / "rationales.jsonl"
    client = RecordingClient(tiny_text_llm.model_copy(update={"max_retries": 1}))
    queries = _queries(dev_slice)
    report = annotate(queries, retriever, client, out, k=5, concurrency=4, progress=False, max_tokens=128)
    assert report.annotated + report.failed == len(queries)
    assert report.annotated >= 1, report.errors
    assert report.prompt_version == load_prompt("judge").version
    lines = out.read_text().splitlines()
    assert len(lines) == report.annotated
    for line in lines:
        rec = RationaleRecord.model_validate_json(line)
        assert 1 <= len(rec.candidates) <= 5
        assert rec.choice == NIL or rec.choice in rec.candidates
        assert set(rec.scores) == set(rec.candidates)
        assert all(0.0 <= v <= 1.0 for v in rec.scores.values())
        assert rec.model == tiny_text_llm.model and rec.prompt_version == report.prompt_version
        assert "answer" not in json.loads(line)
    # a choice of a shown id carries its probability, from the token log-probabilities the server returned
    records = [RationaleRecord.model_validate_json(line) for line in lines]
    assert all(rec.confidence is not None for rec in records if rec.choice in rec.candidates)
    # no gold leakage: the sentinel answer is in no request and no record
    assert client.bodies and not any(SENTINEL in body for body in client.bodies)
    assert SENTINEL not in out.read_text()
    # resume: a second run skips what is done and sends nothing for it
    again = annotate(queries, retriever, RecordingClient(tiny_text_llm), out, k=5, progress=False, max_tokens=128)
    assert again.skipped_done == report.annotated
    assert again.annotated + again.failed == len(queries) - report.annotated


def test_limit_annotates_the_first_queries_only(tiny_text_llm, retriever, dev_slice, tmp_path):
    queries = [LinkQuery(**{k: v for k, v in row.items() if k != "answer"}) for row in dev_slice[:5]]
    client = RecordingClient(tiny_text_llm.model_copy(update={"max_retries": 0}))
    out = tmp_path / "r.jsonl"
    report = annotate(queries, retriever, client, out, k=3, limit=2, progress=False, max_tokens=128)
    assert report.requested == 2 and report.annotated + report.failed == 2
    # one request per query, each about its own query, and none about the three beyond the limit
    assert len(client.bodies) == 2
    for query in queries[:2]:
        assert sum(json.dumps(query.text)[1:-1] in body for body in client.bodies) == 1
    assert not any(json.dumps(q.text)[1:-1] in body for q in queries[2:] for body in client.bodies)
    written = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert set(written) <= {q.id for q in queries[:2]} and len(written) == report.annotated
    # each record shows the model its own query's top 3
    tops = retriever.search_batch([QueryViews(mention=q.mention, context=q.text) for q in queries[:2]], k=3)
    expected = {q.id: {c.id for c in top} for q, top in zip(queries, tops)}
    for line in out.read_text().splitlines():
        rec = RationaleRecord.model_validate_json(line)
        assert set(rec.candidates) == expected[rec.id]


def test_normalise_answer_fills_and_repairs():
    shown = ["Q1", "Q2", "Q3"]
    choice, scores, notes = normalise_answer(TeacherAnswer(choice="Q9", scores={"Q2": 1.7, "Q9": 0.5}), shown)
    assert choice == NIL and scores == {"Q1": 0.0, "Q2": 1.0, "Q3": 0.0}
    assert any("not a shown id" in n for n in notes)
    choice, scores, _ = normalise_answer(TeacherAnswer(choice="Q3", scores={"Q1": 0.9, "Q3": 0.2}), shown)
    assert choice == "Q3" and scores["Q3"] == max(scores.values())
    assert normalise_answer(TeacherAnswer(choice="nil"), shown)[0] == NIL
    choice, scores, _ = normalise_answer(TeacherAnswer(choice="Q2"), shown)  # no scores at all
    assert scores == {"Q1": 0.0, "Q2": 1.0, "Q3": 0.0}


def test_candidate_listing_trims_descriptions(small_store):
    from vplink.core.records import Candidate

    entities = small_store.get_entities([e.id for e, _ in zip(small_store.iter_entities(), range(2))])
    cands = [Candidate(id=e.id, name=e.name, score=0.1, entity=e.model_copy(update={"description": "x" * 500}))
             for e in entities.values()]
    lines = candidate_listing(cands).splitlines()
    assert all(line.startswith(f"- {c.id}: {c.name}.") and len(line) < len(c.name) + len(c.id) + 140
               for line, c in zip(lines, cands))


def test_disagreement_with_retrieval_counts_who_was_right():
    from vplink.distill.rationales import RationaleRecord, disagreement_with_retrieval

    def record(rid: str, choice: str) -> RationaleRecord:
        return RationaleRecord(id=rid, candidates=["A", "B", "C"], choice=choice, model="m", prompt_version="p")

    records = [record("agree", "A"), record("retrieval-right", "B"), record("teacher-right", "B"),
               record("nil", "NIL"), record("no-gold", "C")]
    answers = {"agree": "A", "retrieval-right": "A", "teacher-right": "B", "nil": "C"}
    report = disagreement_with_retrieval(records, answers)
    assert (report["n"], report["agree"], report["disagree"], report["disagree_nil"]) == (4, 1, 3, 1)
    assert (report["teacher_right_where_disagree"], report["retrieval_right_where_disagree"]) == (1, 1)
    assert report["teacher_hits@1"] == 0.5 and report["retrieval_hits@1"] == 0.5
    assert report["by_confidence"] == {}  # records without confidences: no cut-offs to report
    records[1].confidence, records[2].confidence, records[0].confidence = 0.6, 0.97, 0.99
    cut = disagreement_with_retrieval(records, answers)["by_confidence"]["0.95"]
    assert (cut["kept"], cut["kept_disagree"], cut["teacher_right_where_disagree"]) == (2, 1, 1)
    assert cut["kept_precision"] == 1.0 and cut["kept_share"] == 0.5
