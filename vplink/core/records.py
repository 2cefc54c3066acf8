"""The records every package shares: the KB entity, the query (with or without its gold answer), a
retrieved candidate and a ranked entity. Plain data with validation; nothing here runs a model."""

from __future__ import annotations

import hashlib
import json
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


#: ``type`` values that mean a person (Wikidata's "human", and the plain words).
PERSON_TYPES = {"human", "person", "people", "q5"}
# Typed-less KBs (WikiMEL) describe people by attributes: "Sex: male. Birth: 1900, ...".
_PERSON_DESCRIPTION = re.compile(r"\b(Sex: (male|female)|Birth: \d|born \d|\(born )", re.I)


class Entity(BaseModel):
    """One knowledge-base entity; ``image`` paths are resolved against the KB file's folder."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    type: str | None = None
    image: list[str] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # Numeric ids are common in public KBs; keep them as text so "42" and 42 are one id.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("image", "aliases", mode="before")
    @classmethod
    def _as_list(cls, value: object) -> object:
        # Both fields take one string or a list of them; null means none.
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    def is_person(self) -> bool:
        """Whether the entity is a person: its ``type`` says so, or its description gives a sex or a birth."""
        if self.type:
            return self.type.strip().lower() in PERSON_TYPES
        return bool(_PERSON_DESCRIPTION.search(self.description))

    def name_view(self) -> str:
        """The text of the name view: the name followed by its aliases."""
        return "; ".join([self.name, *[a for a in self.aliases if a and a != self.name]])

    def description_view(self) -> str:
        """The text of the description view: name, type and description together."""
        head = self.name if not self.type else f"{self.name} ({self.type})"
        return f"{head}. {self.description}".strip() if self.description else head

    def content_hash(self) -> str:
        """A stable hash of every field that shapes the entity's embeddings."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


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


class ViewHit(BaseModel):
    """Where one channel ranked a candidate."""

    rank: int
    score: float


class Candidate(BaseModel):
    """A fused candidate with its per-channel ranks and scores."""

    id: str
    name: str = ""
    score: float
    hits: dict[str, ViewHit] = Field(default_factory=dict)
    entity: Entity | None = None


class RankedEntity(BaseModel):
    """One entity of a ranking: its KB id and score, with its name and why it ranks there when known.

    The agent fills every field; an evaluation prediction keeps the id, score and name.
    """

    model_config = ConfigDict(extra="ignore")

    id: str
    score: float = 0.0
    name: str = ""
    description: str = ""
    retrieval_score: float = 0.0
    hits: dict[str, dict[str, float]] = Field(default_factory=dict, description="per-channel rank and score")

    @field_validator("name", mode="before")
    @classmethod
    def _no_name(cls, value: object) -> object:
        # predictions written before the one RankedEntity held "name": null for an unknown name
        return "" if value is None else value
