"""The box carries the answer: real group photos, a real KB slice, no model server.

Two boxes on different people of one picture must get different top-1 entities — by the
caption's people aligned to the faces, and by face identity where the KB has portraits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vplink.agent.linker import Linker
from vplink.core.jsonl import read_jsonl, write_jsonl
from vplink.retrieval.kb import load_kb
from vplink.retrieval.store import KBStore
from vplink.wiring import open_linker

# Multi-person pictures of the boxed WikiMEL fixture whose caption orders its people (L-R, rows).
PICTURES = ("images/1342.jpg", "images/2939.jpg", "images/3441.jpg")


@pytest.fixture(scope="module")
def boxed(repo_fixtures: Path) -> list[dict]:
    return [json.loads(line) for line in (repo_fixtures / "wikimel_with_images_boxed.jsonl").open(encoding="utf-8")]


@pytest.fixture(scope="module")
def group_linker(shared_data: Path, boxed: list[dict], text_encoder, tmp_path_factory) -> Linker:
    """Text views of the fixture's gold people, every KB person sharing a name word with them, and 300 others."""
    kb = read_jsonl(shared_data / "wikimel" / "kb.jsonl")
    gold = {row["answer"] for row in boxed if row["image"] in PICTURES}
    words = {w for e in kb if e["id"] in gold for w in e["name"].lower().split()}
    rows = [e for e in kb if e["id"] in gold or set(e["name"].lower().split()) & words][:600]
    rows += [e for e in kb if e not in rows][:300]
    folder = tmp_path_factory.mktemp("groups")
    write_jsonl(folder / "kb.jsonl", rows)
    KBStore(folder / "store").index(load_kb(folder / "kb.jsonl").entities, text_encoder, progress=False)
    return open_linker(store=folder / "store", k=10, evidence_tools=["geometry", "faces", "ocr"])


@pytest.mark.parametrize("picture", PICTURES)
def test_different_boxes_on_a_group_photo_get_different_answers(group_linker: Linker, boxed: list[dict],
                                                                 shared_data: Path, picture: str) -> None:
    rows = [row for row in boxed if row["image"] == picture]
    results = [group_linker.link(shared_data / "wikimel" / row["image"], box=row["box"], text=row["text"])
               for row in rows]
    tops = [result.top.id for result in results]
    assert len(set(tops)) >= len(tops) - 1, tops  # at most one pair of boxes collides
    right = sum(top == row["answer"] for top, row in zip(tops, rows))
    assert right >= len(rows) - 1, list(zip(tops, [row["answer"] for row in rows]))
    # The mention is hidden: the caption's people were found and aligned, not given.
    assert all(result.evidence["alignment"]["spans"] for result in results)


@pytest.mark.parametrize("caption", [None, "Barack Obama and Joe Biden at the White House"])
def test_face_view_links_the_group_photos_by_face(portrait_store: Path, shared_data: Path, caption) -> None:
    linker = open_linker(store=portrait_store, k=5, evidence_tools=["faces"], image_retrieval=False)
    for row in read_jsonl(shared_data / "people" / "photos.jsonl"):
        if row["box"] is None or ("kit" in row["id"] and caption):
            continue
        result = linker.link(shared_data / "people" / row["image"], box=row["box"], text=caption)
        assert result.top is not None and result.top.id == row["answer"], row["id"]
        assert "face>face" in result.top.hits


def test_the_face_channel_separates_the_two_people(portrait_store: Path, shared_data: Path) -> None:
    """Without a caption only the face speaks: the other person of the photo scores far lower."""
    linker = open_linker(store=portrait_store, k=5, evidence_tools=["faces"], image_retrieval=False)
    left = linker.link(shared_data / "people" / "images" / "kit_with_rose.jpg", box=[0, 20, 175, 512])
    scores = {entity.id: entity.hits["face>face"]["score"] for entity in left.ranking if "face>face" in entity.hits}
    assert scores["Q461132"] > 0.55 > scores["Q357607"]  # Rose Leslie within dlib's same-person distance, Kit not
