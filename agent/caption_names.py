"""Text evidence: the KB names a caption lists, in order, lined up with the faces left to right."""

from __future__ import annotations

from typing import Any

from vplink.agent.evidence.faces import ordinal
from vplink.retrieval.lexical import LexicalIndex, find_names


def caption_names(index: LexicalIndex, caption: str | None) -> list[tuple[str, list[str]]]:
    """The KB names found verbatim in the caption, in reading order, without repeats."""
    if not caption:
        return []
    seen: set[str] = set()
    out = []
    for span, ids in find_names(index, caption):
        if span not in seen:
            seen.add(span)
            out.append((span, ids))
    return out


def position_guess(names: list[tuple[str, list[str]]], evidence: dict[str, Any] | None) -> str | None:
    """The caption name at the marked face's left-to-right position, when faces and names agree in number.

    Captions of group photos usually list people left to right; this only holds when the detector
    found as many faces as the caption names people, so that is the condition.
    """
    faces = (evidence or {}).get("faces") or {}
    marked, found = faces.get("marked"), len(faces.get("faces") or [])
    if marked is None or found < 2 or found != len(names):
        return None
    return names[marked][0]


def caption_evidence_text(names: list[tuple[str, list[str]]], guess: str | None, evidence: dict[str, Any] | None) -> str:
    """A factual paragraph for the prompt: the names listed, and what the face order suggests."""
    if not names:
        return ""
    listed = "; ".join(f"{i}. {span.title()}" for i, (span, _) in enumerate(names, start=1))
    text = f"Knowledge-base names found in the caption, in order: {listed}."
    if guess:
        marked = (evidence or {}).get("faces", {}).get("marked")
        text += (f" The caption names as many people as faces were found; if it lists them left to right, "
                 f"the marked {ordinal(marked + 1)} face from the left is {guess.title()}.")
    return text
