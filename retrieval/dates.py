"""Temporal consistency: a picture dated year Y shows someone alive in Y.

Captions of photos and portraits often carry a year ("Kapoor at a promotional event in 2012",
"An 1873 portrait of Lord Halifax"), and entity descriptions often carry a life span ("Birth: 1800
... Death: 1885", "born 1950", "(1858–1928)"). When both are known, a candidate whose life excludes
every year of the caption is an unlikely answer; this is how same-surname people are told apart.
"""

from __future__ import annotations

import re

import numpy as np

_YEAR = re.compile(r"(?<![\d.,])(1[0-9]{3}|20[0-9]{2})(s)?(?!\d)")
_BIRTH = re.compile(r"(?:\bBirth:\s*|\bborn\b[^.;()]{0,40}?)(\d{3,4})\b", re.IGNORECASE)
_DEATH = re.compile(r"(?:\bDeath:\s*|\bdied\b[^.;()]{0,40}?)(\d{3,4})\b", re.IGNORECASE)
_SPAN = re.compile(r"\((\d{3,4})\s*[–-]\s*(\d{3,4})\)")
#: Someone whose death year is unknown is taken to live at most this long after birth.
MAX_AGE = 100


def text_years(text: str | None) -> list[tuple[int, int]]:
    """Years a text mentions, as ranges: '2012' → (2012, 2012), '1920s' → (1920, 1929)."""
    if not text:
        return []
    return [(int(y), int(y) + 9) if decade else (int(y), int(y)) for y, decade in _YEAR.findall(text)]


def lifespan(description: str | None) -> tuple[int | None, int | None]:
    """Birth and death years found in a description, each None when absent."""
    if not description:
        return None, None
    span = _SPAN.search(description)
    if span:
        return int(span.group(1)), int(span.group(2))
    birth, death = _BIRTH.search(description), _DEATH.search(description)
    return (int(birth.group(1)) if birth else None), (int(death.group(1)) if death else None)


def life_window(span: tuple[int | None, int | None]) -> tuple[int, int] | None:
    """The years someone can appear in a dated picture: birth to death, an unknown end filled by MAX_AGE."""
    birth, death = span
    if birth is None and death is None:
        return None
    return (birth if birth is not None else death - MAX_AGE), (death if death is not None else birth + MAX_AGE)


def date_consistency(years: list[tuple[int, int]], span: tuple[int | None, int | None]) -> float:
    """+1 when a year of the text falls in the life span, -1 when none does, 0 when either is unknown."""
    window = life_window(span)
    if not years or window is None:
        return 0.0
    return float(date_consistency_many(years, np.array([window[0]]), np.array([window[1]]))[0])


def date_consistency_many(years: list[tuple[int, int]], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """:func:`date_consistency` of many life windows at once; NaN bounds (an unknown span) give 0."""
    ranges = np.asarray(years, dtype=np.float64).reshape(-1, 2)
    overlap = ((ranges[:, :1] <= ends[None, :]) & (ranges[:, 1:] >= starts[None, :])).any(axis=0)
    return np.where(np.isnan(starts), 0.0, np.where(overlap, 1.0, -1.0))
