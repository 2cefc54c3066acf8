"""KB loading: the contract, and a clear error for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vplink.core.errors import KBError
from vplink.core.records import Entity
from vplink.retrieval.kb import load_kb


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_real_kb_slice_loads(small_kb: Path) -> None:
    kb = load_kb(small_kb)
    assert len(kb.entities) == 400
    assert all(e.id and e.name for e in kb.entities)


def test_image_paths_resolve_against_kb_folder(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "images").mkdir()
    photo = (shared_data / "people" / "images" / "obama.jpg").read_bytes()
    (tmp_path / "images" / "Q76.jpg").write_bytes(photo)
    kb = write(tmp_path / "kb.jsonl", [json.dumps({"id": "Q76", "name": "Barack Obama", "aliases": "Obama",
                                                   "image": "images/Q76.jpg"})])
    entity = load_kb(kb).entities[0]
    assert entity.aliases == ["Obama"]
    assert entity.image == [str((tmp_path / "images" / "Q76.jpg").resolve())]


@pytest.mark.parametrize("line, field, words", [
    ('{"name": "No Id"}', "id", "required"),
    ('{"id": "Q1"}', "name", "required"),
    ('{"id": "Q1", "name": ""}', "name", "at least 1"),
    ('{"id": "Q1", "name": "X", "aliases": 5}', "aliases", "list"),
    ('["not", "an", "object"]', None, "expected a JSON object"),
    ('{"id": "Q1", "name": "X"', None, "invalid JSON"),
])
def test_bad_line_names_file_line_and_field(tmp_path: Path, line: str, field: str | None, words: str) -> None:
    kb = write(tmp_path / "kb.jsonl", ['{"id": "Q0", "name": "Fine"}', line])
    with pytest.raises(KBError) as info:
        load_kb(kb)
    message = str(info.value)
    assert f"{kb}, line 2" in message
    assert words in message
    if field:
        assert f"field '{field}'" in message
    assert "Fix:" in message


def test_duplicate_id(tmp_path: Path) -> None:
    kb = write(tmp_path / "kb.jsonl", ['{"id": "Q1", "name": "A"}', '{"id": "Q2", "name": "B"}',
                                       '{"id": "Q1", "name": "C"}'])
    with pytest.raises(KBError, match=r"line 3, field 'id': duplicate id 'Q1' \(first on line 1\)"):
        load_kb(kb)


def test_missing_image(tmp_path: Path) -> None:
    kb = write(tmp_path / "kb.jsonl", ['{"id": "Q1", "name": "A", "image": "images/none.jpg"}'])
    with pytest.raises(KBError, match=r"line 1, field 'image': image file not found"):
        load_kb(kb)


def test_empty_kb(tmp_path: Path) -> None:
    kb = write(tmp_path / "kb.jsonl", ["", "  "])
    with pytest.raises(KBError, match="holds no valid entity"):
        load_kb(kb)


def test_not_utf8(tmp_path: Path) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_bytes(b'{"id": "Q1", "name": "A"}\n{"id": "Q2", "name": "Jos\xe9"}\n')
    with pytest.raises(KBError, match=r"line 2: not UTF-8.*iconv"):
        load_kb(kb)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KBError, match="file not found"):
        load_kb(tmp_path / "absent.jsonl")


def test_skip_invalid_keeps_the_rest_and_reports(tmp_path: Path) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_bytes(b'{"id": "Q1", "name": "A"}\n{"id": "Q2"}\n{broken\n{"id": "Q1", "name": "Dup"}\n'
                   b'{"id": "Q3", "name": "Jos\xe9"}\n{"id": "Q4", "name": "D"}\n')
    loaded = load_kb(kb, skip_invalid=True)
    assert [e.id for e in loaded.entities] == ["Q1", "Q4"]
    assert [s.line for s in loaded.skipped] == [2, 3, 4, 5]


def test_content_hash_tracks_fields() -> None:
    a = Entity(id="Q1", name="A", description="x")
    assert a.content_hash() == Entity(id="Q1", name="A", description="x").content_hash()
    assert a.content_hash() != Entity(id="Q1", name="A", description="y").content_hash()
    assert Entity(id=42, name="N").id == "42"


@pytest.mark.parametrize("image", ["../" * 40 + "etc/passwd", "/etc/passwd", "images/../../outside.jpg"])
def test_image_paths_outside_the_kb_folder_are_refused(tmp_path: Path, shared_data: Path, image: str) -> None:
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    (tmp_path / "outside.jpg").write_bytes((shared_data / "people" / "images" / "obama.jpg").read_bytes())
    kb = write(kb_dir / "kb.jsonl", ['{"id": "Q1", "name": "Fine"}',
                                     json.dumps({"id": "Q2", "name": "Sneaky", "image": image})])
    with pytest.raises(KBError, match=r"kb\.jsonl, line 2, field 'image': image path .* points outside the image "
                                      r"folder .*--image-root"):
        load_kb(kb)
    skipped = load_kb(kb, skip_invalid=True)
    assert [e.id for e in skipped.entities] == ["Q1"] and skipped.skipped[0].line == 2


def test_image_root_allows_a_named_folder_and_nothing_else(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.jpg").write_bytes((shared_data / "people" / "images" / "obama.jpg").read_bytes())
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "inside.jpg").write_bytes(b"x")
    kb = write(tmp_path / "kb" / "kb.jsonl", ['{"id": "Q1", "name": "A", "image": "../pictures/a.jpg"}'])
    assert load_kb(kb, image_root=tmp_path / "pictures").entities[0].image == [str((tmp_path / "pictures" / "a.jpg").resolve())]
    inside = write(tmp_path / "kb" / "kb2.jsonl", ['{"id": "Q1", "name": "A", "image": "inside.jpg"}'])
    with pytest.raises(KBError, match="outside the image folder"):
        load_kb(inside, image_root=tmp_path / "pictures")
