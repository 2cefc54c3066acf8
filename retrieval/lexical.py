"""Lexical name matching: exact and IDF-weighted token overlap between a mention and names/aliases."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

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
        postings: dict[str, list[int]] = defaultdict(list)
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
                    postings[tok].append(slot)
        total = max(len(self._names), 1)
        self._idf = {tok: math.log(1 + total / len(slots)) for tok, slots in postings.items()}
        self._unknown_idf = math.log(1 + total)
        # Arrays for scoring every matching name at once: postings, each name's entity and its summed IDF.
        self._postings = {tok: np.asarray(slots, dtype=np.intp) for tok, slots in postings.items()}
        self._ids = list(dict.fromkeys(eid for eid, _ in self._names))
        row = {eid: i for i, eid in enumerate(self._ids)}
        self._id_array = np.asarray(self._ids, dtype=str)
        self._slot_entity = np.fromiter((row[eid] for eid, _ in self._names), dtype=np.intp, count=len(self._names))
        self._slot_weight = np.fromiter((sum(self._idf[t] for t in sorted(set(toks))) for _, toks in self._names),
                                        dtype=np.float64, count=len(self._names))

    def __len__(self) -> int:
        return len(self._ids)

    def idf(self, token: str) -> float:
        """Inverse document frequency of a token over all names and aliases."""
        return self._idf.get(token, self._unknown_idf)

    def search(self, query: str, k: int = 100) -> list[tuple[str, float]]:
        """Entities whose names share tokens with the query, best first, as ``(id, score in [0, 1])``."""
        q_list = tokens(query)
        # Sorted tokens, not sets: a float sum in set order changes with PYTHONHASHSEED, and with it the
        # order of near-equal scores between two runs (np.bincount below adds in this order too).
        q_toks = sorted(set(q_list))
        if not q_toks:
            return []
        q_weight = sum(self.idf(t) for t in q_toks)
        known = [t for t in q_toks if t in self._postings]
        if not known:
            return []
        slots = np.concatenate([self._postings[t] for t in known])
        idf = np.concatenate([np.full(len(self._postings[t]), self._idf[t]) for t in known])
        # Each name lists a token once, so a name's shared IDF is the sum over the postings that reach it.
        unique, inverse = np.unique(slots, return_inverse=True)
        shared = np.bincount(inverse, weights=idf)
        scores = np.round(2 * shared / (q_weight + self._slot_weight[unique]), 9)
        exact = self._exact.get(" ".join(q_list), ())
        if exact:
            scores[np.isin(unique, exact)] = 1.0
        # An entity scores as its best-matching name or alias.
        entities = self._slot_entity[unique]
        best = np.full(len(self._ids), -1.0)
        np.maximum.at(best, entities, scores)
        found = np.flatnonzero(best > 0)
        order = np.lexsort((self._id_array[found], -best[found]))[:k]
        return [(self._ids[i], float(best[i])) for i in found[order]]

    def search_many(self, queries: Iterable[str], k: int = 100) -> list[list[tuple[str, float]]]:
        """:meth:`search` for each query; a text repeated in the batch is scored once."""
        queries = list(queries)
        done = {text: self.search(text, k) for text in dict.fromkeys(queries)}
        return [done[text] for text in queries]


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
        #: Words in the longest full name or alias: no longer run of words can be one.
        self.max_words = max((len(name.split()) for name in self._full), default=0)

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
