"""Properties of KB loading on drawn KB files (hypothesis), each example under the suite's time bound.

Lines are drawn as entity-like objects with values of every JSON type (names with any Unicode, U+2028 included,
image paths that climb out of the folder), broken JSON, text and Latin-1 bytes. Whatever a line holds, it ends
as an entity or as a skipped line naming itself, and nothing else is raised.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from vplink.retrieval.records import load_kb

from vplink.core.errors import KBError

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
text_value = st.one_of(st.text(max_size=40), st.sampled_from(["Barack Obama", "Ada\u2028Lovelace", "", " "]))
entity = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=8), st.integers(), st.none())},
    optional={"name": st.one_of(text_value, json_values), "aliases": st.one_of(st.lists(text_value, max_size=3),
                                                                               json_values),
              "description": st.one_of(text_value, json_values), "type": st.one_of(text_value, json_values),
              "image": st.one_of(st.sampled_from(["pic.jpg", "../../etc/passwd", "/etc/hosts", "missing.png"]),
                                 st.lists(st.sampled_from(["pic.jpg", "nowhere.jpg"]), max_size=2), json_values),
              "extra": json_values})
# A line as bytes: JSON written as json.dumps writes it (non-ASCII kept raw), text, broken JSON, Latin-1.
line = st.one_of(entity.map(lambda obj: json.dumps(obj, ensure_ascii=False).encode()),
                 st.text(max_size=30).filter(lambda t: not {"\n", "\r", "\ufeff"} & set(t)).map(str.encode),
                 st.sampled_from([b'{"id": "Q1", "name": "broken"', b"[1, 2]", b"caf\xe9 au lait", b"null"]))


def _nonblank(raw: bytes) -> bool:
    try:
        return bool(raw.decode("utf-8").strip())
    except UnicodeDecodeError:
        return bool(raw.strip())


@given(lines=st.lists(line, min_size=1, max_size=30))
def test_every_line_is_an_entity_or_a_skipped_line_naming_itself(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        kb = Path(folder) / "kb.jsonl"
        (Path(folder) / "pic.jpg").write_bytes(b"")  # exists: whether it is a picture is the indexer's to say
        kb.write_bytes(b"\n".join(lines) + b"\n")
        try:
            loaded = load_kb(kb, skip_invalid=True)
        except KBError as error:
            assert "holds no valid entity" in str(error)
            return
        assert len(loaded.entities) + len(loaded.skipped) == sum(map(_nonblank, lines))
        for skipped in loaded.skipped:
            assert f"line {skipped.line}" in skipped.reason and "Fix:" in skipped.reason
        for found in loaded.entities:
            assert found.id.strip() and found.name.strip()
            assert all(Path(image).resolve().is_relative_to(Path(folder).resolve()) for image in found.image)
        if loaded.skipped:  # without skip_invalid the first bad line stops the load, naming it
            try:
                load_kb(kb)
            except KBError as error:
                assert error.line == loaded.skipped[0].line
            else:
                raise AssertionError("a KB with bad lines loaded without skip_invalid")


def test_a_line_separator_inside_a_json_string_does_not_split_the_line(tmp_path: Path) -> None:
    # JSON strings may hold U+2028 raw (json.dumps(..., ensure_ascii=False) writes it so); it is no line end.
    kb = tmp_path / "kb.jsonl"
    kb.write_text(json.dumps({"id": "Q7259", "name": "Ada Lovelace", "description": "poet\u2028mathematician"},
                             ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_kb(kb).entities[0].description == "poet\u2028mathematician"
