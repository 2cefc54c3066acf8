"""Aligning the box to the caption's people: hand-built face layouts, real caption parsing."""

from __future__ import annotations

import pytest

from vplink.agent.alignment import align_box
from vplink.agent.caption_people import CaptionPeople, PersonSpan


def _people(*texts: str, order=None, rows=None) -> CaptionPeople:
    spans = [PersonSpan(text=t, start=0, end=len(t), match="name", person_score=1.0,
                        row=(rows[i] if rows else None)) for i, t in enumerate(texts)]
    return CaptionPeople(spans=spans, order=order)


def _faces(n: int, marked: int | None, *, rows: list[int | None] | None = None, box_rank: int | None = None) -> dict:
    faces = [{"box": [100 * i, 0, 100 * i + 50, 50], "row": rows[i] if rows else None} for i in range(n)]
    return {"faces": faces, "marked": marked, "rows": 2 if rows else 1, "box_rank": box_rank}


def _box(i: float) -> tuple[float, float, float, float]:
    """A box around the i-th face place of :func:`_faces` (fractional: between two places)."""
    return (100 * i - 10, 0, 100 * i + 60, 120)


def _best(alignment) -> str:
    return alignment.best[0]


def test_equal_counts_put_the_marked_face_on_its_caption_place() -> None:
    people = _people("A", "B", "C", "D", order="left-to-right")
    for marked, name in enumerate("ABCD"):
        alignment = align_box(people, _faces(4, marked), _box(marked))
        assert _best(alignment) == name
        assert alignment.probabilities[marked] > 0.6
        assert abs(sum(alignment.probabilities) - 1) < 1e-3


def test_a_stated_order_is_trusted_more_than_an_assumed_one() -> None:
    stated = align_box(_people("A", "B", "C", order="left-to-right"), _faces(3, 1), _box(1))
    assumed = align_box(_people("A", "B", "C"), _faces(3, 1), _box(1))
    assert stated.probabilities[1] > assumed.probabilities[1] > 1 / 3


def test_right_to_left_reverses_the_order() -> None:
    alignment = align_box(_people("A", "B", "C", order="right-to-left"), _faces(3, 0), _box(0))
    assert _best(alignment) == "C"


def test_a_missed_face_lowers_confidence_instead_of_switching_the_signal_off() -> None:
    people = _people("A", "B", "C", "D", order="left-to-right")
    exact = align_box(people, _faces(4, 3), _box(3))
    missed = align_box(people, _faces(3, 2), _box(2))  # the detector missed one of the four
    assert _best(missed) == "D"
    assert 0.25 < missed.probabilities[3] < exact.probabilities[3]
    assert "differ by 1" in missed.reason


def test_an_extra_face_still_points_near_the_right_place() -> None:
    people = _people("A", "B", "C", order="left-to-right")
    extra = align_box(people, _faces(4, 0), _box(0))  # a fourth face nobody named
    assert _best(extra) == "A"
    assert extra.probabilities[0] < align_box(people, _faces(3, 0), _box(0)).probabilities[0]


def test_a_box_whose_face_was_not_found_is_placed_among_the_faces() -> None:
    people = _people("A", "B", "C", order="left-to-right")
    alignment = align_box(people, _faces(2, None), _box(2))  # right of both faces
    assert alignment.method == "box-position" and _best(alignment) == "C"
    no_faces = align_box(people, {"faces": []}, (0, 0, 40, 100), image_width=800)
    assert _best(no_faces) == "A" and "no face was found" in no_faces.reason


def test_rows_split_the_caption_and_the_faces() -> None:
    people = _people("Back1", "Back2", "Front1", "Front2", order="left-to-right",
                     rows=["back", "back", "front", "front"])
    # Left to right the faces are: front, back, back, front (the layout of WikiMEL picture 3441).
    faces = _faces(4, 3, rows=[1, 0, 0, 1])
    assert _best(align_box(people, faces, _box(3))) == "Front2"
    faces = _faces(4, 1, rows=[1, 0, 0, 1])
    assert _best(align_box(people, faces, _box(1))) == "Back1"


@pytest.mark.parametrize("whole", [True, False])
def test_one_person_or_the_whole_picture_is_said_plainly(whole: bool) -> None:
    one = align_box(_people("A"), _faces(3, 1), None if whole else _box(1))
    assert one.probabilities == [1.0] and "one person" in one.reason
    if whole:
        many = align_box(_people("A", "B"), _faces(2, None), None)
        assert many.method == "whole-image" and many.probabilities == [0.5, 0.5]
        assert "whole picture" in many.reason


def test_no_people_gives_an_empty_distribution() -> None:
    alignment = align_box(CaptionPeople(), _faces(2, 0), _box(0))
    assert alignment.spans == [] and alignment.best is None


def test_text_read_in_the_box_names_the_person() -> None:
    """A jersey number the caption gives ("Hope Solo (1)") or a surname read in the box outweighs position."""
    people = _people("Yuki Ogimi", "Homare Sawa", "Hope Solo")
    people.spans[2].number = "1"
    plain = align_box(people, _faces(2, None), _box(0.1))
    assert _best(plain) != "Hope Solo"
    assert _best(align_box(people, _faces(2, None), _box(0.1), ocr_text="SOLO")) == "Hope Solo"
    assert _best(align_box(people, _faces(2, None), _box(0.1), ocr_text="1")) == "Hope Solo"


def test_a_lone_face_is_the_captions_first_person() -> None:
    people = _people("Scodelario", "Robbie Williams")  # "Scodelario in 2012 filming "Candy" by Robbie Williams"
    assert _best(align_box(people, _faces(1, 0), _box(0))) == "Scodelario"


def test_spans_before_the_order_cue_are_not_in_the_line_up() -> None:
    people = _people("China", "Temer", "Modi", "Xi", order="left-to-right")
    for span in people.spans[1:]:
        span.after_order_cue = True
    assert _best(align_box(people, _faces(3, 0), _box(0))) == "Temer"
