"""Lexical name matching: exact and IDF-weighted token overlap between a mention and names/aliases."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable

from vplink.core.records import Entity

_PARENTHETICAL = re.compile(r"\s*\([^)]*\)")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower case, accents stripped, disambiguation brackets dropped: 'Fred (footballer)' → 'fred'."""
    text = _PARENTHETICAL.sub("", text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_TOKEN.findall(text.lower()))


def tokens(text: str) -> list[str]:
    """The normalised word tokens of a text."""
    return normalize(text).split()


class LexicalIndex:
    """An inverted index over entity names and aliases.

    A query scores each entity by the IDF-weighted Dice overlap between the query's tokens and the
    entity's best-matching name or alias; an exact normalised match scores 1. So "Temer" finds
    "Michel Temer", and a rare surname outweighs a common first name.
    """

    def __init__(self, entities: Iterable[Entity]) -> None:
        self._names: list[tuple[str, tuple[str, ...]]] = []  # (entity id, tokens of one name/alias)
        self._postings: dict[str, list[int]] = defaultdict(list)
        self._exact: dict[str, list[int]] = defaultdict(list)
        for entity in entities:
            for label in dict.fromkeys([entity.name, *entity.aliases]):
                toks = tuple(tokens(label))
                if not toks:
                    continue
                slot = len(self._names)
                self._names.append((entity.id, toks))
                self._exact[" ".join(toks)].append(slot)
                for tok in set(toks):
                    self._postings[tok].append(slot)
        total = max(len(self._names), 1)
        self._idf = {tok: math.log(1 + total / len(slots)) for tok, slots in self._postings.items()}
        self._unknown_idf = math.log(1 + total)

    def __len__(self) -> int:
        return len({eid for eid, _ in self._names})

    def idf(self, token: str) -> float:
        """Inverse document frequency of a token over all names and aliases."""
        return self._idf.get(token, self._unknown_idf)

    def search(self, query: str, k: int = 100) -> list[tuple[str, float]]:
        """Entities whose names share tokens with the query, best first, as ``(id, score in [0, 1])``."""
        # Sorted token lists, not sets: a float sum in set order changes with PYTHONHASHSEED, and with it
        # the order of near-equal scores between two runs.
        q_toks = sorted(set(tokens(query)))
        if not q_toks:
            return []
        q_weight = sum(self.idf(t) for t in q_toks)
        best: dict[str, float] = {}
        for slot in {s for t in q_toks for s in self._postings.get(t, ())}:
            eid, n_toks = self._names[slot]
            shared = sum(self.idf(t) for t in q_toks if t in n_toks)
            score = round(2 * shared / (q_weight + sum(self.idf(t) for t in sorted(set(n_toks)))), 9)
            if score > best.get(eid, 0.0):
                best[eid] = score
        for slot in self._exact.get(" ".join(tokens(query)), ()):
            best[self._names[slot][0]] = 1.0
        return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]


def find_names(index: LexicalIndex, text: str, *, min_tokens: int = 2, max_tokens: int = 5) -> list[tuple[str, list[str]]]:
    """KB names and aliases that occur verbatim in a text, in reading order, longest match first.

    Returns ``(matched text, entity ids)`` pairs. Single-word names are left out by default: a
    lone "Scott" in a caption is too ambiguous to call a name of the KB.
    """
    words = tokens(text)
    found: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(words):
        for size in range(min(max_tokens, len(words) - i), min_tokens - 1, -1):
            span = " ".join(words[i:i + size])
            slots = index._exact.get(span)
            if slots:
                found.append((span, list(dict.fromkeys(index._names[s][0] for s in slots))))
                i += size
                break
        else:
            i += 1
    return found


class PersonNameIndex:
    """The KB's people by full name (and alias), by surname and by first name, all normalised.

    A caption's lone "Hiddleston" or "Scott" reaches every person of that surname or first name;
    the caption's context then chooses among them in retrieval.
    """

    def __init__(self, entities: Iterable[Entity]) -> None:
        self._full: dict[str, list[str]] = defaultdict(list)
        self._last: dict[str, list[str]] = defaultdict(list)
        self._first: dict[str, list[str]] = defaultdict(list)
        for entity in entities:
            if not entity.is_person():
                continue
            for label in dict.fromkeys([entity.name, *entity.aliases]):
                toks = [t for t in tokens(label) if t not in _NAME_SUFFIXES]
                if not toks:
                    continue
                self._full[" ".join(toks)].append(entity.id)
                if len(toks) >= 2:
                    self._last[toks[-1]].append(entity.id)
                    self._first[toks[0]].append(entity.id)

    def full_name(self, words: str) -> list[str]:
        """People whose normalised name or alias is exactly ``words`` (two words or more)."""
        return _unique(self._full.get(words, [])) if " " in words else []

    def surname(self, word: str) -> list[str]:
        """People whose name ends with ``word``, or whose one-word name it is."""
        return _unique(self._last.get(word, []) + self._full.get(word, []))

    def first_name(self, word: str) -> list[str]:
        """People whose name starts with ``word``."""
        return _unique(self._first.get(word, []))


_NAME_SUFFIXES = {"jr", "sr", "ii", "iii", "iv"}


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))
