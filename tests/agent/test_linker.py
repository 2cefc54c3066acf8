"""The LangGraph workflow and the Linker, on real photos and a real KB slice, with and without a model server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vplink.agent.linker import Linker
from vplink.agent.nodes import LinkerConfig
from vplink.agent.state import Description, LinkResult
from vplink.agent.visual_prompt import BoxError
from vplink.retrieval.jsonl import read_jsonl


@pytest.fixture(scope="module")
def linker(people_store: str) -> Linker:
    return Linker.open(people_store, config=LinkerConfig(k=10))


def test_text_only_without_a_model(linker: Linker, shared_data: Path) -> None:
    row = read_jsonl(shared_data / "wikimel" / "dev.jsonl")[0]
    result = linker.link(text=row["text"], mention=row["mention"], id=row["id"])
    assert isinstance(result, LinkResult)
    assert result.top is not None and result.top.id == row["answer"]
    assert any("no model server" in note for note in result.notes)
    assert set(result.timings_ms) == {"prepare", "describe", "retrieve", "rerank", "decide"}
    assert result.description is None and result.used_model is None
    assert row["answer"] in repr(result) and "no model" in repr(result)


def test_real_photo_box_and_caption_order(linker: Linker, shared_data: Path) -> None:
    photo = shared_data / "people" / "images" / "two_people.jpg"
    caption = "Barack Obama and Joe Biden at the White House"
    right = linker.link(photo, box=[256, 0, 512, 301], text=caption)
    left = linker.link(photo, box="0,0,250,301", text=caption)
    # Two faces, two people in the caption: the marked face's place picks the person.
    assert right.evidence["alignment"]["spans"] == left.evidence["alignment"]["spans"] == ["Barack Obama", "Joe Biden"]
    assert right.evidence["alignment"]["probabilities"][1] > 0.6 and left.evidence["alignment"]["probabilities"][0] > 0.6
    assert right.top.id == "Q6279" and left.top.id == "Q76"
    assert "2nd" in right.evidence_text and "Joe Biden" in right.evidence_text


def test_photo_without_any_text_says_why_it_is_empty(linker: Linker, shared_data: Path) -> None:
    result = linker.link(shared_data / "people" / "images" / "obama.jpg")
    assert result.nil and result.ranking == []
    assert any("nothing to search with" in note for note in result.notes)


def test_bad_box_is_refused_clearly(linker: Linker, shared_data: Path) -> None:
    photo = shared_data / "people" / "images" / "two_people.jpg"
    with pytest.raises(BoxError, match="Fix:"):
        linker.link(photo, box=[300, 10, 200, 100], text="x")
    with pytest.raises(BoxError):
        linker.link(photo, box=[5000, 5000, 6000, 6000], text="x")


def test_stream_yields_each_node_in_order(linker: Linker) -> None:
    steps = [node for node, _ in linker.stream(text="Barack Obama speaking", mention="Obama")]
    assert steps == ["prepare", "describe", "retrieve", "rerank", "decide"]


def test_mermaid_shows_the_graph(linker: Linker) -> None:
    text = linker.mermaid()
    for node in ("prepare", "describe", "retrieve", "rerank", "reflect", "decide"):
        assert node in text


def test_checkpoint_resumes_an_interrupted_query(people_store: str, tmp_path: Path) -> None:
    class Crashing:
        """A reranker that dies the way a killed process would, after the earlier steps were saved."""

        name = "crashing"

        def score(self, *args):
            raise KeyboardInterrupt

    checkpoint = tmp_path / "run" / "checkpoints.sqlite"
    crashing = Linker.open(people_store, reranker=Crashing(), checkpoint=checkpoint)
    with pytest.raises(KeyboardInterrupt):
        crashing.link(text="Joe Biden in Delaware", mention="Joe Biden", id="q1")
    resumed = Linker.open(people_store, checkpoint=checkpoint)
    saved = resumed.graph.get_state({"configurable": {"thread_id": "q1"}})
    assert saved.next == ("rerank",)  # prepare, describe and retrieve are done and saved
    first = resumed.link(text="Joe Biden in Delaware", mention="Joe Biden", id="q1")
    assert first.top.id == "Q6279"
    assert first.timings_ms["retrieve"] == saved.values["timings_ms"]["retrieve"]  # not run again
    again = resumed.link(text="ignored: the finished answer is returned", id="q1")
    assert again.model_dump() == first.model_dump()


def test_describe_and_reflect_through_a_real_vllm_server(people_store: str, tiny_text_llm) -> None:
    # Random weights: the answers are arbitrary, but they arrive through guided decoding in the schema,
    # or the failure is recorded in the notes; the run never crashes.
    linker = Linker.open(people_store, llm_config=tiny_text_llm,
                         config=LinkerConfig(k=5, reflect_margin=10.0, describe_max_tokens=96, reflect_max_tokens=96))
    result = linker.link(text="Joe Biden in Delaware", mention="Joe Biden")
    assert result.used_model
    assert not any("HTTP 4" in note for note in result.notes), result.notes  # the server took every request
    assert isinstance(result.description, Description) or any("description failed" in n for n in result.notes)
    assert "reflect" in result.timings_ms
    assert result.judgement is not None or any("reflection failed" in n for n in result.notes)
    assert result.ranking and {r.id for r in result.ranking} <= {r.id for r in result.ranking}


def test_vlm_receives_the_marked_picture(people_store: str, tiny_vlm_llm, shared_data: Path) -> None:
    linker = Linker.open(people_store, llm_config=tiny_vlm_llm, config=LinkerConfig(k=5, max_reflections=0,
                                                                                      describe_max_tokens=64))
    result = linker.link(shared_data / "people" / "images" / "two_people.jpg", box=[256, 0, 512, 301],
                         text="Barack Obama and Joe Biden")
    assert result.used_model
    assert not any("HTTP 4" in note for note in result.notes), result.notes  # the server took the image parts
    assert result.top is not None


def test_cli_link_prints_json(people_store: str, shared_data: Path) -> None:
    from typer.testing import CliRunner

    from vplink.cli import app

    photo = shared_data / "people" / "images" / "two_people.jpg"
    out = CliRunner().invoke(app, ["link", str(photo), "--store", people_store, "--box", "256,0,512,301",
                                   "--text", "Barack Obama and Joe Biden", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["ranking"][0]["id"] == "Q6279"
    assert data["query"]["box"] == [256.0, 0.0, 512.0, 301.0]


def test_replay_reuses_saved_steps_and_reruns_the_rest(people_store: str, tmp_path: Path) -> None:
    from vplink.agent.query import LinkQuery
    from vplink.retrieval.search import FusionConfig

    checkpoint = tmp_path / "checkpoints.sqlite"
    query = LinkQuery(id="q2", text="Joe Biden in Delaware", mention="Joe Biden")
    first = Linker.open(people_store, checkpoint=checkpoint).link_query(query)
    only_lexical = Linker.open(people_store, checkpoint=checkpoint)
    only_lexical.retriever.config = FusionConfig(weights={"mention>lexical": 1.0})
    replayed = only_lexical.replay(query)
    assert replayed.timings_ms["prepare"] == first.timings_ms["prepare"]  # saved, not run again
    assert replayed.timings_ms["retrieve"] != first.timings_ms["retrieve"]
    assert all(set(r.hits) == {"mention>lexical"} for r in replayed.ranking)
    assert replayed.top.id == "Q6279"
