"""Properties of box parsing and checking on drawn boxes (hypothesis), each example under the suite's time bound.

One check serves `link`, `/link` and the datasets `eval` reads: a drawn box is accepted by a dataset exactly when
:func:`validate_box` accepts it against the picture.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from vplink.agent.visual_prompt import BoxError, parse_box, validate_box
from vplink.eval.datasets import DatasetError, load_dataset
from vplink.retrieval.images import displayed_size

from tests.eval.conftest import DATA

PHOTO = DATA / "people" / "images" / "two_people.jpg"
numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(-1000, 1000))
values = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=6), st.lists(st.integers(), max_size=2))
# Text as a client types it into --box or the form: digits, separators, brackets, words, anything.
box_text = st.one_of(st.text(max_size=40), st.text(alphabet="0123456789.,-+eE []()naif \t", max_size=60),
                     st.text(alphabet="0123456789,", max_size=20000))


def _is_box(parsed: object) -> bool:
    return isinstance(parsed, tuple) and len(parsed) == 4 and all(math.isfinite(v) for v in parsed)


@given(value=st.one_of(box_text, st.lists(values, max_size=6), st.tuples(values, values, values, values)))
def test_anything_parses_to_a_box_none_or_a_box_error(value: object) -> None:
    try:
        parsed = parse_box(value)
    except BoxError as error:
        assert "Fix:" in str(error)
        return
    assert parsed is None or _is_box(parsed)


@given(box=st.lists(numbers, min_size=4, max_size=4), width=st.integers(1, 5000), height=st.integers(1, 5000))
def test_an_accepted_box_lies_in_the_picture_and_covers_a_pixel(box: list, width: int, height: int) -> None:
    try:
        checked = validate_box(box, (width, height))
    except BoxError:
        return
    x0, y0, x1, y1 = checked
    assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height
    assert x1 - x0 >= 1 and y1 - y0 >= 1
    if 0 <= box[0] and box[2] <= width and 0 <= box[1] and box[3] <= height:
        assert list(checked) == [float(v) for v in box]  # a box inside the picture is kept as it is


@given(box=st.lists(st.one_of(st.integers(-50, 700), st.floats(-50, 700)), min_size=4, max_size=4))
def test_a_dataset_accepts_a_box_exactly_when_link_does(box: list) -> None:
    try:
        validate_box(box, displayed_size(PHOTO))
        link_accepts = True
    except BoxError:
        link_accepts = False
    row = {"id": "q", "image": str(PHOTO), "box": box, "text": None, "mention": None, "answer": "Q76"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.jsonl"
        path.write_text(json.dumps(row) + "\n", encoding="utf-8")
        try:
            load_dataset(path)
            dataset_accepts = True
        except DatasetError as error:
            assert "field 'box'" in str(error) and "line 1" in str(error)
            dataset_accepts = False
    assert dataset_accepts == link_accepts
