"""Where the box sits in the picture: left/centre/right, top/middle/bottom, and its share of the area."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from vplink.agent.visual_prompt import Box

Horizontal = Literal["left", "centre", "right"]
Vertical = Literal["top", "middle", "bottom"]


class GeometryEvidence(BaseModel):
    """The box's place in the picture; pure arithmetic, so always certain."""

    image_size: tuple[int, int]
    box: tuple[float, float, float, float]
    whole_image: bool
    horizontal: Horizontal
    vertical: Vertical
    #: Box centre as a share of the width and height (0 = left/top edge, 1 = right/bottom edge).
    centre: tuple[float, float]
    #: Box area over picture area, in [0, 1].
    area_share: float
    confidence: float = 1.0

    def describe(self) -> str:
        """One sentence for a prompt."""
        if self.whole_image:
            return "No region is marked: the whole picture is the visual prompt."
        centred = (self.horizontal, self.vertical) == ("centre", "middle")
        place = "the centre" if centred else f"the {self.vertical} {self.horizontal}"
        return (f"The marked region covers {self.area_share:.0%} of the picture and sits at {place} "
                f"(centre at {self.centre[0]:.0%} across, {self.centre[1]:.0%} down).")


def _third(share: float, names: tuple[str, str, str]) -> str:
    """Name the third of a side that a position (0..1) falls in."""
    return names[0] if share < 1 / 3 else names[2] if share > 2 / 3 else names[1]


def describe_geometry(image_size: tuple[int, int], box: Box | None) -> GeometryEvidence:
    """Place a box (in ``image_size`` pixels, already validated) in the picture; None is the whole picture."""
    width, height = image_size
    whole = box is None
    x0, y0, x1, y1 = (0.0, 0.0, float(width), float(height)) if box is None else box
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    return GeometryEvidence(
        image_size=(width, height), box=(x0, y0, x1, y1), whole_image=whole,
        horizontal=_third(cx, ("left", "centre", "right")),  # type: ignore[arg-type]
        vertical=_third(cy, ("top", "middle", "bottom")),  # type: ignore[arg-type]
        centre=(round(cx, 4), round(cy, 4)),
        area_share=round((x1 - x0) * (y1 - y0) / (width * height), 4),
    )
