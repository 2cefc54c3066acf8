"""The visual prompt: a box on a picture, parsed, checked, drawn and zoomed, once per query (:class:`VisualPrompt`).

Boxes are ``[x0, y0, x1, y1]`` in pixels of the picture as stored (EXIF rotation applied), x to the
right and y downwards, (x0, y0) the top-left corner. ``None`` means the whole picture. When the
picture was shrunk on load (:func:`vplink.retrieval.images.load_image`), :class:`VisualPrompt` maps the box
onto the loaded pixels itself, so callers always pass boxes in the dataset's own coordinates.

Overhang rule: a box that crosses the picture's edge by at most ``max(2 px, 1 % of that side)`` is
clipped to the picture (annotation tools round, and some count the last pixel as ``width``); a box
that overhangs further, or lies wholly outside, is refused, because it was drawn on another picture
or another size of it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw
from pydantic import BaseModel, PrivateAttr

from vplink.core.errors import VplinkError
from vplink.retrieval.images import load_image, loaded_scale, original_size

Box = tuple[float, float, float, float]

#: The colour VP-MEL marks entities with.
MARK_COLOUR = (255, 0, 0)
_NONE_WORDS = {"", "none", "null", "whole", "all"}


class BoxError(VplinkError):
    """A box is malformed, empty, inverted or outside the picture."""

    def __init__(self, value: object, message: str, fix: str) -> None:
        self.value = value
        self.reason = f"box {value!r}: {message}"
        self.fix = fix
        super().__init__(f"{self.reason}. Fix: {fix}")


def parse_box(value: str | Sequence[object] | None) -> Box | None:
    """Read a box from ``"x0,y0,x1,y1"`` text (brackets and spaces allowed) or a 4-item list; None/"" -> None."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NONE_WORDS:
            return None
        parts = [part for part in re.split(r"[,\s]+", text.strip("[]() ")) if part]
    elif isinstance(value, Sequence) or hasattr(value, "tolist"):  # lists, tuples, numpy arrays, tensors
        parts = list(value.tolist() if hasattr(value, "tolist") else value)
    else:
        raise BoxError(value, f"a {type(value).__name__} is not a box", 'give "x0,y0,x1,y1" or a list of 4 numbers')
    if len(parts) != 4:
        raise BoxError(value, f"{len(parts)} values instead of 4", 'give exactly "x0,y0,x1,y1" in pixels')
    numbers = []
    for part in parts:
        # bool is an int in Python; True as a coordinate is always a mistake.
        if isinstance(part, bool):
            raise BoxError(value, f"{part!r} is not a coordinate", "give 4 numbers in pixels")
        try:
            number = float(part)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise BoxError(value, f"{part!r} is not a number", "give 4 numbers in pixels, e.g. 10,20,200,300") from None
        if not math.isfinite(number):
            raise BoxError(value, f"{part!r} is not a finite number", "give 4 finite pixel coordinates")
        numbers.append(number)
    return tuple(numbers)  # type: ignore[return-value]


def overhang_tolerance(side: float) -> float:
    """How far (pixels) a box may cross an edge of a picture side of this length and still be clipped."""
    return max(2.0, 0.01 * side)


def check_box_shape(box: str | Sequence[object] | None) -> Box | None:
    """Parse a box and check what needs no picture (corners in order, some area); None/"" -> None."""
    parsed = parse_box(box)
    if parsed is None:
        return None
    x0, y0, x1, y1 = parsed
    if x1 < x0 or y1 < y0:
        raise BoxError(box, "inverted corners (x1 < x0 or y1 < y0)",
                       "write the top-left corner first: [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
    if x1 == x0 or y1 == y0:
        raise BoxError(box, "zero area", "give a box at least one pixel wide and high")
    return parsed


def validate_box(box: str | Sequence[object] | None, image_size: tuple[int, int]) -> Box | None:
    """Check a box against a picture of ``image_size`` (w, h); return it clipped to the picture, or None.

    The one box check of every entry point: ``link``, ``/link``, and the datasets ``eval`` reads.
    """
    parsed = check_box_shape(box)
    if parsed is None:
        return None
    x0, y0, x1, y1 = parsed
    width, height = image_size
    tol_x, tol_y = overhang_tolerance(width), overhang_tolerance(height)
    if x0 < -tol_x or y0 < -tol_y or x1 > width + tol_x or y1 > height + tol_y:
        raise BoxError(box, f"outside the {width}x{height} picture",
                       f"give pixels of this picture: 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height} "
                       "(was the box drawn on a resized copy?)")
    clipped = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
    if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
        raise BoxError(box, f"less than one pixel of it lies inside the {width}x{height} picture",
                       "give a box that covers part of the picture")
    return clipped


def _on_loaded(image: Image.Image, checked: Box | None) -> Box:
    """A checked box (in the file's pixels) on ``image``'s pixels; None -> the whole picture."""
    if checked is None:
        return (0.0, 0.0, float(image.size[0]), float(image.size[1]))
    sx, sy = loaded_scale(image)
    return (checked[0] * sx, checked[1] * sy, checked[2] * sx, checked[3] * sy)


def line_width(image_size: tuple[int, int]) -> int:
    """Width of the drawn mark: about 1 % of the shorter side, at least 2 px, so it shows at any size."""
    return max(2, round(min(image_size) / 100))


class VisualPrompt(BaseModel):
    """One query's visual prompt, made once (in `prepare`) and read by every later step: the picture loaded with
    its orientation applied, the box checked against it and mapped onto its pixels, and, drawn on first use,
    the marked picture and the zoomed crops.

    Only the small fields are data (a checkpoint stores them); the picture and what is drawn from it are
    reloaded from ``path`` when a checkpointed query resumes.
    """

    #: The picture's file; None for a picture handed over in memory.
    path: str | None = None
    #: The box in the file's pixels, checked and clipped; None: the whole picture.
    box: Box | None = None
    #: The box on the loaded picture's pixels (the whole picture when ``box`` is None).
    region: Box
    #: The loaded picture's size (it may be shrunk from the file's).
    size: tuple[int, int]
    _picture: Image.Image | None = PrivateAttr(default=None)
    _drawn: dict[tuple, Image.Image] = PrivateAttr(default_factory=dict)

    @classmethod
    def of(cls, picture: Image.Image, box: str | Sequence[object] | None, path: str | Path | None = None
           ) -> VisualPrompt:
        """The prompt of ``box`` (in the file's pixels; None: the whole picture) on a loaded picture; a bad box
        raises :class:`BoxError` here, before any model runs."""
        checked = validate_box(box, original_size(picture))
        prompt = cls(path=str(path) if path is not None else None, box=checked, region=_on_loaded(picture, checked),
                     size=picture.size)
        prompt._picture = picture
        return prompt

    @classmethod
    def load(cls, path: str | Path, box: str | Sequence[object] | None,
             loader: Callable[[str], Image.Image] | None = None) -> VisualPrompt:
        """The prompt of ``box`` on the picture at ``path``, loaded by ``loader`` (default: ``load_image``)."""
        return cls.of((loader or load_image)(str(path)), box, path)

    @property
    def picture(self) -> Image.Image:
        """The loaded picture (reloaded from ``path`` after a checkpoint)."""
        if self._picture is None:
            if self.path is None:
                raise ValueError("this visual prompt holds no picture and no path to load it from")
            self._picture = load_image(self.path)
        return self._picture

    @property
    def marked_box(self) -> Box | None:
        """The box on the loaded picture's pixels, or None when the whole picture is the prompt."""
        return None if self.box is None else self.region

    @property
    def marked(self) -> Image.Image:
        """A copy of the picture with the box drawn on it as a red rectangle (a plain copy for the whole picture)."""
        key = ("marked",)
        if key not in self._drawn:
            self._drawn[key] = _draw_mark(self.picture, self.marked_box)
        return self._drawn[key]

    def crop(self, margin: float = 0.15, min_side: int = 224) -> Image.Image:
        """The region plus ``margin`` of its size on every side, zoomed so its shorter side is >= ``min_side``.

        The zoom stops where the longer side would pass ``4 * min_side`` (a thin sliver stays thin).
        """
        if margin < 0:
            raise BoxError(self.box, f"negative margin {margin}", "give a margin >= 0 (a share of the box's size)")
        key = ("crop", margin, min_side)
        if key not in self._drawn:
            self._drawn[key] = _crop(self.picture, self.region, margin, min_side)
        return self._drawn[key]


def _draw_mark(image: Image.Image, region: Box | None, colour: tuple[int, int, int] = MARK_COLOUR) -> Image.Image:
    """A copy of the picture with ``region`` (its pixels) drawn as a rectangle; None draws nothing."""
    marked = image.convert("RGB")  # always a copy: the caller's picture stays untouched
    if region is None:
        return marked
    x0, y0, x1, y1 = region
    width = line_width(image.size)
    # Draw inside the box's edge so a box flush with the border is still fully visible.
    right, bottom = max(x0, x1 - 1), max(y0, y1 - 1)
    ImageDraw.Draw(marked).rectangle((round(x0), round(y0), round(right), round(bottom)), outline=colour,
                                     width=width)
    return marked


def _crop(image: Image.Image, region: Box, margin: float, min_side: int) -> Image.Image:
    """``region`` (the picture's pixels) with its margin, zoomed (see :meth:`VisualPrompt.crop`)."""
    x0, y0, x1, y1 = region
    pad_x, pad_y = (x1 - x0) * margin, (y1 - y0) * margin
    left, top = max(0, math.floor(x0 - pad_x)), max(0, math.floor(y0 - pad_y))
    right = min(image.size[0], math.ceil(x1 + pad_x))
    bottom = min(image.size[1], math.ceil(y1 + pad_y))
    crop = image.convert("RGB").crop((left, top, max(right, left + 1), max(bottom, top + 1)))
    crop.info.clear()  # a crop is a new picture: no size record of the file it came from
    shorter, longer = min(crop.size), max(crop.size)
    if shorter < min_side:
        # Zoom: small regions are what VLMs and OCR misread; enlarging helps both. A sliver of a box
        # would grow without end, so the longer side stops at 4 x min_side.
        scale = max(1.0, min(min_side / shorter, 4 * min_side / longer))
        crop = crop.resize((max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))),
                           Image.Resampling.BICUBIC)
    return crop
