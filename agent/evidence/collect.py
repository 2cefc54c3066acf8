"""Run the visual evidence tools on a picture and its box, and phrase what they found for a language model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from vplink.agent.evidence.faces import FaceDetector, FaceEvidence, analyse_faces
from vplink.agent.evidence.geometry import GeometryEvidence, describe_geometry
from vplink.agent.evidence.labels import LabelEvidence, label_region
from vplink.agent.evidence.ocr import OcrEvidence, TextReader
from vplink.agent.visual_prompt import VisualPrompt
from vplink.core.errors import VplinkError

#: Every tool, cheapest first.
ALL_TOOLS: tuple[str, ...] = ("geometry", "faces", "labels", "ocr")


class EvidenceToolError(VplinkError):
    """An evidence tool name that does not exist was asked for."""


class ToolRun(BaseModel):
    """How one tool's run went: its time, its confidence, or the error that stopped it."""

    tool: str
    ok: bool
    #: Why the tool was not run (its answer could not change the result); None when it ran.
    skipped: str | None = None
    #: Wall time of the run; the first run of a tool also pays for loading its model.
    seconds: float
    confidence: float | None = None
    error: str | None = None


class VisualEvidence(BaseModel):
    """What the tools found about the marked region; a tool that was not run or failed leaves None."""

    #: Size of the analysed picture; ``box`` is in its pixels (None: the whole picture).
    image_size: tuple[int, int]
    box: tuple[float, float, float, float] | None
    geometry: GeometryEvidence | None = None
    faces: FaceEvidence | None = None
    labels: LabelEvidence | None = None
    ocr: OcrEvidence | None = None
    runs: list[ToolRun] = []

    def run(self, tool: str) -> ToolRun | None:
        """The record of one tool's run, if it was asked for."""
        return next((run for run in self.runs if run.tool == tool), None)

    def to_prompt_text(self) -> str:
        """A compact factual paragraph of the findings; it states what tools saw, never more."""
        region = "the picture" if self.box is None else "the marked region"
        parts = [part.describe() for part in (self.geometry, self.faces) if part is not None]
        parts += [part.describe(region) for part in (self.labels, self.ocr) if part is not None]
        failed = [run.tool for run in self.runs if not run.ok]
        if failed:
            parts.append(f"These tools failed, so they tell nothing here: {', '.join(failed)}.")
        if not parts:
            return "No visual evidence was collected."
        return "Automatic tools report (they can miss things): " + " ".join(parts)


class EvidenceTools:
    """The tools' models, each loaded once on first use and shared by every later call."""

    def __init__(self, face_detector: FaceDetector | None = None, text_reader: TextReader | None = None,
                 classifier: Any | None = None, *, threads: int | None = None) -> None:
        self._face_detector, self._text_reader, self._classifier = face_detector, text_reader, classifier
        #: CPU threads for the models this object builds itself (None: each library's default).
        self.threads = threads
        self._lock = threading.Lock()

    @property
    def face_detector(self) -> FaceDetector:
        """The dlib face detector and descriptor."""
        with self._lock:
            if self._face_detector is None:
                self._face_detector = FaceDetector()
            return self._face_detector

    @property
    def text_reader(self) -> TextReader:
        """The RapidOCR reader (its ONNX models load on the first read)."""
        with self._lock:
            if self._text_reader is None:
                self._text_reader = TextReader(threads=self.threads)
            return self._text_reader

    @property
    def classifier(self):
        """The EfficientNet-Lite0 ImageNet classifier."""
        with self._lock:
            if self._classifier is None:
                from vplink.retrieval.image_encoders import EfficientNetLite0Encoder

                self._classifier = EfficientNetLite0Encoder(threads=self.threads)
            return self._classifier


@lru_cache(maxsize=1)
def default_tools() -> EvidenceTools:
    """The process-wide tool set, so every caller shares one copy of each model."""
    return EvidenceTools()


def collect_evidence(prompt: VisualPrompt, tools: Sequence[str] = ALL_TOOLS, *, toolbox: EvidenceTools | None = None,
                     label_margin: float = 0.15, ocr_margin: float = 0.05, for_model: bool = True) -> VisualEvidence:
    """Run the named tools on a visual prompt's picture and box; a tool that fails is recorded in ``runs``.

    Object labels only ever reach a model's prompt, so they are skipped without one (``for_model=False``) and on
    a box that marks a face (ImageNet has no person class: they name the clothes). OCR runs beside the faces,
    on the other core: ONNX Runtime computes without the GIL that dlib holds.
    """
    unknown = [tool for tool in tools if tool not in ALL_TOOLS]
    if unknown:
        raise EvidenceToolError(f"unknown evidence tool(s) {unknown}. Fix: choose from {list(ALL_TOOLS)}")
    toolbox = toolbox or default_tools()
    picture, marked = prompt.picture, prompt.marked_box
    evidence = VisualEvidence(image_size=picture.size, box=marked)
    steps: dict[str, Callable[[], BaseModel]] = {
        "geometry": lambda: describe_geometry(picture.size, marked),
        "faces": lambda: analyse_faces(picture, marked, toolbox.face_detector),
        "labels": lambda: label_region(prompt.crop(label_margin), toolbox.classifier),
        "ocr": lambda: toolbox.text_reader.read_region(picture, marked, lambda: prompt.crop(ocr_margin)),
    }
    runs: dict[str, ToolRun] = {}

    def run(tool: str) -> None:
        start = time.perf_counter()
        try:
            result = steps[tool]()
        except Exception as exc:  # one broken tool must not sink the others: record it and go on
            runs[tool] = ToolRun(tool=tool, ok=False, seconds=round(time.perf_counter() - start, 4),
                                 error=f"{type(exc).__name__}: {exc}")
            return
        setattr(evidence, tool, result)
        runs[tool] = ToolRun(tool=tool, ok=True, seconds=round(time.perf_counter() - start, 4),
                             confidence=getattr(result, "confidence", None))

    beside = threading.Thread(target=run, args=("ocr",), name="ocr") if "ocr" in tools else None
    if beside is not None:
        beside.start()
    try:
        for tool in ("geometry", "faces", "labels"):
            if tool not in tools:
                continue
            reason = _no_labels(evidence, for_model) if tool == "labels" else None
            if reason:
                runs[tool] = ToolRun(tool=tool, ok=True, seconds=0.0, skipped=reason)
            else:
                run(tool)
    finally:
        if beside is not None:
            beside.join()
    evidence.runs = [runs[tool] for tool in ALL_TOOLS if tool in runs]
    return evidence


def _no_labels(evidence: VisualEvidence, for_model: bool) -> str | None:
    """Why object labels cannot change the result here, or None when they may."""
    if not for_model:
        return "no model reads them: labels only inform the model's prompt"
    if evidence.faces is not None and not evidence.faces.whole_image and evidence.faces.marked is not None:
        return "the box marks a face: ImageNet labels name clothes, not the person"
    return None
