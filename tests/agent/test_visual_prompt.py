"""Boxes: parsing, validation (with the overhang rule), drawing the red mark, zoomed crops, the visual prompt."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vplink.agent.visual_prompt import BoxError, VisualPrompt, line_width, parse_box, validate_box
from vplink.core.errors import VplinkError
from vplink.retrieval.images import load_image

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")


@pytest.mark.parametrize("value, expected", [
    ("10,20,110,220", (10.0, 20.0, 110.0, 220.0)),
    (" [10, 20, 110.5, 220] ", (10.0, 20.0, 110.5, 220.0)),
    ("10 20 110 220", (10.0, 20.0, 110.0, 220.0)),
    ([10, 20, 110, 220], (10.0, 20.0, 110.0, 220.0)),
    ((1.5, "2", 3, 4.0), (1.5, 2.0, 3.0, 4.0)),
    (np.array([10, 20, 110, 220]), (10.0, 20.0, 110.0, 220.0)),
    (None, None), ("", None), ("none", None), ("NULL", None),
])
def test_parse_box_accepts_text_and_lists(value, expected):
    assert parse_box(value) == expected


@pytest.mark.parametrize("value, message", [
    ("10,20,110", "3 values instead of 4"),
    ([1, 2, 3, 4, 5], "5 values instead of 4"),
    ("a,b,c,d", "'a' is not a number"),
    ([1, 2, None, 4], "None is not a number"),
    ([1, 2, True, 4], "True is not a coordinate"),
    ("1,2,nan,4", "not a finite number"),
    ([1, 2, float("inf"), 4], "not a finite number"),
    (42, "a int is not a box"),
])
def test_parse_box_refuses_garbage_naming_the_value(value, message):
    with pytest.raises(BoxError, match=message) as info:
        parse_box(value)
    assert isinstance(info.value, VplinkError) and "Fix:" in str(info.value) and repr(value) in str(info.value)


def test_validate_box_keeps_a_good_box_and_none():
    assert validate_box([10, 20, 110, 220], (512, 301)) == (10.0, 20.0, 110.0, 220.0)
    assert validate_box(None, (512, 301)) is None
    assert validate_box("0,0,512,301", (512, 301)) == (0.0, 0.0, 512.0, 301.0)


def test_small_overhang_is_clipped_large_one_refused():
    # 1 % of 512 is 5.12 px: an overhang of 5 px is rounding, 7 px is another picture.
    assert validate_box([-2, -1.5, 517, 303], (512, 301)) == (0.0, 0.0, 512.0, 301.0)
    with pytest.raises(BoxError, match="outside the 512x301 picture") as info:
        validate_box([0, 0, 520, 301], (512, 301))
    assert "x1 <= 512" in str(info.value)
    with pytest.raises(BoxError, match="outside"):
        validate_box([600, 10, 700, 50], (512, 301))
    with pytest.raises(BoxError, match="outside"):
        validate_box([-10, 0, 50, 50], (512, 301))


@pytest.mark.parametrize("box, message", [
    ([100, 50, 40, 200], "inverted corners"),
    ([10, 200, 100, 20], "inverted corners"),
    ([10, 20, 10, 200], "zero area"),
    ([10, 20, 100, 20], "zero area"),
    ([511.5, 10, 514, 50], "less than one pixel"),
])
def test_degenerate_boxes_are_refused(box, message):
    with pytest.raises(BoxError, match=message):
        validate_box(box, (512, 301))


def test_the_marked_picture_has_a_red_frame_and_leaves_the_original_alone():
    picture = Image.new("RGB", (400, 300), (0, 128, 0))
    marked = VisualPrompt.of(picture, [100, 50, 300, 250]).marked
    pixels = np.asarray(marked)
    width = line_width(picture.size)
    assert width == 3
    assert pixels[50, 200].tolist() == [255, 0, 0]  # top edge
    assert pixels[150, 100 + width - 1].tolist() == [255, 0, 0]  # inside the left edge
    assert pixels[150, 100 + width + 1].tolist() == [0, 128, 0]  # just past the line: untouched
    assert pixels[249, 200].tolist() == [255, 0, 0]  # bottom edge, drawn inside the box
    assert pixels[10, 10].tolist() == [0, 128, 0]
    assert np.asarray(picture)[50, 200].tolist() == [0, 128, 0]
    assert np.array_equal(np.asarray(VisualPrompt.of(picture, None).marked), np.asarray(picture))


def test_line_width_scales_with_the_picture():
    assert line_width((100, 80)) == 2 and line_width((2000, 1500)) == 15


def test_crop_adds_margin_and_zooms_small_regions():
    picture = Image.new("RGB", (1000, 800))
    crop = VisualPrompt.of(picture, [100, 100, 200, 150]).crop(margin=0.15, min_side=224)
    # 100x50 box + 15 % each side = about 130x65 (whole pixels), zoomed so the short side is 224.
    assert min(crop.size) == 224 and abs(crop.size[0] / crop.size[1] - 2.0) < 0.05
    big = VisualPrompt.of(picture, [0, 0, 600, 500]).crop(margin=0.0)
    assert big.size == (600, 500)
    whole = VisualPrompt.of(picture, None).crop(margin=0.3)
    assert whole.size == (1000, 800)
    edge = VisualPrompt.of(picture, [900, 700, 1000, 800]).crop(margin=0.5, min_side=1)
    assert edge.size == (150, 150)  # the margin stops at the picture's edge
    # A 500x2 sliver would need x112 to reach 224 px high; the zoom stops at a 4 x 224 long side.
    sliver = VisualPrompt.of(picture, [0, 400, 500, 402]).crop(margin=0.0)
    assert sliver.size == (896, 4)
    assert VisualPrompt.of(picture, [0, 400, 1000, 402]).crop(margin=0.0).size == (1000, 2)  # never shrunk
    with pytest.raises(BoxError, match="negative margin"):
        VisualPrompt.of(picture, [0, 0, 10, 10]).crop(margin=-0.1)


def test_crop_keeps_the_boxed_content():
    array = np.zeros((300, 400, 3), dtype=np.uint8)
    array[100:200, 150:250] = (255, 255, 0)
    crop = np.asarray(VisualPrompt.of(Image.fromarray(array), [150, 100, 250, 200]).crop(margin=0.0, min_side=1))
    assert crop.shape == (100, 100, 3) and (crop == (255, 255, 0)).all()


def test_boxes_follow_a_picture_shrunk_on_load(tmp_path):
    path = tmp_path / "big.png"
    array = np.zeros((1000, 2000, 3), dtype=np.uint8)
    array[200:400, 1000:1400] = (255, 0, 0)
    Image.fromarray(array).save(path)
    image = load_image(path, max_pixels=500 * 250)
    assert image.size == (500, 250)
    # The box is given in the file's pixels; it lands on the same red patch of the smaller picture.
    assert VisualPrompt.of(image, [1000, 200, 1400, 400]).region == pytest.approx((250, 50, 350, 100))
    crop = np.asarray(VisualPrompt.of(image, [1000, 200, 1400, 400]).crop(margin=0.0, min_side=1))
    assert crop.shape[:2] == (50, 100) and crop[5:-5, 5:-5, 0].min() > 200
    # A box valid for the file is valid even though it exceeds the loaded picture's pixels.
    assert VisualPrompt.of(image, [1500, 500, 2000, 1000]).marked.size == (500, 250)
    with pytest.raises(BoxError, match="outside the 2000x1000 picture"):
        VisualPrompt.of(image, [0, 0, 2100, 1000]).region


@needs_data
def test_real_photo_boxes_are_valid():
    import json

    people = DATA / "people"
    for line in (people / "photos.jsonl").read_text().splitlines():
        row = json.loads(line)
        image = load_image(people / row["image"])
        box = validate_box(row["box"], image.size)
        marked = VisualPrompt.of(image, row["box"]).marked
        assert marked.size == image.size
        if box is not None:
            assert all(math.isfinite(v) for v in box)
            # The frame's top-left corner is red on the real photo.
            x0, y0 = int(box[0]), int(box[1])
            assert np.asarray(marked)[y0 + 1, x0 + 1].tolist() == [255, 0, 0]
