"""Faces with dlib: a detector (HOG, or the CNN detector) and the 128-d face-identity descriptor.

The weights come from the ``face-recognition-models`` package (dlib's own model files), or from
any folder holding the same four ``.dat`` files; nothing is fetched at run time. Two descriptors of
the same person lie closer than about 0.6 (Euclidean); dlib reports 99.38 % on LFW.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vplink.core.errors import ModelLoadError

#: The files dlib needs, as ``face-recognition-models`` names them.
DETECTOR_CNN = "mmod_human_face_detector.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
#: Below this Euclidean distance two descriptors are the same person (dlib's published threshold).
SAME_PERSON_DISTANCE = 0.6


def default_model_dir() -> Path:
    """The model folder of the installed ``face-recognition-models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")  # its __init__ needs pkg_resources: do not import
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("dlib's face models are not installed. Fix: `pip install face-recognition-models` "
                             "or pass a folder holding " f"{LANDMARKS_5} and {DESCRIPTOR}")
    return Path(spec.submodule_search_locations[0]) / "models"


@dataclass(frozen=True)
class DetectedFace:
    """One face in pixels of the analysed picture, with the detector's score."""

    box: tuple[int, int, int, int]
    score: float


class FaceModels:
    """dlib's face detector and descriptor, loaded once; thread-safe.

    ``detector="hog"`` (default) is fast on a CPU (~0.2 s a picture); ``"cnn"`` (dlib's MMOD) finds
    more small and turned faces at several seconds a picture. ``upsample=None`` enlarges a picture
    until its longer side reaches ~1,600 px (at most twice): HOG misses faces under ~40 px, common in
    512-px press photos of groups.
    """

    def __init__(self, model_dir: str | Path | None = None, *, detector: str = "hog", upsample: int | None = None,
                 max_side: int = 1024) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise ModelLoadError("dlib is not installed. Fix: `pip install dlib-bin`") from exc
        folder = Path(model_dir) if model_dir else default_model_dir()
        missing = [f for f in (LANDMARKS_5, DESCRIPTOR) + ((DETECTOR_CNN,) if detector == "cnn" else ())
                   if not (folder / f).is_file()]
        if missing:
            raise ModelLoadError(f"{folder}: missing dlib model file(s) {missing}. Fix: install "
                                 "face-recognition-models or point --face-models at a folder holding them")
        if detector not in ("hog", "cnn"):
            raise ModelLoadError(f"unknown face detector {detector!r}. Fix: use 'hog' or 'cnn'")
        self._dlib = dlib
        self._detector = (dlib.get_frontal_face_detector() if detector == "hog"
                          else dlib.cnn_face_detection_model_v1(str(folder / DETECTOR_CNN)))
        self._landmarks = dlib.shape_predictor(str(folder / LANDMARKS_5))
        self._descriptor = dlib.face_recognition_model_v1(str(folder / DESCRIPTOR))
        self._lock = threading.Lock()  # dlib's models are not documented as thread-safe
        self.kind, self.upsample, self.max_side = detector, upsample, max_side
        self.name = f"dlib-{dlib.__version__}:{detector}+resnet128"

    def detect(self, image: Image.Image) -> list[DetectedFace]:
        """Every face found, left to right by its centre."""
        rgb, scale = self._prepared(image)
        with self._lock:
            upsample = self.upsample if self.upsample is not None else _auto_upsample(max(rgb.shape[:2]))
            if self.kind == "hog":
                rects, scores, _ = self._detector.run(rgb, upsample, 0.0)
                found = [(r, float(s)) for r, s in zip(rects, scores)]
            else:
                found = [(d.rect, float(d.confidence)) for d in self._detector(rgb, upsample)]
        h, w = rgb.shape[:2]
        faces = []
        for rect, score in found:
            x0, y0 = max(0, rect.left()), max(0, rect.top())
            x1, y1 = min(w, rect.right()), min(h, rect.bottom())
            if x1 > x0 and y1 > y0:
                faces.append(DetectedFace(tuple(int(round(v / scale)) for v in (x0, y0, x1, y1)), round(score, 3)))
        return sorted(faces, key=lambda f: f.box[0] + f.box[2])

    def describe(self, image: Image.Image, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
        """The 128-d identity descriptor of each face box (pixels of ``image``), one row per box."""
        if not boxes:
            return np.zeros((0, 128), dtype=np.float32)
        rgb, scale = self._prepared(image)
        dlib = self._dlib
        out = []
        with self._lock:
            for box in boxes:
                rect = dlib.rectangle(*(int(round(v * scale)) for v in box))
                shape = self._landmarks(rgb, rect)
                out.append(np.asarray(self._descriptor.compute_face_descriptor(rgb, shape), dtype=np.float32))
        return np.stack(out)

    def portrait_descriptor(self, image: Image.Image) -> np.ndarray | None:
        """The descriptor of the biggest face of a portrait, or None when no face is found."""
        faces = self.detect(image)
        if not faces:
            return None
        biggest = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        return self.describe(image, [biggest.box])[0]

    def _prepared(self, image: Image.Image) -> tuple[np.ndarray, float]:
        """RGB pixels, shrunk so the longer side is at most ``max_side`` (cost grows with the area)."""
        scale = min(1.0, self.max_side / max(image.size))
        if scale < 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))), scale


def _auto_upsample(side: int, target: int = 1600) -> int:
    """How many times to double a picture for the detector: until ``target`` px, at most twice."""
    times = 0
    while times < 2 and side * 2 ** times < target:
        times += 1
    return times


class FaceEncoder:
    """The store's face view encoder: one descriptor per entity portrait (the biggest face in it)."""

    def __init__(self, models: FaceModels | None = None) -> None:
        self.models = models or FaceModels()
        self.name = self.models.name
        self.spec = "dlib"

    def encode(self, images: list[Image.Image]) -> list[np.ndarray | None]:
        """A descriptor per portrait, None where no face was found."""
        return [self.models.portrait_descriptor(image) for image in images]


def face_similarity(distance):
    """Map descriptor distances (a number or an array) to scores: 1 at 0, 0.5 at the same-person
    threshold, 0 at twice it."""
    return np.maximum(0.0, 1.0 - np.asarray(distance, dtype=np.float64) / (2 * SAME_PERSON_DISTANCE))


def face_distance(similarity: float) -> float:
    """The descriptor distance behind a :func:`face_similarity` score (twice the threshold and beyond: 0)."""
    return (1.0 - float(similarity)) * 2 * SAME_PERSON_DISTANCE
