"""Dataset adapters on the real published samples and real WikiMEL slices; bad inputs give clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vplink.core.errors import VplinkError
from vplink.eval.datasets import (DatasetError, MissingImagesError, load_dataset, read_dataset, resolve_vpwiki_answer,
                                  sample_examples, sniff_format)
from tests.eval.conftest import FORMATS, WIKIMEL


def by_id(examples):
    return {e.id: e for e in examples}


# --- every published format, on its real sample ----------------------------------------------------------


def test_melbench_wikimel_sample_one_example_per_mention():
    loaded = read_dataset(FORMATS / "melbench_wikimel_sample.json", allow_missing_images=True)
    assert loaded.format == "melbench-wikimel"
    examples = by_id(loaded.examples)
    assert len(examples) == 8  # 5 captions holding 1 + 2 + 1 + 2 + 2 mentions
    assert (examples["46351-1"].mention, examples["46351-1"].answer) == ("Powers", "Q256474")
    assert examples["46351-1"].text == "Powers with Noel Harrison in The Girl from U.N.C.L.E."
    assert examples["46351-1"].box is None
    # the images (<id>.jpg) are not in the sample folder: reported, kept without an image
    assert {qid for qid, _ in loaded.missing_images} == set(examples)
    assert loaded.missing_images[0][1].endswith("21717.jpg")
    assert all(e.image is None for e in loaded.examples)


def test_melbench_ids_agree_with_vplink_wikimel_files():
    # The same caption in vplink's own train.jsonl: ids, mentions and answers must line up.
    ours = {}
    with open(WIKIMEL / "train.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith('{"id": "46351-'):
                row = json.loads(line)
                ours[row["id"]] = (row["mention"], row["answer"])
    theirs = by_id(load_dataset(FORMATS / "melbench_wikimel_sample.json", allow_missing_images=True))
    assert ours and all((theirs[qid].mention, theirs[qid].answer) == value for qid, value in ours.items())


def test_melbench_richpedia_sample_strings():
    loaded = read_dataset(FORMATS / "melbench_richpedia_sample.json", allow_missing_images=True)
    assert loaded.format == "melbench-richpedia"
    examples = by_id(loaded.examples)
    assert len(examples) == 5
    # one mention per record, as strings: the record id is the example id
    assert (examples["Q42"].mention, examples["Q42"].answer) == ("Adams", "Q42")
    assert examples["Q42"].text.startswith("Adams co-wrote the Monty Python sketch")


def test_wikidiverse_sample_lists_and_repeated_mentions():
    loaded = read_dataset(FORMATS / "wikidiverse_sample.json", allow_missing_images=True)
    assert loaded.format == "wikidiverse"
    examples = by_id(loaded.examples)
    assert len(examples) == 14
    assert (examples["2-0"].mention, examples["2-0"].answer) == ("President Barack Obama", "Q76")
    # "Star Trek" appears twice in record 4: two examples with distinct ids
    assert examples["4-1"].mention == examples["4-3"].mention == "Star Trek"
    assert examples["4-1"].answer == examples["4-3"].answer == "Q213081"
    assert dict(loaded.missing_images)["0-0"].endswith("mention_0.jpg")


def test_vpwiki_sample_blank_mention_and_wk_ids(kb_names):
    loaded = read_dataset(FORMATS / "vpwiki_test_sample.json", allow_missing_images=True)
    assert loaded.format == "vpwiki"
    examples = by_id(loaded.examples)
    assert len(examples) == 8
    assert all(e.mention is None for e in examples.values())  # the visual prompt replaces the mention
    assert examples["37"].answer == "Q6279"  # a plain Wikidata id stays as it is
    # "wkQ20110" names WikiMEL-KB entity Q20110 (Francesco Totti): the prefix is dropped
    assert examples["16312"].answer == "Q20110"
    assert kb_names["Q20110"] == "Francesco Totti"
    assert kb_names["Q200586"] == "Sheryl Crow" and examples["16324"].answer == "Q200586"
    assert resolve_vpwiki_answer("wkQ19198") == "Q19198" and resolve_vpwiki_answer("nil") is None


def test_missing_images_raise_by_default_listing_them():
    with pytest.raises(MissingImagesError) as info:
        load_dataset(FORMATS / "vpwiki_test_sample.json")
    message = str(info.value)
    assert "vpwiki_test_sample.json" in message and "8 example(s)" in message
    assert "mention_0.jpg" in message and "--images" in message and "--allow-missing-images" in message
    assert len(info.value.missing) == 8


# --- real WikiMEL slices and image resolution --------------------------------------------------------------


def test_vplink_jsonl_with_images_resolves_relative_to_file():
    loaded = read_dataset(WIKIMEL / "with_images.jsonl")
    assert loaded.format == "vplink" and len(loaded.examples) == 69 and not loaded.missing_images
    first = loaded.examples[0]
    assert first.id == "735-0" and first.mention == "Barton MacLane" and first.answer == "Q577621"
    assert Path(first.image).is_absolute() and Path(first.image).is_file() and first.image.endswith("735.jpg")
    assert len(loaded.sha1) == 40


def test_vplink_jsonl_text_only_test_split():
    examples = load_dataset(WIKIMEL / "test.jsonl")
    assert len(examples) == 5131
    assert all(e.image is None for e in examples)  # null images are text-only, not missing
    assert examples[0].id == "31849-0" and examples[0].answer == "Q455462"


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_images_option_and_flattened_folders(tmp_path):
    # Real WikiMEL captions in MELBench form; pictures from the real images folder.
    melbench = write(tmp_path / "mel.json", {
        "735": {"id": "735", "sentence": "Barton MacLane, Tom Kennedy in Man of the Forest",
                "mentions": ["Barton MacLane", "Tom Kennedy"], "answer": ["Q577621", "Q7816437"]}})
    examples = load_dataset(melbench, images=WIKIMEL / "images")
    assert [e.image for e in examples] == [str((WIKIMEL / "images" / "735.jpg").resolve())] * 2
    # VPWiki names images under test_img/; a flat folder of the same files is found by file name
    vpwiki = write(tmp_path / "vp.json", [{"id": "848", "sentence": "s", "mentions": " ", "answer": "wkQ13133",
                                           "imgPath": "test_img/848.jpg"}])
    (example,) = load_dataset(vpwiki, images=WIKIMEL / "images")
    assert example.image.endswith("848.jpg") and example.answer == "Q13133"


def test_default_images_sibling_folder(tmp_path):
    (tmp_path / "images").mkdir()
    os.symlink(WIKIMEL / "images" / "735.jpg", tmp_path / "images" / "735.jpg")
    melbench = write(tmp_path / "mel.json", {"735": {"id": "735", "sentence": "s", "mentions": ["Scott"],
                                                     "answer": ["Q295984"]}})
    (example,) = load_dataset(melbench)
    assert Path(example.image).is_file()


# --- sampling ----------------------------------------------------------------------------------------------


def test_sampling_is_deterministic_and_keeps_file_order():
    examples = load_dataset(WIKIMEL / "with_images.jsonl")
    a = [e.id for e in sample_examples(examples, 10, seed=7)]
    b = [e.id for e in sample_examples(examples, 10, seed=7)]
    c = [e.id for e in sample_examples(examples, 10, seed=8)]
    assert a == b and a != c and len(set(a)) == 10
    order = [e.id for e in examples]
    assert a == sorted(a, key=order.index)
    assert [e.id for e in sample_examples(examples, 3)] == order[:3]
    assert len(sample_examples(examples, None, seed=1)) == 69 == len(sample_examples(examples, 500))


# --- bad inputs ---------------------------------------------------------------------------------------------


def test_unknown_format_names_file_and_fix(tmp_path):
    path = write(tmp_path / "odd.json", [{"foo": 1}])
    with pytest.raises(DatasetError, match=r"odd\.json: unknown dataset format.*Fix: .*--format"):
        load_dataset(path)
    with pytest.raises(VplinkError, match="unknown dataset format 'bogus'"):
        load_dataset(FORMATS / "wikidiverse_sample.json", fmt="bogus")


def test_wrong_explicit_format(tmp_path):
    with pytest.raises(DatasetError, match="expected a JSON list of records, got dict"):
        load_dataset(FORMATS / "melbench_wikimel_sample.json", fmt="wikidiverse")


def test_malformed_melbench_record_names_record_and_field(tmp_path):
    path = write(tmp_path / "mel.json", {"7": {"id": "7", "sentence": "A and B", "mentions": ["A", "B"],
                                               "answer": ["Q1"]}})
    with pytest.raises(DatasetError) as info:
        load_dataset(path, allow_missing_images=True)
    assert "record '7'" in str(info.value) and "field 'answer'" in str(info.value)
    assert "2 mention(s) but 1 answer(s)" in str(info.value) and "Fix:" in str(info.value)
    no_sentence = write(tmp_path / "mel2.json", {"9": {"id": "9", "mentions": ["A"], "answer": ["Q1"]}})
    with pytest.raises(DatasetError, match=r"record '9'.*field 'sentence'"):
        load_dataset(no_sentence, allow_missing_images=True)


def test_bad_jsonl_lines_give_line_numbers(tmp_path):
    good = '{"id": "a", "image": null, "box": null, "text": "t", "mention": "m", "answer": "Q1"}'
    bad_box = '{"id": "b", "image": null, "box": [10, 10, 5, 20], "text": "t", "mention": "m", "answer": "Q1"}'
    path = tmp_path / "d.jsonl"
    path.write_text(good + "\n" + bad_box + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d\.jsonl, line 2, record 'b', field 'box': box \[10, 10, 5, 20\]: inverted corners"):
        load_dataset(path)
    path.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 2: invalid JSON"):
        load_dataset(path)
    path.write_text(good + "\n" + good + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="record 'a', field 'id': duplicate example id"):
        load_dataset(path)
    path.write_text('{"image": null, "text": "t", "answer": "Q1"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 1, field 'id'"):
        load_dataset(path)


def test_missing_file_and_missing_images_folder(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="image folder not found"):
        load_dataset(WIKIMEL / "with_images.jsonl", images=tmp_path / "nowhere")


def test_sniffing_each_sample():
    expected = {"melbench_wikimel_sample.json": "melbench-wikimel", "melbench_richpedia_sample.json":
                "melbench-richpedia", "wikidiverse_sample.json": "wikidiverse", "vpwiki_test_sample.json": "vpwiki"}
    assert {name: sniff_format(FORMATS / name) for name in expected} == expected
    assert sniff_format(WIKIMEL / "dev.jsonl") == "vplink"


def test_vplink_json_list_errors_name_the_record(tmp_path):
    path = write(tmp_path / "d.json", [{"id": "a", "text": "t", "mention": "m", "answer": "Q1"},
                                       {"id": "b", "text": 5, "mention": "m", "answer": "Q1"},
                                       {"text": "t", "mention": "m"}])
    with pytest.raises(DatasetError, match=r"d\.json, record 'b', field 'text': expected a string or null"):
        load_dataset(path)
    path = write(tmp_path / "d.json", [{"id": "a", "text": "t", "mention": "m", "answer": None},
                                       {"text": "t", "mention": "m"}])
    with pytest.raises(DatasetError, match=r"record '#1', field 'id'"):
        load_dataset(path)
    path = write(tmp_path / "d.json", [{"id": 7, "text": "t", "mention": "m", "answer": "NIL"}])
    (example,) = load_dataset(path)
    assert example.id == "7" and example.answer is None  # numeric ids become text; "NIL" is NIL


# --- issue 20: an explicit answer, one box check, --skip-invalid ------------------------------------------

PHOTO = WIKIMEL.parent / "people" / "images" / "two_people.jpg"  # 512 x 301


def _lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_a_missing_answer_key_is_an_error_and_only_null_means_nil(tmp_path):
    nil = {"id": "a", "text": "Barack Obama", "mention": "Obama", "answer": None}
    assert load_dataset(_lines(tmp_path / "ok.jsonl", [nil]))[0].answer is None
    missing = _lines(tmp_path / "missing.jsonl", [nil, {"id": "b", "text": "t", "mention": "m"}])
    with pytest.raises(DatasetError, match=r"missing\.jsonl, line 2, record 'b', field 'answer': the 'answer' key "
                                           r"is missing\. Fix: add \"answer\""):
        load_dataset(missing)
    misspelt = _lines(tmp_path / "misspelt.jsonl", [{"id": "c", "text": "t", "mention": "m", "anwser": "Q76"}])
    with pytest.raises(DatasetError, match=r"line 1, record 'c', field 'answer': .*'anwser' is there: a misspelling"):
        load_dataset(misspelt)
    flag = _lines(tmp_path / "flag.jsonl", [{**nil, "answer": True}])  # a JSON true is no entity id
    with pytest.raises(DatasetError, match=r"field 'answer': expected an entity id or null, got bool"):
        load_dataset(flag)
    vpwiki = tmp_path / "vp.json"
    vpwiki.write_text(json.dumps([{"id": "9", "sentence": "s", "mentions": " ", "imgPath": "x.jpg"}]), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"record '9', field 'answer': the 'answer' key is missing"):
        load_dataset(vpwiki, fmt="vpwiki", allow_missing_images=True)


def test_a_box_far_outside_its_picture_is_refused_as_link_refuses_it(tmp_path):
    row = {"id": "far", "image": str(PHOTO), "box": [0, 0, 100000, 100000], "text": None, "mention": None,
           "answer": "Q76"}
    path = _lines(tmp_path / "boxes.jsonl", [{**row, "id": "ok", "box": [0, 0, 250, 301]}, row])
    with pytest.raises(DatasetError, match=r"line 2, record 'far', field 'box': box \[0, 0, 100000, 100000\]: "
                                           r"outside the 512x301 picture\. Fix: give pixels of this picture"):
        load_dataset(path)
    # The overhang `link` clips (a rounding annotation tool) is accepted here too, and kept as written.
    edge = _lines(tmp_path / "edge.jsonl", [{**row, "box": [256, 0, 513, 302]}])
    assert load_dataset(edge)[0].box == [256.0, 0.0, 513.0, 302.0]
    # Without its picture only the shape can be checked: an inverted box is still refused.
    gone = _lines(tmp_path / "gone.jsonl", [{**row, "image": "nowhere.jpg"}])
    assert load_dataset(gone, allow_missing_images=True)[0].box == [0.0, 0.0, 100000.0, 100000.0]
    inverted = _lines(tmp_path / "inverted.jsonl", [{**row, "image": None, "box": [50, 0, 10, 10]}])
    with pytest.raises(DatasetError, match="inverted corners"):
        load_dataset(inverted)


def test_skip_invalid_keeps_the_valid_lines_and_lists_the_others(tmp_path):
    good = {"id": "a", "image": str(PHOTO), "box": [0, 0, 250, 301], "text": "t", "mention": "m", "answer": "Q76"}
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps({**good, "id": "b", "box": [0, 0, 9999, 9999]}),
                               '{"id": "c", broken', json.dumps({"id": "d", "text": "t"}),
                               json.dumps({**good, "id": "e", "answer": None})]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 3: invalid JSON"):
        read_dataset(path)
    loaded = read_dataset(path, skip_invalid=True)
    assert [e.id for e in loaded.examples] == ["a", "e"]
    assert [s.line for s in loaded.skipped] == [2, 3, 4]
    assert "field 'box'" in loaded.skipped[0].reason and "invalid JSON" in loaded.skipped[1].reason
    assert "field 'answer'" in loaded.skipped[2].reason
    with pytest.raises(DatasetError, match="reads vplink JSON Lines"):
        read_dataset(FORMATS / "vpwiki_test_sample.json", skip_invalid=True)
