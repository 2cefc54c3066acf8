"""Everyone on a picture at once: real group photos, no box given, real stores, no model server."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vplink.agent.joint import Option, assign
from vplink.wiring import open_linker

OBAMA, BIDEN, KIT, ROSE = "Q76", "Q6279", "Q357607", "Q461132"
# Each group photo, its caption (in the people's left-to-right order) and its people left to right.
PHOTOS = {"two_people.jpg": ("Barack Obama and Joe Biden at the White House", [OBAMA, BIDEN]),
          "kit_with_rose.jpg": ("Rose Leslie and Kit Harington at a premiere", [ROSE, KIT])}


def _named(picture) -> list[str | None]:
    """The answers left to right (boxes of faces found come left to right)."""
    return [person.answer for person in sorted(picture.people(), key=lambda p: p.box[0])]


@pytest.mark.parametrize("photo", PHOTOS)
def test_everyone_is_named_by_face_with_a_portraits_kb(portrait_store: Path, shared_data: Path, photo: str) -> None:
    linker = open_linker(store=portrait_store, k=5, evidence_tools=["faces"], image_retrieval=False)
    picture = linker.link_all(shared_data / "people" / "images" / photo)
    assert picture.boxes_from == "faces"
    assert _named(picture) == PHOTOS[photo][1]
    assert all(r.joint is not None and r.joint.boxes == 2 for r in picture.results)
    html = picture._repr_html_()
    assert "1. " in str(picture) and "unknown" not in str(picture) and "<img" in html
    # the shipped calibration saw no face query: no invented confidence, and each box says why
    assert all(r.confidence is None and any("no calibrated confidence" in n for n in r.notes) for r in picture.results)


@pytest.mark.parametrize("photo", PHOTOS)
def test_everyone_is_named_by_the_caption_alone(people_store: str, shared_data: Path, photo: str) -> None:
    """No portraits: the caption's people, aligned to the faces found, assigned one to one."""
    linker = open_linker(store=people_store, k=10, evidence_tools=["faces"], image_retrieval=False)
    caption, people = PHOTOS[photo]
    picture = linker.link_all(shared_data / "people" / "images" / photo, caption)
    assert _named(picture) == people
    # caption-only boxes are a kind of query the shipped calibration saw: each answer says how sure it is
    assert all(p.confidence is not None and 0 < p.confidence < 1 for p in picture.people())


def test_a_face_the_kb_lacks_is_unknown(store_without_rose: Path, shared_data: Path) -> None:
    linker = open_linker(store=store_without_rose, k=5, evidence_tools=["faces"], image_retrieval=False)
    picture = linker.link_all(shared_data / "people" / "images" / "kit_with_rose.jpg")
    assert _named(picture) == [None, KIT]
    rose = min(picture.results, key=lambda r: r.query.box[0])
    assert rose.nil and rose.top is None and rose.joint.answer is None
    assert "unknown" in str(picture)


def test_given_boxes_are_linked_jointly_and_keep_their_own_rankings(portrait_store: Path, shared_data: Path) -> None:
    linker = open_linker(store=portrait_store, k=5, evidence_tools=["faces"], image_retrieval=False)
    boxes = [[256, 0, 512, 301], "0,0,250,301"]
    picture = linker.link_all(shared_data / "people" / "images" / "two_people.jpg", boxes=boxes, id="tp")
    assert picture.boxes_from == "boxes"
    assert [p.answer for p in picture.people()] == [BIDEN, OBAMA]
    assert [r.query.id for r in picture.results] == ["tp#1", "tp#2"]
    assert all(len(p.ranking) > 1 and p.ranking[0]["id"] == p.answer for p in picture.people())


def _options(*rows: tuple[int, str | None, str, float]) -> list[Option]:
    return [Option(box=box, person=person, entity=entity, log_prob=math.log(p)) for box, person, entity, p in rows]


def test_the_assignment_is_one_to_one_and_joint() -> None:
    """Both boxes prefer the caption's first person; the box less sure of it yields, where greedy would collide."""
    options = _options((0, "A", "a", 0.6), (0, "B", "b", 0.4), (1, "A", "a", 0.9), (1, "B", "b", 0.1))
    assert [o.entity for o in assign(options, 2, math.log(0.01))] == ["b", "a"]


def test_a_caption_person_marks_at_most_one_box() -> None:
    """Box 1's likeliest option is another entity the name "Noah Beery" retrieves; the name is box 0's, so box 1
    is the caption's other person (entities alone being one to one would let both boxes be Noah Beery)."""
    options = _options((0, "Noah Beery", "sr", 0.5), (0, "Noah Beery", "jr", 0.3),
                       (1, "Noah Beery", "jr", 0.25), (1, "Scott", "randolph", 0.1))
    assert [(o.person, o.entity) for o in assign(options, 2, math.log(0.02))] == [("Noah Beery", "sr"),
                                                                                ("Scott", "randolph")]


def test_a_box_below_the_unknown_floor_is_unknown() -> None:
    """Three boxes, two entities: one box must stay unknown, the one that loses least by it."""
    options = _options((0, None, "a", 0.9), (0, None, "b", 0.05), (1, None, "a", 0.8), (1, None, "b", 0.2),
                       (2, None, "a", 0.02), (2, None, "b", 0.03))
    assert [o and o.entity for o in assign(options, 3, math.log(0.04))] == ["a", "b", None]
    assert assign(_options((0, None, "a", 0.03)), 1, math.log(0.04)) == [None]
