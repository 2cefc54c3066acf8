"""Properties of caption parsing on drawn captions (hypothesis), each example under the suite's time bound.

Captions are drawn from the words the parser reacts to (KB names, titles, cue words, connectors, punctuation,
row and side cues) mixed with any text, and a drawn piece may repeat hundreds of times: a long run of
capitalised words, the input that stalled the service (issue 20), comes up often.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vplink.agent.caption_people import MAX_CAPTION_CHARS, MAX_PEOPLE, find_people
from vplink.retrieval.lexical import PersonNameIndex, normalize

from vplink.core.records import Entity

WORDS = ["Barack", "Obama", "Joe", "Biden", "Michelle", "Temer", "Zuma", "Noah", "Beery", "Sr.", "Jr.", "van",
         "de", "la", "President", "Dr.", "Left", "right", "L-R:", "Back", "row", "Front:", "(left)", "(1)",
         "(upper right)", "and", "with", "in", "at", "the", "The", "of", "Center", "Museum", ",", ".", ";", ":",
         "'s", "’s", "Kanjūrō", "ARASHI", "e.", "1933", "\n", "—"]
NAME_WORDS = [w for w in WORDS if w[:1].isupper()]
word = st.one_of(st.sampled_from(WORDS), st.text(max_size=8))
mixed = st.builds(lambda words, sep, repeat: sep.join(words) * repeat,
                  st.lists(word, max_size=12), st.sampled_from([" ", "", ", "]), st.integers(1, 600))
# Capitalised words with nothing between them: one run of up to several thousand words.
runs = st.builds(lambda words, repeat: (" ".join(words) + " ") * repeat,
                 st.lists(st.sampled_from(NAME_WORDS), min_size=1, max_size=6), st.integers(50, 2000))
captions = st.one_of(mixed, runs)


@pytest.fixture(scope="module")
def names(shared_data: Path) -> PersonNameIndex:
    """The name index of the whole WikiMEL KB."""
    with open(shared_data / "wikimel" / "kb.jsonl", encoding="utf-8") as lines:
        return PersonNameIndex(Entity(**json.loads(line)) for line in lines)


@given(caption=captions)
def test_spans_are_ordered_pieces_of_the_caption_within_the_caps(names: PersonNameIndex, caption: str) -> None:
    people = find_people(caption, names, max_ids=5)
    ends = 0
    for span in people.spans:
        assert ends <= span.start < span.end <= min(len(caption), MAX_CAPTION_CHARS)
        assert span.text == caption[span.start:span.end]
        assert 0 < span.person_score <= 1
        assert (span.match == "none") == (not span.entity_ids) and len(span.entity_ids) <= 5
        ends = span.end
    assert len(people.spans) <= MAX_PEOPLE
    assert len({normalize(span.text) for span in people.spans}) == len(people.spans)
    assert (len(caption) > MAX_CAPTION_CHARS) == any("characters long" in note for note in people.notes)


@given(caption=captions.filter(lambda text: len(text) > MAX_CAPTION_CHARS))
def test_a_long_caption_reads_as_its_first_part(names: PersonNameIndex, caption: str) -> None:
    cut = find_people(caption[:MAX_CAPTION_CHARS], names)
    assert find_people(caption, names).spans == cut.spans
