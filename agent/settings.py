"""How to open a `Linker`: one typed record for the flags of `link`, `serve` and `eval`, the ``VPLINK_*``
environment and the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vplink.agent.alignment import AlignmentParams
from vplink.agent.joint import JointParams
from vplink.core.settings import load_settings


class LinkerConfig(BaseModel):
    """Knobs of the workflow."""

    k: int = Field(default=20, ge=1, description="candidates kept after retrieval")
    reflect_margin: float = Field(default=0.1, ge=0, description="relative top-1/top-2 margin under which to reflect")
    reflect_top: int = Field(default=5, ge=2, description="candidates shown to the model when reflecting")
    # The graph goes through `reflect` at most once (rerank -> reflect -> decide), so 1 is the most it can do.
    max_reflections: int = Field(default=1, ge=0, le=1, description="1: a close call is shown to the model once "
                                 "more; 0: never")
    nil: bool = Field(default=True, description="answer NIL (not in the KB) when the answer is not sure enough; "
                      "False: rankings only")
    nil_threshold: float | None = Field(default=None, ge=0, le=1, description="the confidence under which the "
                                        "answer is NIL; None: the calibration's own (chosen on dev for the best "
                                        "NIL F1)")
    evidence_tools: list[str] = Field(default_factory=lambda: ["geometry", "faces", "ocr", "labels"])
    image_retrieval: bool = True
    describe_max_tokens: int = Field(default=320, ge=32)
    choose_max_tokens: int = Field(default=96, ge=16)
    route_confidence: float = Field(default=0.8, ge=0, le=1.01, description="the model is skipped when the box's "
                                    "person is at least this sure (the sharpened alignment weight); above 1: always ask")
    alignment: AlignmentParams = Field(default_factory=AlignmentParams)
    people_sharpness: float = Field(default=4.0, gt=0, description="caption people's probabilities are raised to "
                                    "this before mixing their searches (above 1: commit more to the likeliest)")
    # Fitted on the 69 boxed WikiMEL mentions with Qwen2.5-Coder-1.5B: it chose the boxed person 39 of 57
    # times, but where it disagreed with the alignment it was right 2 of 14 times (the alignment 7), so its
    # choice adds nothing and weighs 0 by default. Raise it for a vision-language model that sees the box.
    choice_weight: float = Field(default=0.0, ge=0, description="the model's chosen caption person gets its odds "
                                 "multiplied by 1 + this")
    reflect_max_tokens: int = Field(default=256, ge=32)
    joint: JointParams = Field(default_factory=JointParams, description="how the boxes of one picture are "
                               "decided together (Linker.link_all)")


class LinkerSettings(BaseSettings, LinkerConfig):
    """The store, the model server, the scorer and every workflow knob of :class:`LinkerConfig`.

    Each field ``x`` is also read from ``VPLINK_X`` (``VPLINK_STORE``, ``VPLINK_K``, ``VPLINK_LLM_URL``...);
    a value given in code or on the command line wins over the environment, which wins over the default.
    """

    model_config = SettingsConfigDict(env_prefix="VPLINK_", extra="forbid")

    store: str = Field(description="store folder or Chroma server URL")
    prefix: str | None = Field(default=None, description="the KB's collection prefix (needed when the store holds "
                                                         "several KBs)")
    text_model: Path | None = Field(default=None, description="text model folder (default: the one the store was "
                                                              "built with)")
    image_encoder: str | None = Field(default=None, description="image encoder spec, e.g. clip:/path (default: the "
                                                                "one the store was built with)")
    llm_url: str | None = Field(default=None, description="vLLM server, e.g. http://127.0.0.1:8801/v1 (default: "
                                                          "none: link on the evidence and the text alone)")
    llm_model: str | None = Field(default=None, description="served model name (default: the server's first)")
    llm_timeout: float | None = Field(default=None, gt=0, description="seconds one model request may take "
                                                                       "(default: the model client's LLMConfig.timeout_s)")
    vision: bool = Field(default=False, description="the model sees images: send the marked picture and the crop")
    scorer: Path | None = Field(default=None, description="a distilled scorer folder to rerank with")
    calibration: Path | None = Field(default=None, description="a calibration file from `vplink eval calibrate` "
                                     "(default: the scorer's own, else the one shipped for the retrieval score)")
    checkpoint: Path | None = Field(default=None, description="SQLite file: a query resumes mid-way after a crash")

    @field_validator("store", mode="before")
    @classmethod
    def _store_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value  # a folder as a Path, or a URL as text

    @classmethod
    def load(cls, **given: Any) -> LinkerSettings:
        """The settings from ``given`` values, the environment and the defaults; a bad one raises SettingsError."""
        return load_settings(cls, {"store": "pass --store DIR or set VPLINK_STORE"}, **given)

    def workflow(self) -> LinkerConfig:
        """The workflow's knobs alone, as the `Linker` and its run records hold them."""
        return LinkerConfig.model_validate(self.model_dump(include=set(LinkerConfig.model_fields)))
