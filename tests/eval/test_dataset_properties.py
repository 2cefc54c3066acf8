"""Properties of dataset loading on drawn vplink JSON Lines (hypothesis), each example under the suite's time bound.

Lines are drawn as example-like objects (ids, pictures, boxes, texts and answers of every JSON type, the
'answer' key present, null, misspelt or missing), broken JSON and text. Whatever a line holds, it ends as an
example or as a skipped line naming itself; only an explicit null (or a NIL word) makes a NIL gold.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from vplink.agent.visual_prompt import validate_box
from vplink.eval.datasets import _NIL_ANSWERS, DatasetError, read_dataset
from vplink.retrieval.images import displayed_size

from tests.eval.conftest import DATA

PHOTO = DATA / "people" / "images" / "two_people.jpg"
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=False),
                    st.text(max_size=20))
boxes = st.one_of(st.none(), st.lists(st.one_of(st.integers(-20, 600), st.floats(-20, 600)), min_size=4, max_size=4),
                  st.lists(scalars, max_size=5), scalars)
answers = st.one_of(st.none(), st.sampled_from(["Q76", "NIL", "", "-1"]), scalars, st.lists(scalars, max_size=2))


@st.composite
def example_lines(draw) -> list[bytes]:
    """Lines of a dataset file; example ids are unique (a duplicate id is refused as a whole-file error)."""
    lines = []
    for index in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from(["example", "example", "example", "text", "broken"]))
        if kind == "text":
            lines.append(draw(st.text(max_size=20).filter(lambda t: not {"\n", "\r", "\ufeff"} & set(t))).encode())
            continue
        if kind == "broken":
            lines.append(b'{"id": "x", "answer": ')
            continue
        row = {"id": draw(st.one_of(st.just(f"e{index}"), st.just(f"e{index}"), scalars)),
               "image": draw(st.sampled_from([str(PHOTO), None, "missing.jpg", 7])),
               "box": draw(boxes), "text": draw(st.one_of(st.text(max_size=30), scalars)),
               "mention": draw(st.one_of(st.none(), st.text(max_size=10)))}
        key = draw(st.sampled_from(["answer", "answer", "answer", "anwser", None]))
        if key is not None:
            row[key] = draw(answers)
        lines.append(json.dumps(row, ensure_ascii=False).encode())
    return lines


@given(lines=example_lines())
def test_every_line_is_an_example_or_a_skipped_line_naming_itself(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        try:
            loaded = read_dataset(path, skip_invalid=True, allow_missing_images=True)
        except DatasetError as error:
            assert "holds no valid example" in str(error) or "duplicate example id" in str(error)
            return
    rows = {}
    for raw in lines:
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("id"), (str, int)) and not isinstance(obj["id"], bool):
            rows[str(obj["id"])] = obj
    assert len(loaded.examples) + len(loaded.skipped) == sum(1 for raw in lines if raw.decode().strip())
    for skipped in loaded.skipped:
        assert f"line {skipped.line}" in skipped.reason and "Fix:" in skipped.reason
    size = displayed_size(PHOTO)
    for example in loaded.examples:
        row = rows[example.id]
        assert "answer" in row  # a missing or misspelt key never becomes a NIL gold
        if example.answer is None:
            assert row["answer"] is None or str(row["answer"]).strip() in _NIL_ANSWERS
        else:
            assert isinstance(row["answer"], (str, int)) and not isinstance(row["answer"], bool)
        if example.box is not None and row["image"] == str(PHOTO):
            validate_box(example.box, size)  # the box `link` would refuse is never kept
