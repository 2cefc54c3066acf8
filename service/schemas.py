"""The JSON the API answers with, beyond the agent's own records."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, computed_field

from vplink.agent.state import LinkResult, PersonRecord, PictureResult


class ErrorBody(BaseModel):
    """A refused request: what is wrong and the fix (the CLI's message), and the error's class name."""

    detail: str
    error: str


class LinkResponse(LinkResult):
    """A `LinkResult` as the API returns it: the picture named as the client knows it, the answer spelled out."""

    @computed_field(description="the id of the best entity, or null when the answer is NIL or nothing was found")
    @property
    def answer(self) -> str | None:
        return self.top.id if self.top else None

    @computed_field(description="the answer in one line: the entity and its confidence, or NIL with the nearest miss")
    @property
    def headline(self) -> str:
        return LinkResult.headline.fget(self)

    @computed_field(description="the model's reasoning: the reflect step's if it ran, else the description's")
    @property
    def rationale(self) -> str:
        return LinkResult.rationale.fget(self)  # the result's own property, now also sent as a field

    @classmethod
    def of(cls, result: LinkResult, picture: str | None) -> LinkResponse:
        """The response for ``result``, its picture named ``picture`` (never the server's temporary path)."""
        query = result.query.model_copy(update={"image": picture})
        return cls.model_validate({**dict(result), "query": query})


class PictureResponse(BaseModel):
    """Everyone in a picture, linked jointly: one record per box, and each box's whole result (ranking, evidence)."""

    image: str | None
    text: str | None
    #: "boxes" when the request gave them, "faces" when they are the faces the detector found.
    boxes_from: str
    people: list[PersonRecord]
    results: list[LinkResponse]

    @classmethod
    def of(cls, picture: PictureResult, label: str | None) -> PictureResponse:
        """The response for ``picture``, named ``label`` as the client knows it."""
        return cls(image=label, text=picture.text, boxes_from=picture.boxes_from, people=picture.people(),
                   results=[LinkResponse.of(result, label) for result in picture.results])


class Health(BaseModel):
    """Whether the service can link now."""

    status: str
    store: dict[str, Any]
    encoders: dict[str, str | None]
    model_server: dict[str, Any]
    image_root: str | None
    #: Whether every model has been loaded and run once (the service answers 503 "warming" until then).
    warm: bool = False
    #: Seconds the warm-up took.
    warm_up_s: float | None = None


class PictureList(BaseModel):
    """The pictures a request may name by path."""

    image_root: bool
    pictures: list[str]
