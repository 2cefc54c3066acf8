"""Faces in the picture (dlib), which of them the box marks, and the marked person's place and row.

dlib's HOG detector finds frontal and slightly turned faces; small (under ~40 px), blurred,
covered or profile faces are often missed, so the count is a lower bound on the people pictured.
The marked face's 128-d identity descriptor goes with the evidence, for the store's face view.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field, computed_field

from vplink.agent.visual_prompt import Box



class Face(BaseModel):
    """One detected face, in pixels of the analysed picture."""

    box: tuple[int, int, int, int]
    #: The detector's own score (dlib HOG: > 0, true faces here mostly 0.3-3).
    score: float
    #: ``score`` squashed into (0, 1) by a logistic centred at 0; a heuristic, not a calibrated probability.
    confidence: float
    #: 0 for the back (highest) row, 1 for the next; None when all faces stand in one row.
    row: int | None = None
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
    #: How many rows the faces stand in (1, or 2 when they sit at clearly different heights).
    rows: int = 1
    #: Where the box's centre falls among the faces' centres, left to right (0 = left of all of them);
    #: the marked person's place when the detector missed their face.
    box_rank: int | None = None
    #: The marked face's 128-d identity descriptor (dlib), for matching KB portraits.
    descriptor: list[float] | None = Field(default=None, repr=False)
    @computed_field  # type: ignore[prop-decorator]
    @property
    def count(self) -> int:
        """How many faces were found in the whole picture."""
        return len(self.faces)

    def describe(self) -> str:
        """One or two factual sentences for a prompt."""
        found = {0: "no face", 1: "1 face"}.get(self.count, f"{self.count} faces")
        text = f"A face detector found {found} in the picture"
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
        row = "" if self.rows < 2 else f" It is in the {'back' if self.faces[self.marked].row == 0 else 'front'} row."
        return (text + f"; {held} inside the marked region. The marked person's face is the {self.position}, "
                f"counting the faces found across the picture {sure}.{row}")


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _squash(score: float) -> float:
    """Map a detector score to (0, 1); dlib's HOG threshold is 0, where true faces and false alarms meet."""
    return float(1.0 / (1.0 + np.exp(-2.0 * score)))


def _area(b: tuple[float, float, float, float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


#: Pictures whose faces are remembered: the boxes of one picture (a group photo, `link --all`) detect once.
FACE_CACHE_SIZE = 32


def picture_key(image: Image.Image) -> str:
    """A hash of a picture's pixels, size and mode: the same picture loaded twice has the same key."""
    digest = hashlib.sha1(image.tobytes())
    digest.update(f"{image.size}{image.mode}".encode())
    return digest.hexdigest()


class FaceDetector:
    """Finds faces and describes them, over :class:`vplink.retrieval.faces.FaceModels`."""

    def __init__(self, models=None) -> None:
        from vplink.retrieval.faces import FaceModels

        self.models = models or FaceModels()
        self.name = self.models.name
        # dlib's detector on an upsampled 512-px picture takes ~0.3 s; each further box of it costs a hash (~1 ms).
        self._found: OrderedDict[str, list[Face]] = OrderedDict()
        self._lock = threading.Lock()

    def detect(self, image: Image.Image) -> list[Face]:
        """All faces in the picture, left to right, each tagged with its row (detected once per picture)."""
        key = picture_key(image)
        with self._lock:
            if key in self._found:
                self._found.move_to_end(key)
                return list(self._found[key])
        found = assign_rows([Face(box=f.box, score=f.score, confidence=round(_squash(f.score), 3))
                             for f in self.models.detect(image)])
        with self._lock:
            self._found[key] = found
            while len(self._found) > FACE_CACHE_SIZE:
                self._found.popitem(last=False)
        return list(found)

    def descriptor(self, image: Image.Image, face: Face) -> list[float]:
        """The identity descriptor of one face."""
        return [round(float(v), 6) for v in self.models.describe(image, [face.box])[0]]


def assign_rows(faces: list[Face]) -> list[Face]:
    """Tag faces with a row when they sit at two clearly different heights (back row higher up).

    Two rows are taken when the vertical gap between face centres, sorted by height, is larger than
    the median face height and each side holds at least two faces.
    """
    if len(faces) < 4:
        return faces
    centres = sorted(((f.box[1] + f.box[3]) / 2, i) for i, f in enumerate(faces))
    height = statistics.median(f.box[3] - f.box[1] for f in faces)
    gaps = [(centres[j + 1][0] - centres[j][0], j) for j in range(1, len(centres) - 2)]
    if not gaps:
        return faces
    gap, at = max(gaps)
    if gap <= height:
        return faces
    back = {i for _, i in centres[: at + 1]}
    return [f.model_copy(update={"row": 0 if i in back else 1}) for i, f in enumerate(faces)]


def locate_faces(faces: list[Face], box: Box | None, detector: str) -> FaceEvidence:
    """Say which faces (sorted left to right) the box holds and where the marked one stands among all."""
    if box is None:
        single = 0 if len(faces) == 1 else None
        return FaceEvidence(detector=detector, whole_image=True, faces=faces, in_box=[], marked=single,
                            position=None, confidence=faces[0].confidence if single is not None else 0.0,
                            rows=2 if any(face.row for face in faces) else 1)
    located = []
    for face in faces:
        overlap = _intersection(face.box, box) / max(_area(face.box), 1.0)
        located.append(face.model_copy(update={"overlap": round(overlap, 3), "in_box": overlap >= 0.5}))
    inside = [i for i, face in enumerate(located) if face.in_box]
    rows = 2 if any(face.row for face in located) else 1
    centre = (box[0] + box[2]) / 2
    box_rank = sum(1 for face in located if (face.box[0] + face.box[2]) / 2 < centre)
    if not inside:
        return FaceEvidence(detector=detector, whole_image=False, faces=located, in_box=[], marked=None,
                            position=None, confidence=0.0, rows=rows, box_rank=box_rank)
    # Several faces in one box: the marked person is most likely the biggest, best-covered, surest one
    # whose face sits in the box's upper half (a box around a person holds the head at its top; a face
    # low in the box is usually someone in front).
    weight = {i: located[i].confidence * located[i].overlap * _area(located[i].box) * _head_height(located[i], box)
              for i in inside}
    marked = max(inside, key=weight.__getitem__)
    share = _area(located[marked].box) / sum(_area(located[i].box) for i in inside)
    confidence = located[marked].confidence * located[marked].overlap * share
    position = f"{ordinal(marked + 1)} of {len(located)} from the left"
    return FaceEvidence(detector=detector, whole_image=False, faces=located, in_box=inside, marked=marked,
                        position=position, confidence=round(confidence, 3), rows=rows, box_rank=box_rank)


def _head_height(face: Face, box: Box) -> float:
    """1 for a face whose centre lies in the upper 55 % of the box, 0.35 below that."""
    centre = (face.box[1] + face.box[3]) / 2
    return 1.0 if (centre - box[1]) <= 0.55 * max(box[3] - box[1], 1.0) else 0.35


def analyse_faces(image: Image.Image, box: Box | None, detector: FaceDetector) -> FaceEvidence:
    """Detect faces in the whole picture, place the box's face among them, and describe that face."""
    evidence = locate_faces(detector.detect(image), box, detector.name)
    if evidence.marked is not None:
        evidence.descriptor = detector.descriptor(image, evidence.faces[evidence.marked])
    return evidence
