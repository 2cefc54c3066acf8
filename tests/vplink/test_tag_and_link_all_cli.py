"""`vplink tag` over a real archive (the group photos and a broken file) and `vplink link --all`, on a real
portraits store, no model server."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from vplink.agent.archive import CONTACT_SHEET, PEOPLE_CSV, PICTURES, write_people_csv
from vplink.agent.state import PersonRecord, PictureLine
from vplink.cli import app
from vplink.core.errors import InputFileError, VplinkError
from vplink.core.rundir import RunDirError

OBAMA, BIDEN, KIT, ROSE = "Q76", "Q6279", "Q357607", "Q461132"
runner = CliRunner()


def _archive(shared_data: Path, folder: Path) -> Path:
    """The two group photos, a file that is not a picture, and a JSONL listing them with captions."""
    folder.mkdir()
    for name in ("two_people.jpg", "kit_with_rose.jpg"):
        shutil.copy(shared_data / "people" / "images" / name, folder / name)
    (folder / "broken.jpg").write_text("not a picture", encoding="utf-8")
    rows = [{"image": "two_people.jpg", "text": "<script>alert(1)</script> at the White House"},
            {"image": "broken.jpg", "text": None}, {"image": "kit_with_rose.jpg"}]
    (folder / "archive.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def _tag(*args: str):
    return runner.invoke(app, ["tag", *args], terminal_width=300)


def test_tag_names_everyone_resumes_and_refuses_other_settings(portrait_store: Path, shared_data: Path,
                                                                tmp_path: Path) -> None:
    folder = _archive(shared_data, tmp_path / "archive")
    run = tmp_path / "run"
    first = _tag(str(folder / "archive.jsonl"), "--store", str(portrait_store), "--out", str(run), "-k", "5")
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in (run / PICTURES).read_text(encoding="utf-8").splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert set(by_id) == {"two_people.jpg", "broken.jpg", "kit_with_rose.jpg"}
    assert "broken.jpg" in by_id["broken.jpg"]["error"] and not by_id["broken.jpg"]["people"]  # reported, skipped
    named = {pid: [p["answer"] for p in sorted(by_id[pid]["people"], key=lambda p: p["box"][0])]
             for pid in ("two_people.jpg", "kit_with_rose.jpg")}
    assert named == {"two_people.jpg": [OBAMA, BIDEN], "kit_with_rose.jpg": [ROSE, KIT]}
    assert all(set(p) >= {"box", "answer", "confidence", "ranking"} for p in by_id["two_people.jpg"]["people"])
    rows = list(csv.DictReader((run / PEOPLE_CSV).open(encoding="utf-8")))
    assert sorted(r["answer"] for r in rows if r["answer"]) == sorted([OBAMA, BIDEN, ROSE, KIT])
    assert any(r["picture"] == "broken.jpg" and r["error"] for r in rows)
    sheet = (run / CONTACT_SHEET).read_text(encoding="utf-8")
    assert sheet.count("<img src=\"data:image/jpeg;base64,") == 2 and "Rose Leslie" in sheet
    assert "<script>" not in sheet and "&lt;script&gt;" in sheet and "http" not in sheet  # escaped, nothing fetched

    # An interrupted run (the last line torn, one picture lost) picks up where it stopped, the rest untouched.
    kept = (run / PICTURES).read_text(encoding="utf-8").splitlines()
    (run / PICTURES).write_text(kept[0] + "\n" + kept[1][:20], encoding="utf-8")
    again = _tag(str(folder / "archive.jsonl"), "--store", str(portrait_store), "--out", str(run), "-k", "5")
    assert again.exit_code == 0, again.output
    redone = (run / PICTURES).read_text(encoding="utf-8").splitlines()
    assert len(redone) == 3 and redone[0] == kept[0] and sorted(redone) == sorted(kept)

    other = _tag(str(folder / "archive.jsonl"), "--store", str(portrait_store), "--out", str(run), "-k", "7")
    assert isinstance(other.exception, RunDirError) and "k: 5 -> 7" in str(other.exception)


def test_tag_refuses_a_jsonl_line_without_a_picture(portrait_store: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "no picture"}\n', encoding="utf-8")
    out = _tag(str(tmp_path / "a.jsonl"), "--store", str(portrait_store), "--out", str(tmp_path / "run"))
    assert isinstance(out.exception, InputFileError)
    assert "line 1, field 'image'" in str(out.exception) and "Fix:" in str(out.exception)


def test_link_all_prints_one_record_per_person(portrait_store: Path, shared_data: Path, tmp_path: Path) -> None:
    image = shared_data / "people" / "images" / "two_people.jpg"
    out = runner.invoke(app, ["link", str(image), "--all", "--json", "--store", str(portrait_store), "-k", "5",
                              "--html", str(tmp_path / "page.html")])
    assert out.exit_code == 0, out.output
    people = json.loads(out.stdout)
    assert [p["answer"] for p in sorted(people, key=lambda p: p["box"][0])] == [OBAMA, BIDEN]
    assert all(p["ranking"][0]["id"] == p["answer"] and "confidence" in p for p in people)
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "Barack Obama" in page and "Joe Biden" in page and "<img" in page
    refused = runner.invoke(app, ["link", str(image), "--box", "0,0,250,301", "--box", "256,0,512,301",
                                  "--store", str(portrait_store)])
    assert isinstance(refused.exception, VplinkError) and "Fix: add --all" in str(refused.exception)


def test_the_csv_keeps_data_that_looks_like_a_formula_as_text(tmp_path: Path) -> None:
    person = PersonRecord(box=[0, 0, 10, 10], answer="Q1", name='=HYPERLINK("x")', nil=False, confidence=None,
                          changed_by_joint=False, ranking=[])
    write_people_csv(tmp_path / "p.csv", [PictureLine(id="@a.jpg", image="a.jpg", people=[person])])
    row = next(csv.DictReader((tmp_path / "p.csv").open(encoding="utf-8")))
    assert row["name"] == "'=HYPERLINK(\"x\")" and row["picture"] == "'@a.jpg" and row["answer"] == "Q1"
