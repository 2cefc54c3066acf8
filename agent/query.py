"""One linking question as the agent receives it: a picture, a box, and optional text."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LinkQuery(BaseModel):
    """What to link: ``image`` (a path), ``box`` ``[x0, y0, x1, y1]`` in pixels or None, and optional text.

    ``mention`` is None in VP-MEL, where the box replaces the mention word.
    """

    model_config = ConfigDict(extra="ignore")

    id: str = ""
    image: str | None = None
    box: list[float] | None = None
    text: str | None = None
    mention: str | None = None


class LabeledQuery(LinkQuery):
    """A query with its gold answer: an entity id, or None when the entity is not in the KB (NIL)."""

    answer: str | None = Field(default=None)
