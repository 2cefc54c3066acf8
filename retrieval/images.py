"""Loading pictures safely: RGB, upright, bounded in size, with clear errors for bad files.

A box in a dataset is given in pixels of the picture as it is *displayed* (EXIF
orientation applied) at its size on disk. :func:`load_image` may shrink a huge
picture; it records both sizes in ``image.info`` so that callers can map a box
onto the loaded pixels with :func:`original_size` and :func:`loaded_scale`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from PIL import Image, ImageOps, UnidentifiedImageError

from vplink.core.errors import VplinkError

#: Pictures with more pixels than this are shrunk on load (aspect kept); 4096 x 4096.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Pictures with more pixels than this are refused as likely decompression bombs (PIL's own hard limit).
DEFAULT_BOMB_PIXELS = 2 * 89_478_485

#: Key in ``image.info`` holding ``{"original": (w, h), "loaded": (w, h)}``.
SIZE_INFO_KEY = "vplink_size"


class ImageLoadError(VplinkError):
    """A picture is missing, not an image, truncated, or too large to decode safely."""

    def __init__(self, path: object, message: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}. Fix: {fix}")


def load_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               bomb_pixels: int = DEFAULT_BOMB_PIXELS) -> Image.Image:
    """Load a picture as an upright RGB ``PIL.Image``, shrunk to at most ``max_pixels`` pixels."""
    path = Path(path)
    with _open(path) as image:
        width, height = image.size
        original = _displayed_size(image)  # before draft() below shrinks image.size
        if width * height > bomb_pixels:
            raise ImageLoadError(path, f"refused: {width}x{height} = {width * height:,} pixels is over the "
                                 f"limit of {bomb_pixels:,} (a possible decompression bomb)",
                                 "shrink the picture, or pass a larger bomb_pixels if you trust the file")
        if max_pixels is not None and width * height > max_pixels:
            # JPEG can decode at 1/2, 1/4, 1/8 scale directly: far less memory than decoding in full.
            scale = (max_pixels / (width * height)) ** 0.5
            image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(path, f"the image data is truncated or corrupt ({exc})",
                                 "re-download or re-export the picture") from None
        rgb = _to_rgb(ImageOps.exif_transpose(image))
    if max_pixels is not None and rgb.size[0] * rgb.size[1] > max_pixels:
        scale = (max_pixels / (rgb.size[0] * rgb.size[1])) ** 0.5
        rgb = rgb.resize((max(1, int(rgb.size[0] * scale)), max(1, int(rgb.size[1] * scale))),
                         Image.Resampling.LANCZOS)
    rgb.info[SIZE_INFO_KEY] = {"original": original, "loaded": rgb.size}
    return rgb


def displayed_size(path: str | Path) -> tuple[int, int]:
    """The size of a picture file as displayed (EXIF rotation applied), read from its header, not decoded."""
    with _open(Path(path)) as image:
        return _displayed_size(image)


def _open(path: Path) -> Image.Image:
    """A picture file opened lazily (header read, pixels not), or a clear error."""
    if not path.is_file():
        raise ImageLoadError(path, "image file not found", "check the path (relative image paths are "
                             "resolved against the folder of the JSON Lines file that names them)")
    try:
        with warnings.catch_warnings():
            # Our own bomb limit decides in load_image; PIL's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"refused as a possible decompression bomb ({exc})",
                             "shrink the picture below ~178 megapixels before using it") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image file PIL can read", "convert it to JPEG or PNG") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot open the image ({exc})", "check the file's permissions") from None


def _displayed_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as displayed (after EXIF rotation): a quarter turn swaps them."""
    width, height = image.size
    return (height, width) if _rotated(image) else (width, height)


def original_size(image: Image.Image) -> tuple[int, int]:
    """The displayed size of the file ``image`` came from, or its own size if it was not loaded by us."""
    record = image.info.get(SIZE_INFO_KEY)
    # A crop or resize made afterwards carries the same info dict: trust it only while the size matches.
    if record and tuple(record["loaded"]) == image.size:
        return tuple(record["original"])  # type: ignore[return-value]
    return image.size


def loaded_scale(image: Image.Image) -> tuple[float, float]:
    """Factors (x, y) that map pixels of the original file onto pixels of ``image``."""
    ow, oh = original_size(image)
    return image.size[0] / ow, image.size[1] / oh


def _rotated(image: Image.Image) -> bool:
    """Whether the EXIF orientation of ``image`` turns it by 90 or 270 degrees."""
    try:
        return image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # a broken EXIF block: exif_transpose ignored it too
        return False


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparent parts become white, not black."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale to 8 bits instead of clipping everything to white.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low or 1.0) * 255.0
        return Image.fromarray(array.astype("uint8")).convert("RGB")
    return image.convert("RGB")

