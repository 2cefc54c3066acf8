"""Every person a caption names, in reading order, with the caption's cues about where each one stands.

A span is a run of capitalised words ("Noah Beery", "Temer", "Kanjūrō Arashi") found by its
shape and checked against the KB's own name index: a full name or alias of a person entity, a
surname or a first name of one. Titles ("President Zuma") are dropped from the span; ordering
cues ("Left to right", "Back row") and runs that name an institution ("George W. Bush
Presidential Center") are not people.

Span recall on WikiMEL dev (the hidden mention among the spans): ``benchmarks/bench_caption_people.py``.
No named-entity tagger is used: spaCy's small English model tags "Barton MacLane" and "Noah Beery" as
organisations, and the KB's own names decide better what is a person here.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Literal

from pydantic import BaseModel, Field

from vplink.retrieval.lexical import PersonNameIndex, normalize

Side = Literal["left", "right", "centre"]
Row = Literal["back", "front"]

# Inside a name these lower-case words keep a run going ("Ludwig van Beethoven", "Delia de la Cruz").
_CONNECTORS = {"de", "da", "di", "del", "della", "van", "von", "der", "den", "la", "le", "du", "dos", "das",
               "bin", "ibn", "al", "el", "y", "ter", "ten", "zu"}
_SUFFIXES = {"jr", "sr", "ii", "iii", "iv"}
_TITLES = {"president", "prime", "minister", "king", "queen", "prince", "princess", "sir", "dame", "lord", "lady",
           "dr", "mr", "mrs", "ms", "miss", "senator", "sen", "governor", "gov", "general", "gen", "pope", "saint",
           "st", "chancellor", "premier", "chairman", "secretary", "mayor", "judge", "justice", "captain", "capt",
           "coach", "rev", "reverend", "father", "sister", "brother", "emperor", "empress", "sheikh", "vice",
           "first", "former", "actor", "actress", "singer", "director", "colonel", "col", "lt", "sgt", "admiral",
           "professor", "prof", "ambassador", "commander", "chief", "officer", "rep", "representative", "mrs"}
# Capitalised words that are cues, not names: never a span on their own, dropped from a run's start.
_NOT_NAMES = {"left", "right", "l", "r", "lr", "from", "back", "front", "row", "top", "bottom", "centre", "center",
              "middle", "upper", "lower", "pictured", "the", "a", "an", "in", "at", "on", "with", "and", "of",
              "for", "by", "to", "photo", "photograph", "portrait", "poster", "cover", "gravestone", "statue",
              "standing", "seated", "sitting", "clockwise", "his", "her", "their", "this", "that", "is", "are",
              "was", "were", "as", "during", "after", "before", "circa", "ca", "c", "date", "unknown", "tv", "us",
              "u", "s", "uk", "january", "february", "march", "april", "may", "june", "july", "august", "september",
              "october", "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday",
              "saturday", "sunday"}
# A run that ends in one of these names an institution or a work, not a person ("... Presidential Center").
_INSTITUTIONS = {"center", "centre", "foundation", "library", "museum", "university", "award", "awards",
                 "institute", "hall", "stadium", "airport", "school", "college", "street", "avenue", "park",
                 "theatre", "theater", "prize", "band", "show", "festival", "company", "club", "society",
                 "cup", "trophy", "hotel", "house", "church", "cathedral", "bridge", "building", "tower"}

# A name right after one of these is more often a place, an event or a work than a person.
_PLACE_WORDS = {"in", "at", "of", "from", "to", "for", "on", "the", "against", "near", "into"}

_TOKEN = re.compile(r"[^\W_](?:[\w'’.\-]*[^\W_])?\.?|[^\w\s]", re.UNICODE)
_LEFT_TO_RIGHT = re.compile(r"\b(left to right|l\s*-\s*r|l\s*to\s*r|from (the )?left|clockwise from left)\b", re.I)
_RIGHT_TO_LEFT = re.compile(r"\b(right to left|r\s*-\s*l|from (the )?right)\b", re.I)
_ROW = re.compile(r"\b(back|front|top|bottom|rear|first|second) row\b|\b(front|back|seated|standing)\s*:", re.I)
# Matched at a span's end with ``pattern.match(text, pos)``, which anchors there: no slice of the text per span.
_NUMBER = re.compile(r"\s*\(\s*(?:no\.?\s*|#)?(\d{1,3})\s*\)", re.I)
_SIDE = re.compile(r"\s*\(\s*(far |upper |lower |top |bottom )?(left|right|cent(?:er|re)|middle)\s*\)", re.I)

#: Characters of a caption searched for people: ten times the longest WikiMEL caption (1,007). A longer text
#: is cut here with a note, so one request's parsing is bounded whatever a client sends.
MAX_CAPTION_CHARS = 10_000
#: People kept from one caption (WikiMEL's most is 15): retrieval searches once per person.
MAX_PEOPLE = 32


class PersonSpan(BaseModel):
    """One person the caption names: the words, where they stand in the caption, and their KB matches."""

    text: str
    start: int
    end: int
    #: How the KB knows the words: a full name or alias, a surname, a first name, or not at all.
    match: Literal["name", "surname", "first-name", "none"]
    #: Person entities whose name matches (best evidence first), capped.
    entity_ids: list[str] = Field(default_factory=list)
    #: How sure we are that the span names a person, in (0, 1].
    person_score: float
    #: Cues the caption gives about this person's place in the picture.
    row: Row | None = None
    side: Side | None = None
    #: A number the caption gives right after the name, e.g. a jersey number: "Hope Solo (1)".
    number: str | None = None
    #: Whether the span comes after the caption's ordering cue ("Left to right: ..."), when it has one.
    after_order_cue: bool = False


class CaptionPeople(BaseModel):
    """The person spans of a caption and its ordering cues."""

    spans: list[PersonSpan] = Field(default_factory=list)
    #: "left-to-right" when the caption says so, "right-to-left" likewise, else None (caption order assumed).
    order: Literal["left-to-right", "right-to-left"] | None = None
    #: What was left unread, when the caption was longer than the parser reads or named more people than it keeps.
    notes: list[str] = Field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        """The span texts in reading order."""
        return [span.text for span in self.spans]


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper() or (word[:1].isalpha() and word.isupper())


def _runs(text: str) -> list[list[tuple[str, int, int]]]:
    """Maximal runs of capitalised words (with name connectors inside), broken at punctuation."""
    runs, current = [], []
    for word, start, end in _tokens(text):
        bare = word.rstrip(".")
        if bare and bare[:1].isalpha() and (_is_capitalised(bare) or (current and bare.lower() in _CONNECTORS)):
            current.append((word, start, end))
            # A full stop ends the sentence unless the word is an initial or an abbreviation ("E.", "St.", "Jr.").
            if word.endswith(".") and len(bare) > 3 and "." not in bare:
                runs.append(current)
                current = []
            continue
        if current:
            runs.append(current)
        current = []
    if current:
        runs.append(current)
    return runs


def _clean(run: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Drop cue words and titles from the start, connectors and suffixes from the end, possessives."""
    # Indices, not repeated slicing: a run of thousands of cue words is trimmed in one pass.
    first, last = 0, len(run)
    while first < last and (normalize(run[first][0]) in _NOT_NAMES or normalize(run[first][0]) in _TITLES):
        first += 1
    while first < last and (run[last - 1][0] in _CONNECTORS or normalize(run[last - 1][0]) in _SUFFIXES
                            or normalize(run[last - 1][0]) in _NOT_NAMES):
        last -= 1
    run = run[first:last]
    if run:
        word, start, end = run[-1]
        if word.endswith(".") and len(word) > 4 and "." not in word[:-1]:  # "Zuma." ends a sentence
            word, end = word[:-1], end - 1
            run = run[:-1] + [(word, start, end)]
        for possessive in ("'s", "’s"):
            if word.endswith(possessive):
                run = run[:-1] + [(word[: -len(possessive)], start, end - len(possessive))]
    return run


def _cues(text: str, spans: list[PersonSpan]) -> None:
    """Attach row and side cues to the spans in place."""
    rows = [(m.start(), m.group().lower()) for m in _ROW.finditer(text)]
    starts = [at for at, _ in rows]
    for span in spans:
        before = bisect_left(starts, span.start)  # the row cues that start before the span
        if before:
            label = rows[before - 1][1]
            span.row = "front" if any(w in label for w in ("front", "first", "bottom", "seated")) else "back"
        number = _NUMBER.match(text, span.end)
        if number:
            span.number = number.group(1)
        side = _SIDE.match(text, span.end)
        if side:
            word = side.group(2).lower()
            span.side = "centre" if word in ("center", "centre", "middle") else word  # type: ignore[assignment]


def find_people(text: str | None, names: PersonNameIndex, *, max_ids: int = 10) -> CaptionPeople:
    """The people a caption names, in reading order, with their KB matches and ordering cues."""
    if not text or not text.strip():
        return CaptionPeople()
    notes = []
    if len(text) > MAX_CAPTION_CHARS:
        notes.append(f"the caption is {len(text):,} characters long: only its first {MAX_CAPTION_CHARS:,} were "
                     "searched for people")
        text = text[:MAX_CAPTION_CHARS]
    spans: list[PersonSpan] = []
    seen: set[str] = set()
    for run in _runs(text):
        if normalize(run[-1][0]) in _INSTITUTIONS:
            continue
        run = _clean(run)
        if not run:
            continue
        for piece in _split_by_kb(run, names):
            span = _score(text, piece, names, max_ids)
            if span is not None and normalize(span.text) not in seen:
                seen.add(normalize(span.text))
                spans.append(span)
    if len(spans) > MAX_PEOPLE:
        notes.append(f"the caption names {len(spans)} people: only the first {MAX_PEOPLE} were kept")
        spans = spans[:MAX_PEOPLE]
    _cues(text, spans)
    stated = _LEFT_TO_RIGHT.search(text) or _RIGHT_TO_LEFT.search(text)
    order = None if stated is None else "left-to-right" if _LEFT_TO_RIGHT.search(text) else "right-to-left"
    for span in spans:
        span.after_order_cue = stated is not None and span.start >= stated.start()
    return CaptionPeople(spans=spans, order=order, notes=notes)


def _split_by_kb(run: list[tuple[str, int, int]], names: PersonNameIndex) -> list[list[tuple[str, int, int]]]:
    """A run holding a KB full name and more words ("TV's Love Pete Duel") is split around the name."""
    words = [normalize(w) for w, _, _ in run]
    # No window longer than the KB's longest name can match: without this bound a long run of capitalised
    # words tried every window of every length (cubic in the run; 24 kB of "Barack Obama" took minutes).
    for size in range(min(len(run), names.max_words), 1, -1):
        for i in range(len(run) - size + 1):
            if names.full_name(" ".join(words[i:i + size])):
                pieces = [run[:i], run[i:i + size], run[i + size:]]
                return [p for p in pieces if p]
    return [run]


def _score(text: str, piece: list[tuple[str, int, int]], names: PersonNameIndex,
           max_ids: int) -> PersonSpan | None:
    """A person span for a run, or None when the run is not a person's name."""
    piece = _clean(piece)
    if not piece:
        return None
    start, end = piece[0][1], piece[-1][2]
    words = normalize(text[start:end]).split()
    if not words or all(w in _NOT_NAMES or w in _SUFFIXES for w in words):
        return None
    full = names.full_name(" ".join(words))
    if full:
        match, ids, score = "name", full, 1.0
    elif (surname := names.surname(words[-1])) and (len(words) == 1 or names.first_name(words[0])):
        match, ids, score = "surname", surname, 0.85 if len(words) == 1 else 0.9
    elif len(words) == 1 and (first := names.first_name(words[0])):
        match, ids, score = "first-name", first, 0.5
    else:
        match, ids, score = "none", [], 0.45 if len(words) >= 2 else 0.0
    before = _word_before(text, start)
    if match != "name" and before.lower() in _PLACE_WORDS:
        score *= 0.5  # "in New York", "against the United States", "premiere of We Are Kings"
    if score < 0.2:
        return None
    return PersonSpan(text=text[start:end], start=start, end=end, match=match,  # type: ignore[arg-type]
                      entity_ids=ids[:max_ids], person_score=round(score, 3))


def _word_before(text: str, start: int) -> str:
    """The whitespace-separated word that ends before ``start`` ("" at the start), found without copying the text."""
    end = start
    while end > 0 and text[end - 1].isspace():
        end -= 1
    begin = end
    while begin > 0 and not text[begin - 1].isspace():
        begin -= 1
    return text[begin:end]
