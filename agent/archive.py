"""`vplink tag`: everyone in every picture of an archive linked jointly, resumably, into JSONL, CSV and a contact sheet.

The run folder holds ``pictures.jsonl`` (one line per picture, appended as each finishes), ``run.json`` (the
settings that shape the lines: resuming with others is refused), ``people.csv`` and ``contact_sheet.html``
(both rewritten from the lines at the end of every run). A picture that cannot be read is recorded with its
error and skipped; the run goes on.
"""

from __future__ import annotations

import csv
import hashlib
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vplink.agent.linker import Linker
from vplink.agent.state import PictureLine
from vplink.core.errors import InputFileError, VplinkError
from vplink.core.inflight import in_flight
from vplink.core.jsonl import append_jsonl, atomic_write, iter_jsonl, read_completed_ids
from vplink.core.rundir import claim_run_dir

PICTURES = "pictures.jsonl"
MANIFEST = "run.json"
PEOPLE_CSV = "people.csv"
CONTACT_SHEET = "contact_sheet.html"
#: Picture files a folder input is searched for (lower-case suffixes).
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class PictureTask(BaseModel):
    """One picture of the archive: its id (its path as given), the file, and its caption."""

    id: str
    image: str
    text: str | None = None


def read_archive(source: str | Path) -> list[PictureTask]:
    """The pictures of a folder (every picture file in it and below, sorted) or of a JSONL of {"image", "text"}
    records (paths relative to the file's folder)."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)
        if not files:
            raise VplinkError(f"{source}: no picture ({', '.join(PICTURE_SUFFIXES)}) in this folder. Fix: point "
                              "at the folder of the pictures, or at a JSONL of {\"image\", \"text\"} records")
        return [PictureTask(id=str(p.relative_to(source)), image=str(p)) for p in files]
    tasks = []
    for line, row in iter_jsonl(source):
        if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not row["image"]:
            raise InputFileError(source, "each record needs the picture's path", line=line, field="image",
                                 fix='write {"image": "photos/1.jpg", "text": "caption (optional)"}')
        if row.get("text") is not None and not isinstance(row["text"], str):
            raise InputFileError(source, "the caption must be text", line=line, field="text",
                                 fix="write the caption as a JSON string, or null")
        tasks.append(PictureTask(id=row["image"], image=str(source.parent / row["image"]), text=row.get("text")))
    ids = [task.id for task in tasks]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise InputFileError(source, f"pictures listed twice: {twice}", field="image",
                             fix="list every picture once (resuming goes by the picture's path)")
    return tasks


def input_digest(tasks: list[PictureTask]) -> str:
    """A hash of the archive's pictures and captions: resuming over another archive is refused."""
    digest = hashlib.sha1()
    for task in tasks:
        digest.update(f"{task.id}\0{task.text or ''}\n".encode())
    return digest.hexdigest()


def tag_picture(linker: Linker, task: PictureTask) -> PictureLine:
    """Everyone in one picture, linked jointly; a picture that cannot be linked gives a line with its error."""
    try:
        picture = linker.link_all(task.image, task.text)
    except VplinkError as error:
        return PictureLine(id=task.id, image=task.image, text=task.text, error=str(error))
    return PictureLine(id=task.id, image=task.image, text=task.text, boxes_from=picture.boxes_from,
                       people=picture.people())


def tag_archive(linker: Linker, tasks: list[PictureTask], out: str | Path, *, identity: dict[str, Any],
                concurrency: int = 1, resume: bool = True, progress: bool = True) -> list[PictureLine]:
    """Tag every picture not yet in ``out/pictures.jsonl``, then rewrite the CSV and the contact sheet; returns
    every line of the run."""
    from vplink.core.progress import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {**identity, "input_sha1": input_digest(tasks), "pictures": len(tasks), "linker": linker.versions()}
    claim_run_dir(out, manifest, resume, manifest_name=MANIFEST, records=PICTURES)
    done = read_completed_ids(out / PICTURES)
    todo = [task for task in tasks if task.id not in done]
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="tag", unit="picture", disable=not progress)
    try:
        with open(out / PICTURES, "a", encoding="utf-8") as handle:
            for line in in_flight(partial(tag_picture, linker), todo, concurrency=concurrency, name="vplink-tag"):
                append_jsonl(handle, line)  # on disk before the bar moves: an interrupt loses nothing written
                bar.update(1)
                if line.error:
                    bar.write(f"skipped {line.id}: {line.error}")
    finally:
        bar.close()
    lines = read_lines(out / PICTURES)
    write_people_csv(out / PEOPLE_CSV, lines)
    from vplink.agent.contact_sheet import write_contact_sheet  # lazy: PIL drawing only once the run is done

    write_contact_sheet(out / CONTACT_SHEET, lines)
    return lines


def read_lines(path: Path) -> list[PictureLine]:
    """Every line of a run's ``pictures.jsonl``."""
    return [PictureLine.model_validate(row) for _, row in iter_jsonl(path)] if path.exists() else []


CSV_COLUMNS = ("picture", "person", "x0", "y0", "x1", "y1", "answer", "name", "confidence", "changed_by_joint",
               "second", "error")


def write_people_csv(path: Path, lines: list[PictureLine]) -> None:
    """One row per person (and one per skipped picture, with its error), for spreadsheets; atomically."""
    with atomic_write(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for line in lines:
            if line.error:
                writer.writerow([_cell(line.id), "", "", "", "", "", "", "", "", "", "", _cell(line.error)])
            for number, person in enumerate(line.people, start=1):
                second = person.ranking[1]["id"] if len(person.ranking) > 1 else ""
                writer.writerow([_cell(line.id), number, *(person.box or ["", "", "", ""]), _cell(person.answer or ""),
                                 _cell(person.name or ""), "" if person.confidence is None else person.confidence,
                                 person.changed_by_joint, _cell(second), ""])


def _cell(text: str) -> str:
    """Text a spreadsheet shows as text: one starting like a formula ("=", "+", "-", "@") gets a leading quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
