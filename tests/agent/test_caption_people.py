"""Finding the people a caption names, on real WikiMEL captions and the real WikiMEL KB's names."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from vplink.agent.caption_people import MAX_CAPTION_CHARS, MAX_PEOPLE, CaptionPeople, find_people
from vplink.core.records import Entity
from vplink.retrieval.lexical import PersonNameIndex, normalize


@pytest.fixture(scope="module")
def names(shared_data: Path) -> PersonNameIndex:
    """The name index of the whole WikiMEL KB (18,880 entities, nearly all people)."""
    with open(shared_data / "wikimel" / "kb.jsonl", encoding="utf-8") as lines:
        return PersonNameIndex(Entity(**json.loads(line)) for line in lines)


def test_every_person_in_reading_order_including_a_lone_surname(names: PersonNameIndex) -> None:
    caption = "Barton MacLane, Tom Kennedy, Noah Beery, Sr., Scott and Verna Hillie in Man of the Forest, 1933"
    people = find_people(caption, names)
    assert people.texts[:5] == ["Barton MacLane", "Tom Kennedy", "Noah Beery", "Scott", "Verna Hillie"]
    scott = people.spans[3]
    # "Scott" alone reaches the gold full-name entity (Randolph Scott) among the people of that surname.
    assert scott.match == "surname" and "Q295984" in scott.entity_ids
    assert caption[scott.start:scott.end] == "Scott"


def test_titles_cues_and_sentence_stops_stay_out_of_the_spans(names: PersonNameIndex) -> None:
    people = find_people("BRICS leaders in Hangzhou, China, 3 September 2016. Left to right: Temer, Modi, Xi, "
                         "Putin and Zuma.", names)
    assert people.order == "left-to-right"
    assert people.texts[-4:] == ["Modi", "Xi", "Putin", "Zuma"]
    assert "Left" not in " ".join(people.texts)
    zuma = find_people("President Zuma and his second wife Nompumelelo Ntuli with Barack Obama", names)
    assert zuma.texts[0] == "Zuma" and "Barack Obama" in zuma.texts


def test_an_institution_named_after_a_person_is_not_a_person(names: PersonNameIndex) -> None:
    people = find_people("Barbara Bush joined Michelle Obama at the opening of the George W. Bush Presidential "
                         "Center in Dallas", names)
    assert "George W. Bush" not in people.texts
    assert people.texts[:2] == ["Barbara Bush", "Michelle Obama"]


def test_rows_and_sides_are_attached_to_the_people_they_cover(names: PersonNameIndex) -> None:
    people = find_people("From TV's Love on a Rooftop. Back row, L-R: Pete Duel, Judy Carne. Front: Edith Atwater, "
                         "Herbert Voland (1966)", names)
    rows = {span.text: span.row for span in people.spans}
    assert rows["Pete Duel"] == rows["Judy Carne"] == "back"
    assert rows["Edith Atwater"] == rows["Herbert Voland"] == "front"
    judd = find_people("Judd (upper left) on the cover of Ms. magazine", names)
    assert judd.spans[0].text == "Judd" and judd.spans[0].side == "left"


def test_no_caption_no_people(names: PersonNameIndex) -> None:
    assert find_people(None, names).spans == [] and find_people("  ", names).spans == []
    assert find_people("a dog on a beach at sunset", names).spans == []


def test_span_recall_on_the_boxed_wikimel_mentions(names: PersonNameIndex, repo_fixtures: Path) -> None:
    """The hidden mention is among the spans for every one of the 69 boxed mentions."""
    rows = [json.loads(line) for line in (repo_fixtures / "wikimel_with_images_boxed.jsonl").open(encoding="utf-8")]
    missed = [row["id"] for row in rows
              if not any(normalize(row["mention"]) in normalize(span.text) for span in
                         find_people(row["text"], names).spans)]
    assert missed == []


# --- issue 20: the work is bounded by the caption's length ---------------------------------------------------


class CountingNames(PersonNameIndex):
    """The real name index, counting its full-name lookups (the parser's unit of work)."""

    lookups = 0

    def full_name(self, words: str) -> list[str]:
        self.lookups += 1
        return super().full_name(words)


def _finish(caption: str, names: PersonNameIndex, seconds: float = 120) -> CaptionPeople:
    """find_people in a daemon thread: a caption that stalls it fails the test instead of hanging the suite."""
    found: list[CaptionPeople] = []
    worker = threading.Thread(target=lambda: found.append(find_people(caption, names)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert found, f"find_people still running after {seconds:g} s on a {len(caption):,}-character caption"
    return found[0]


def test_a_long_run_of_capitalised_words_costs_lookups_in_proportion_to_its_length(shared_data: Path) -> None:
    # Every window of every length was tried: 24 kB of "Barack Obama" took minutes (a stalled /link).
    with open(shared_data / "wikimel" / "kb.jsonl", encoding="utf-8") as lines:
        names = CountingNames(Entity(**json.loads(line)) for line in lines)
    counts = []
    for repeats in (100, 200):
        names.lookups = 0
        people = _finish("Barack Obama " * repeats, names)
        assert people.texts[0] == "Barack Obama"
        counts.append(names.lookups)
    assert counts[1] <= 2.2 * counts[0], counts  # linear: twice the words, about twice the lookups


def test_a_megabyte_caption_is_read_up_to_the_cap_with_a_note(names: PersonNameIndex) -> None:
    people = _finish("Barack Obama " * 80_000, names)  # 1 MB, the repro
    assert people.texts[0] == "Barack Obama"
    assert all(span.end <= MAX_CAPTION_CHARS for span in people.spans)
    assert people.notes == [f"the caption is 1,040,000 characters long: only its first {MAX_CAPTION_CHARS:,} "
                            "were searched for people"]
    many = _finish(", ".join(f"Barack Obama{'s' * i}" for i in range(1, 200)), names)
    assert len(many.spans) == MAX_PEOPLE and "only the first 32 were kept" in many.notes[-1]
    assert find_people("Barack Obama and Joe Biden", names).notes == []
