"""Faces in the picture (OpenCV Haar cascade), which of them the box holds, and the marked person's place.

The cascade finds frontal faces only: profiles, small, blurred or covered faces are often missed,
and patterns in clothing or foliage are sometimes taken for faces. The count is therefore a lower
bound on the people in the picture, and every detection carries the detector's own score.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, computed_field

from vplink.agent.visual_prompt import Box
from vplink.core.errors import ModelLoadError

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


class Face(BaseModel):
    """One detected face, in pixels of the analysed picture."""

    box: tuple[int, int, int, int]
    #: The cascade's last-stage weight (OpenCV ``levelWeights``): higher is surer; true faces here score ~3-13.
    score: float
    #: ``score`` squashed into (0, 1) by a logistic centred at 2.5; a heuristic, not a calibrated probability.
    confidence: float
    #: Share of the face's area that lies inside the marked box.
    overlap: float = 0.0
    in_box: bool = False


class FaceEvidence(BaseModel):
    """All faces found, left to right, and which one the box marks."""

    detector: str
    whole_image: bool
    #: Every face found, sorted left to right by the centre's x.
    faces: list[Face]
    #: Indices (into ``faces``) of the faces at least half inside the box.
    in_box: list[int]
    #: Index of the marked person's face, or None when the box holds no face.
    marked: int | None
    #: e.g. "2nd of 5 from the left"; None when no face is marked.
    position: str | None
    #: Trust in ``marked``: detector confidence x overlap x the face's share of the faces in the box.
    confidence: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def count(self) -> int:
        """How many faces were found in the whole picture."""
        return len(self.faces)

    def describe(self) -> str:
        """One or two factual sentences for a prompt."""
        found = {0: "no face", 1: "1 face"}.get(self.count, f"{self.count} faces")
        text = f"A frontal-face detector found {found} in the picture"
        if self.count == 0:
            return text + " (it misses profiles and small or covered faces)."
        if self.whole_image:
            if self.count == 1:
                return text + f" (detector confidence {self.faces[0].confidence:.2f})."
            return text + "; no region is marked, so none of them is singled out."
        if self.marked is None:
            return text + "; none of them lies inside the marked region."
        inside = len(self.in_box)
        sure = f"(confidence {self.confidence:.2f})"
        if self.count == 1:
            return text + f"; it lies inside the marked region {sure}."
        held = "1 of them lies" if inside == 1 else f"{inside} of them lie"
        return (text + f"; {held} inside the marked region. The marked person's face is the {self.position}, "
                f"counting the faces found across the picture {sure}.")


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _squash(score: float) -> float:
    """Map a cascade score to (0, 1); centred at 2.5, where true faces and false alarms meet on real photos."""
    return 1.0 / (1.0 + math.exp(-(score - 2.5)))


def _area(b: tuple[float, float, float, float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


class FaceDetector:
    """A Haar-cascade frontal-face detector, loaded once; thread-safe."""

    def __init__(self, cascade: str | Path = DEFAULT_CASCADE, *, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_face_share: float = 0.04, max_side: int = 1024, min_score: float = 0.0) -> None:
        import cv2

        path = Path(cascade)
        if not path.is_file():
            path = Path(cv2.data.haarcascades) / str(cascade)
        classifier = cv2.CascadeClassifier(str(path))
        if classifier.empty():
            raise ModelLoadError(f"{path}: no Haar cascade could be loaded. Fix: install opencv-python-headless<5 "
                                 "(OpenCV 5 dropped the cascades) or pass the path of a cascade XML file")
        self._cv2 = cv2
        self._classifier = classifier
        self._lock = threading.Lock()  # one CascadeClassifier is not safe to share between threads
        self.name = f"opencv-{cv2.__version__}:{path.name}"
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_face_share, self.max_side, self.min_score = min_face_share, max_side, min_score

    def detect(self, image: Image.Image) -> list[Face]:
        """All faces in the picture, left to right, duplicates merged, below ``min_score`` dropped."""
        cv2 = self._cv2
        gray = np.asarray(image.convert("L"))
        # Big pictures are shrunk first: faces stay findable and the cascade's cost falls with the area.
        scale = min(1.0, self.max_side / max(gray.shape))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(gray.shape[1] * scale), round(gray.shape[0] * scale)),
                              interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)  # old and low-contrast press photos are common in MEL data
        smallest = max(20, round(min(gray.shape) * self.min_face_share))
        with self._lock:
            rects, _, weights = self._classifier.detectMultiScale3(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(smallest, smallest), outputRejectLevels=True)
        faces = []
        for (x, y, w, h), weight in zip(np.asarray(rects).reshape(-1, 4), np.ravel(weights)):
            if float(weight) < self.min_score:
                continue
            box = tuple(int(round(v / scale)) for v in (x, y, x + w, y + h))
            faces.append(Face(box=box, score=round(float(weight), 3), confidence=round(_squash(float(weight)), 3)))
        return sorted(_merge_duplicates(faces), key=lambda f: f.box[0] + f.box[2])


def _merge_duplicates(faces: list[Face]) -> list[Face]:
    """Keep the best of detections that mostly cover one another (the cascade's grouping leaves some)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(_intersection(face.box, other.box) < 0.5 * min(_area(face.box), _area(other.box)) for other in kept):
            kept.append(face)
    return kept


def locate_faces(faces: list[Face], box: Box | None, detector: str) -> FaceEvidence:
    """Say which faces (sorted left to right) the box holds and where the marked one stands among all."""
    if box is None:
        single = 0 if len(faces) == 1 else None
        return FaceEvidence(detector=detector, whole_image=True, faces=faces, in_box=[], marked=single,
                            position=None, confidence=faces[0].confidence if single is not None else 0.0)
    located = []
    for face in faces:
        overlap = _intersection(face.box, box) / max(_area(face.box), 1.0)
        located.append(face.model_copy(update={"overlap": round(overlap, 3), "in_box": overlap >= 0.5}))
    inside = [i for i, face in enumerate(located) if face.in_box]
    if not inside:
        return FaceEvidence(detector=detector, whole_image=False, faces=located, in_box=[], marked=None,
                            position=None, confidence=0.0)
    # Several faces in one box: the marked person is most likely the biggest, best-covered, surest one.
    weight = {i: located[i].confidence * located[i].overlap * _area(located[i].box) for i in inside}
    marked = max(inside, key=weight.__getitem__)
    share = _area(located[marked].box) / sum(_area(located[i].box) for i in inside)
    confidence = located[marked].confidence * located[marked].overlap * share
    position = f"{ordinal(marked + 1)} of {len(located)} from the left"
    return FaceEvidence(detector=detector, whole_image=False, faces=located, in_box=inside, marked=marked,
                        position=position, confidence=round(confidence, 3))


def analyse_faces(image: Image.Image, box: Box | None, detector: FaceDetector) -> FaceEvidence:
    """Detect faces in the whole picture and place the box's face among them (box in ``image`` pixels)."""
    return locate_faces(detector.detect(image), box, detector.name)
