"""Visual evidence tools on real photos: face order, labels, OCR, failure handling, the prompt paragraph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vplink.agent.evidence import ALL_TOOLS, EvidenceToolError, EvidenceTools, VisualEvidence, collect_evidence
from vplink.agent.evidence.faces import Face, locate_faces, ordinal
from vplink.agent.evidence.geometry import describe_geometry
from vplink.agent.visual_prompt import BoxError, VisualPrompt
from vplink.retrieval.images import load_image

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")


def _grace_hopper() -> Image.Image:
    from matplotlib import cbook

    return load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _people_rows() -> list[dict]:
    return [json.loads(line) for line in (DATA / "people" / "photos.jsonl").read_text().splitlines() if line.strip()]


# --- geometry -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("box, horizontal, vertical, share", [
    ((0, 0, 100, 100), "left", "top", 0.0417),
    ((250, 150, 350, 250), "centre", "middle", 0.0417),
    ((500, 300, 600, 400), "right", "bottom", 0.0417),
    ((0, 0, 600, 400), "centre", "middle", 1.0),
])
def test_geometry_places_the_box(box, horizontal, vertical, share):
    found = describe_geometry((600, 400), box)
    assert (found.horizontal, found.vertical) == (horizontal, vertical)
    assert found.area_share == pytest.approx(share, abs=1e-3)
    assert found.confidence == 1.0 and not found.whole_image


def test_geometry_without_a_box_is_the_whole_picture():
    found = describe_geometry((600, 400), None)
    assert found.whole_image and found.area_share == 1.0
    assert "whole picture" in found.describe()


# --- faces: pure logic ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, text", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"),
                                     (13, "13th"), (21, "21st"), (22, "22nd"), (101, "101st"), (111, "111th")])
def test_ordinal(n, text):
    assert ordinal(n) == text


def _face(x0: int, size: int = 40, score: float = 6.0) -> Face:
    return Face(box=(x0, 50, x0 + size, 50 + size), score=score, confidence=0.97)


def test_locate_faces_counts_from_the_left():
    faces = [_face(10), _face(110), _face(210), _face(310), _face(410)]
    found = locate_faces(faces, (190, 0, 270, 300), "test")
    assert found.in_box == [2] and found.marked == 2 and found.position == "3rd of 5 from the left"
    assert found.faces[2].in_box and found.faces[2].overlap == 1.0 and not found.faces[1].in_box
    assert found.confidence == pytest.approx(0.97)


def test_locate_faces_with_no_face_in_the_box_claims_nothing():
    found = locate_faces([_face(10), _face(300)], (120, 0, 200, 300), "test")
    assert found.marked is None and found.position is None and found.confidence == 0.0
    text = found.describe()
    assert "none of them lies inside" in text and "marked person" not in text


def test_locate_faces_half_in_is_in_and_two_faces_share_the_confidence():
    # The box holds all of a big face and 60 % of a small one: the big one is marked, with less certainty.
    faces = [_face(0, size=80), _face(100, size=40)]
    found = locate_faces(faces, (0, 0, 124, 300), "test")
    assert found.in_box == [0, 1] and found.marked == 0
    assert found.faces[1].overlap == pytest.approx(0.6)
    assert found.confidence == pytest.approx(0.97 * 6400 / (6400 + 1600), abs=1e-3)


def test_whole_picture_with_one_face_marks_it_and_with_two_marks_none():
    assert locate_faces([_face(10)], None, "t").marked == 0
    two = locate_faces([_face(10), _face(200)], None, "t")
    assert two.marked is None and "none of them is singled out" in two.describe()


# --- faces on real photos -------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("row_id, position", [
    ("two_people-obama-left", "1st of 2 from the left"),
    ("two_people-biden-right", "2nd of 2 from the left"),
    ("kit_with_rose-rose-left", "1st of 2 from the left"),
    ("kit_with_rose-kit-right", "2nd of 2 from the left"),
])
def test_marked_person_order_on_real_group_photos(evidence_tools, row_id, position):
    row = next(r for r in _people_rows() if r["id"] == row_id)
    image = load_image(DATA / "people" / row["image"])
    found = collect_evidence(VisualPrompt.of(image, row["box"]), tools=("geometry", "faces"), toolbox=evidence_tools)
    assert found.faces.count == 2 and found.faces.position == position
    marked = found.faces.faces[found.faces.marked]
    x0, y0, x1, y1 = row["box"]
    centre = ((marked.box[0] + marked.box[2]) / 2, (marked.box[1] + marked.box[3]) / 2)
    assert x0 <= centre[0] <= x1 and y0 <= centre[1] <= y1
    assert found.faces.confidence > 0.4
    assert found.geometry.horizontal == ("left" if position.startswith("1st") else "right")
    assert position in found.to_prompt_text()


@needs_data
def test_single_portraits_have_one_face(evidence_tools):
    for row in _people_rows():
        if row["box"] is None:
            found = collect_evidence(VisualPrompt.load(DATA / "people" / row["image"], None), tools=("faces",),
                                     toolbox=evidence_tools)
            assert found.faces.count == 1 and found.faces.marked == 0, row["id"]


@needs_data
@pytest.mark.parametrize("box, place", [
    ([0, 120, 100, 341], "first"),  # Temer, far left
    ([215, 120, 305, 341], "middle"),  # the middle leader, hand-drawn around his body
    ([420, 130, 512, 341], "last"),  # Zuma, far right
])
def test_five_leaders_photo_places_the_marked_face(evidence_tools, box, place):
    # WikiMEL 1342: five BRICS leaders in a row; dlib's HOG finds four or five of them (small faces).
    image = load_image(DATA / "wikimel" / "images" / "1342.jpg")
    found = collect_evidence(VisualPrompt.of(image, box), tools=("faces",), toolbox=evidence_tools).faces
    assert 4 <= found.count <= 5
    lefts = [face.box[0] for face in found.faces]
    assert lefts == sorted(lefts)
    if place == "last":  # HOG misses Zuma's small face: the box still stands right of every face found
        assert found.marked in (None, found.count - 1) and found.box_rank == found.count - (found.marked is not None)
        return
    assert found.marked == 0 if place == "first" else 0 < found.marked < found.count - 1
    assert len(found.descriptor or []) == 128  # the marked face is described for the face view


# --- labels and OCR -------------------------------------------------------------------------------------------


def test_labels_and_faces_on_grace_hopper(evidence_tools):
    found = collect_evidence(VisualPrompt.of(_grace_hopper(), None), tools=("faces", "labels"), toolbox=evidence_tools)
    assert found.faces.count == 1
    assert found.labels.labels[0].label == "military uniform"
    assert all(label.probability >= 0.02 for label in found.labels.labels)
    text = found.to_prompt_text()
    assert "military uniform" in text and "found 1 face" in text and "no 'person' class" in text


@needs_data
def test_ocr_reads_a_real_film_poster(evidence_tools):
    # WikiMEL 13416: the "Rin-Tin-Tin in The Lone Defender" serial poster; box around the title.
    image = load_image(DATA / "wikimel" / "images" / "13416.jpg")
    found = collect_evidence(VisualPrompt.of(image, [10, 325, 325, 455]), tools=("ocr",), toolbox=evidence_tools)
    words = " ".join(line.text for line in found.ocr.lines).upper().replace(" ", "")
    assert "RIN-TIN-TIN" in words and "DEFENDER" in words
    assert 0.5 <= found.ocr.confidence <= 1.0
    assert "RIN-TIN-TIN" in found.to_prompt_text()


def test_ocr_reads_text_rendered_onto_a_real_photo(evidence_tools):
    import matplotlib

    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"), 36)
    photo = _grace_hopper()
    ImageDraw.Draw(photo).rectangle((40, 440, 470, 500), fill=(255, 255, 255))
    ImageDraw.Draw(photo).text((50, 445), "NAVY COBOL 1959", font=font, fill=(0, 0, 0))
    found = collect_evidence(VisualPrompt.of(photo, [30, 430, 480, 510]), tools=("ocr",), toolbox=evidence_tools)
    read = " ".join(line.text for line in found.ocr.lines).upper().replace(" ", "")
    assert "COBOL" in read and "1959" in read and found.ocr.read
    # Her face: the picture's text detector (run once, for both boxes) found no text there, so it is not read.
    blank = collect_evidence(VisualPrompt.of(photo, [150, 60, 350, 300]), tools=("ocr",), toolbox=evidence_tools)
    assert blank.ocr.lines == [] and not blank.ocr.read and "found no text" in blank.to_prompt_text()
    assert any(r[1] >= 420 for r in evidence_tools.text_reader.text_regions(photo))  # it saw the banner


# --- collect: failures, bad input, the prompt ---------------------------------------------------------------


class _BrokenClassifier:
    name = "broken"

    def classify(self, images, top_k=5):
        raise RuntimeError("weights went missing")


def test_a_failing_tool_is_recorded_and_the_others_still_run(evidence_tools):
    tools = EvidenceTools(face_detector=evidence_tools.face_detector, classifier=_BrokenClassifier())
    # A box without the face: on a face box the labels would be skipped, not run.
    found = collect_evidence(VisualPrompt.of(_grace_hopper(), [0, 500, 60, 560]),
                             tools=("geometry", "faces", "labels"), toolbox=tools)
    labels = found.run("labels")
    assert labels is not None and not labels.ok and "weights went missing" in labels.error
    assert found.labels is None
    assert found.run("faces").ok and found.faces.count == 1 and found.geometry is not None
    text = found.to_prompt_text()
    assert "failed" in text and "labels" in text and "classifier" not in text
    assert all(run.seconds >= 0 for run in found.runs) and [run.tool for run in found.runs] == ["geometry", "faces",
                                                                                               "labels"]


def test_bad_box_and_unknown_tool_raise():
    picture = Image.new("RGB", (100, 100))
    with pytest.raises(BoxError, match="outside"):
        collect_evidence(VisualPrompt.of(picture, [0, 0, 300, 300]), tools=("geometry",))
    with pytest.raises(EvidenceToolError, match="choose from"):
        collect_evidence(VisualPrompt.of(picture, None), tools=("geometry", "clip"))


def test_an_empty_picture_yields_modest_evidence(evidence_tools):
    picture = Image.fromarray(np.full((240, 320, 3), 200, dtype=np.uint8))
    found = collect_evidence(VisualPrompt.of(picture, [10, 10, 100, 100]), tools=("geometry", "faces"),
                             toolbox=evidence_tools)
    text = found.to_prompt_text()
    assert found.faces.count == 0 and "no face" in text and "marked person" not in text
    assert isinstance(VisualEvidence.model_validate_json(found.model_dump_json()), VisualEvidence)


def test_every_tool_runs_once_in_order_and_fills_its_finding(evidence_tools):
    # Asked in reverse, the tools still run cheapest first, each once, and each leaves its record.
    found = collect_evidence(VisualPrompt.of(_grace_hopper(), None), tools=tuple(reversed(ALL_TOOLS)),
                             toolbox=evidence_tools)
    assert [run.tool for run in found.runs] == ["geometry", "faces", "labels", "ocr"]
    assert all(run.ok for run in found.runs), [run.error for run in found.runs]
    assert found.geometry.whole_image and found.labels.labels[0].label == "military uniform"
    assert found.ocr is not None and found.faces is not None
    # Only the tools asked for run: geometry alone leaves the model-backed findings empty.
    alone = collect_evidence(VisualPrompt.of(_grace_hopper(), None), tools=("geometry",), toolbox=evidence_tools)
    assert [run.tool for run in alone.runs] == ["geometry"] and (alone.labels, alone.ocr) == (None, None)


def test_one_face_in_the_box_is_phrased_without_an_order():
    found = locate_faces([_face(100)], (80, 0, 200, 300), "t")
    assert found.position == "1st of 1 from the left"
    assert found.describe() == ("A face detector found 1 face in the picture; it lies inside the marked "
                                "region (confidence 0.97).")
    assert found.model_dump()["count"] == 1  # the count is part of the record the agent stores


def test_faces_are_detected_once_per_picture_and_labels_run_only_where_they_can_matter(evidence_tools):
    """A second box on the same picture (loaded again) reuses the first box's detection; labels are skipped
    without a model and on a box that marks a face, and run with a model on a box without one."""
    from vplink.agent.evidence.faces import FaceDetector

    detector = FaceDetector(evidence_tools.face_detector.models)  # the loaded models, an empty picture cache
    detected = []
    original = detector.models.detect
    detector.models.detect = lambda image: detected.append(1) or original(image)  # count the real detector's runs
    try:
        tools = EvidenceTools(face_detector=detector, classifier=evidence_tools.classifier)
        face_box, other_box = [100, 50, 400, 500], [0, 500, 60, 560]
        first = collect_evidence(VisualPrompt.of(_grace_hopper(), face_box), tools=("faces", "labels"),
                                 toolbox=tools, for_model=False)
        again = collect_evidence(VisualPrompt.of(_grace_hopper(), face_box), tools=("faces", "labels"),
                                 toolbox=tools)
        other = collect_evidence(VisualPrompt.of(_grace_hopper(), other_box), tools=("faces", "labels"), toolbox=tools)
    finally:
        detector.models.detect = original
    assert len(detected) == 1  # three boxes of one picture, one detection
    assert first.faces == again.faces and first.faces.marked is not None
    assert first.labels is None and "no model" in first.run("labels").skipped
    assert again.labels is None and "marks a face" in again.run("labels").skipped
    assert other.faces.marked is None and other.run("labels").skipped is None and other.labels is not None
