"""load_image: modes, EXIF rotation, truncated and non-image files, huge pictures, real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vplink.core.errors import VplinkError
from vplink.retrieval.images import ImageLoadError, load_image, loaded_scale, original_size

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not beside the checkout")


def _photo(size: tuple[int, int] = (60, 40)) -> Image.Image:
    """A left-yellow / right-blue picture: orientation changes are visible in the pixels, even in grey."""
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    array[:, : size[0] // 2] = (255, 255, 0)
    array[:, size[0] // 2:] = (0, 0, 255)
    return Image.fromarray(array)


def test_rgb_jpeg_loads_unchanged_in_size(tmp_path):
    path = tmp_path / "plain.jpg"
    _photo().save(path, quality=95)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (60, 40)
    assert original_size(image) == (60, 40) and loaded_scale(image) == (1.0, 1.0)


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    _photo((60, 40)).save(path, exif=exif, quality=95)
    image = load_image(path)
    # Stored 60x40 with yellow on the left; displayed upright it is 40x60 with yellow on top.
    assert image.size == (40, 60)
    assert original_size(image) == (40, 60)
    top, bottom = np.asarray(image)[5, 20], np.asarray(image)[55, 20]
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "1", "I;16"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    source = _photo()
    if mode == "I;16":
        source = Image.fromarray((np.asarray(source.convert("L"), dtype=np.uint16) * 200))
        assert source.mode in ("I;16", "I")
    elif mode == "1":
        source = source.convert("1", dither=Image.Dither.NONE)
    else:
        source = source.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    source.save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (60, 40)
    # The two halves must stay distinguishable whatever the mode did to the colours.
    left, right = np.asarray(image)[20, 5].astype(int), np.asarray(image)[20, 55].astype(int)
    assert np.abs(left - right).sum() > 30


def test_transparent_pixels_become_white_not_black(tmp_path):
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(path)
    assert np.asarray(load_image(path))[5, 5].tolist() == [255, 255, 255]


def test_truncated_jpeg_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "cut.jpg"
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(full)
    path.write_bytes(full.read_bytes()[:3000])
    with pytest.raises(ImageLoadError, match="truncated or corrupt") as info:
        load_image(path)
    assert str(path) in str(info.value) and "Fix:" in str(info.value)
    assert isinstance(info.value, VplinkError)


def test_non_image_and_missing_files_are_refused(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(text)
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.jpg")


def test_huge_picture_is_downscaled_and_remembers_its_size(tmp_path):
    path = tmp_path / "big.jpg"
    _photo((3000, 2000)).save(path, quality=80)
    image = load_image(path, max_pixels=600 * 400)
    assert image.size[0] * image.size[1] <= 600 * 400
    assert abs(image.size[0] / image.size[1] - 1.5) < 0.02
    assert original_size(image) == (3000, 2000)
    sx, sy = loaded_scale(image)
    assert 0.19 < sx < 0.21 and 0.19 < sy < 0.21
    # A crop taken afterwards is a new picture: it must not claim the file's size.
    assert original_size(image.crop((0, 0, 10, 10))) == (10, 10)


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 10000)).save(path)  # 120 Mpx, a few kB on disk
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageLoadError, match="decompression bomb") as info:
        load_image(path, bomb_pixels=50_000_000)
    assert "120,000,000 pixels" in str(info.value)


def test_pil_hard_limit_is_reported_as_our_error(tmp_path):
    path = tmp_path / "bigger.png"
    Image.new("1", (20000, 10000)).save(path)  # past PIL's own 179 Mpx refusal
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)


@needs_data
def test_real_photos_load():
    for path in [DATA / "people" / "images" / "two_people.jpg", DATA / "wikimel" / "images" / "848.jpg"]:
        image = load_image(path)
        assert image.mode == "RGB" and min(image.size) > 200
