"""Text inside the marked region, read by RapidOCR (PP-OCRv4 detection + recognition on ONNX Runtime)."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image
from pydantic import BaseModel

from vplink.core.errors import ModelLoadError


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

    def describe(self, region: str = "the marked region", max_lines: int = 12) -> str:
        """One factual sentence for a prompt."""
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
        return self._engine

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
