"""ImageNet-1k object labels for the marked region, from EfficientNet-Lite0.

ImageNet-1k has no "person" class: on a person the labels name clothing and props ("suit",
"military uniform", "microphone"), which is still evidence (a uniform, a jersey, a guitar).
"""

from __future__ import annotations

from PIL import Image
from pydantic import BaseModel

from vplink.retrieval.image_encoders import EfficientNetLite0Encoder


class Label(BaseModel):
    """One ImageNet class and its softmax probability."""

    label: str
    probability: float


class LabelEvidence(BaseModel):
    """The classifier's top-k labels for the region."""

    model: str
    labels: list[Label]
    #: Probability of the top label.
    confidence: float

    def describe(self, region: str = "the marked region") -> str:
        """One factual sentence for a prompt."""
        if not self.labels:
            return "The object classifier gave no label."
        shown = ", ".join(f"{label.label} ({label.probability:.2f})" for label in self.labels)
        return f"An ImageNet object classifier (which has no 'person' class) labels {region}: {shown}."


def label_region(crop: Image.Image, classifier: EfficientNetLite0Encoder, top_k: int = 5,
                 min_probability: float = 0.02) -> LabelEvidence:
    """Top-k ImageNet labels of a crop, dropping those below ``min_probability``."""
    ranked = classifier.classify([crop], top_k=top_k)[0]
    labels = [Label(label=name, probability=round(p, 4)) for name, p in ranked if p >= min_probability]
    return LabelEvidence(model=classifier.name, labels=labels, confidence=round(ranked[0][1], 4) if ranked else 0.0)
