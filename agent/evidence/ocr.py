"""Text inside the marked region, read by RapidOCR (PP-OCRv4 detection + recognition on ONNX Runtime)."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from PIL import Image
from pydantic import BaseModel

from vplink.agent.evidence.faces import FACE_CACHE_SIZE, picture_key
from vplink.core.errors import ModelLoadError

#: The shorter side the text-presence check reads a whole picture at. On the 69 boxed WikiMEL mentions the full read
#: of the zoomed crops finds text in 20 boxes; this check misses 5 of them (stray marks: "®", "?", "H"), as does the
#: detector's own 736 px at twice the time; a longer side of 640 px missed 10. One miss changes a top-1 without a
#: model (box 3315-0: "SOLO 1" on a shirt; 48 of 69 right against 49 when every box is read).
PRESENCE_SIDE = 512


class OcrLine(BaseModel):
    """One line of text and the recogniser's score for it."""

    text: str
    score: float
    #: Corner points in pixels of the picture that was read (the zoomed crop).
    quad: list[tuple[float, float]]


class OcrEvidence(BaseModel):
    """Lines read in the region, in reading order, above the score threshold."""

    lines: list[OcrLine]
    min_score: float
    #: Mean score of the kept lines (0 when nothing was read).
    confidence: float
    #: False when the picture's text detector found no text in the box, so the region was not read.
    read: bool = True

    def describe(self, region: str = "the marked region", max_lines: int = 12) -> str:
        """One factual sentence for a prompt."""
        if not self.read:
            return f"A text detector found no text in {region}."
        if not self.lines:
            return f"OCR read no text in {region}."
        shown = [f'"{line.text}" ({line.score:.2f})' for line in self.lines[:max_lines]]
        more = f", and {len(self.lines) - max_lines} more lines" if len(self.lines) > max_lines else ""
        return f"OCR read {len(self.lines)} text line(s) in {region}: " + "; ".join(shown) + more + "."


class TextReader:
    """A RapidOCR engine, loaded once on first use; thread-safe."""

    name = "rapidocr-onnxruntime (PP-OCRv4)"

    def __init__(self, min_score: float = 0.5, threads: int | None = None) -> None:
        self.min_score = min_score
        # None: ONNX Runtime's default (all cores). On a busy machine 1 thread was ~2x faster in wall time.
        self.threads = threads
        self._engine = None
        self._presence = None  # the engine's detector at the picture's own scale
        self._regions: OrderedDict[str, list[tuple[float, float, float, float]]] = OrderedDict()
        self._lock = threading.Lock()

    def _load(self):
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError:
                raise ModelLoadError("RapidOCR is not installed. Fix: `pip install rapidocr-onnxruntime`") from None
            threads = {} if self.threads is None else {"intra_op_num_threads": self.threads,
                                                       "inter_op_num_threads": 1}
            self._engine = RapidOCR(**threads)
            # The same detection model (a shallow copy shares its session), run once per picture on the whole
            # picture at PRESENCE_SIDE: where text is, at a quarter of the zoomed crop's pixels.
            self._presence = copy.copy(self._engine.text_det)
            self._presence.limit_type, self._presence.limit_side_len = "min", PRESENCE_SIDE
        return self._engine

    def text_regions(self, picture: Image.Image) -> list[tuple[float, float, float, float]]:
        """Boxes (pixels of the picture) where the detector sees text; detected once per picture."""
        key = picture_key(picture)
        with self._lock:
            if key not in self._regions:
                self._load()
                rgb = np.ascontiguousarray(np.asarray(picture.convert("RGB"))[:, :, ::-1])  # the detector reads BGR
                quads, _ = self._presence(rgb)
                self._regions[key] = [(float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()),
                                       float(q[:, 1].max())) for q in (quads if quads is not None else [])]
                while len(self._regions) > FACE_CACHE_SIZE:
                    self._regions.popitem(last=False)
            self._regions.move_to_end(key)
            return self._regions[key]

    def read_region(self, picture: Image.Image, box: tuple[float, float, float, float] | None,
                    crop: Callable[[], Image.Image]) -> OcrEvidence:
        """Read the region (``crop()`` makes its zoomed picture) only if the picture's detector found text in it."""
        regions = self.text_regions(picture)
        inside = [r for r in regions if box is None or (min(r[2], box[2]) > max(r[0], box[0])
                                                       and min(r[3], box[3]) > max(r[1], box[1]))]
        if not inside:
            return OcrEvidence(lines=[], min_score=self.min_score, confidence=0.0, read=False)
        return self.read(crop())

    def read(self, image: Image.Image) -> OcrEvidence:
        """Read every text line in the picture (pass the crop of the region)."""
        with self._lock:  # one ONNX session per engine; RapidOCR keeps per-call state on the object
            # A PIL picture, not an array: RapidOCR takes arrays as BGR (OpenCV's order) and PIL as RGB.
            result, _ = self._load()(image.convert("RGB"), text_score=self.min_score)
        lines = [OcrLine(text=str(text).strip(), score=round(float(score), 3),
                         quad=[(float(x), float(y)) for x, y in quad])
                 for quad, text, score in (result or []) if str(text).strip() and float(score) >= self.min_score]
        confidence = float(np.mean([line.score for line in lines])) if lines else 0.0
        return OcrEvidence(lines=lines, min_score=self.min_score, confidence=round(confidence, 3))
