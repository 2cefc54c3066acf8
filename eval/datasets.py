"""Dataset adapters: every public MEL format in, one ``LabeledQuery`` per mention out."""

from __future__ import annotations

import difflib
import hashlib
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from vplink.agent.visual_prompt import BoxError, check_box_shape, validate_box
from vplink.core.errors import InputFileError
from vplink.core.jsonl import iter_jsonl
from vplink.core.records import LabeledQuery
from vplink.retrieval.images import ImageLoadError, displayed_size
from vplink.retrieval.kb import SkippedLine

#: Format names accepted by ``load_dataset(fmt=...)``; "auto" sniffs one of these.
FORMATS = ("vplink", "melbench-wikimel", "melbench-richpedia", "wikidiverse", "vpwiki")
_ALIASES = {"jsonl": "vplink", "wikimel": "melbench-wikimel", "richpedia": "melbench-richpedia",
            "wikidiverse": "wikidiverse", "vp-wiki": "vpwiki"}
# Public releases spell "not in the KB" in several ways; all of them mean NIL.
_NIL_ANSWERS = {"", "nil", "NIL", "Nil", "none", "None", "null", "-1"}
# VPWiki marks WikiMEL-KB entities with this prefix on their Wikidata id.
_VPWIKI_KB_PREFIX = "wk"


class DatasetError(InputFileError):
    """A dataset file is unreadable, of an unknown format, or holds a malformed record."""

    def __init__(self, path: object, message: str, *, record: object = None, line: int | None = None,
                 field: str | None = None, fix: str | None = None) -> None:
        super().__init__(path, message, line=line, field=field, fix=fix)
        self.record = None if record is None else str(record)
        # Name the record between the line and the field: "file, line 3, record 'b', field 'box': ..."
        where = self.path if line is None else f"{self.path}, line {line}"
        if record is not None:
            where += f", record '{record}'"
        if field:
            where += f", field '{field}'"
        self.args = (f"{where}: {message}" + (f". Fix: {fix}" if fix else ""),)


class MissingImagesError(DatasetError):
    """Examples name image files that are not on disk."""

    def __init__(self, path: object, missing: Sequence[tuple[str, str]]) -> None:
        self.missing = list(missing)
        shown = "; ".join(f"{qid} -> {img}" for qid, img in self.missing[:5])
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(path, f"{len(self.missing)} example(s) name an image file that does not exist: "
                               f"{shown}{more}",
                         fix="point --images (images=) at the folder holding the pictures, or pass "
                             "--allow-missing-images (allow_missing_images=True) to keep them without an image")


@dataclass
class LoadedDataset:
    """Examples read from a dataset file, with its format, its sha1, the images not found and the lines skipped."""

    path: Path
    format: str
    examples: list[LabeledQuery]
    sha1: str
    missing_images: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)


def load_dataset(path: str | Path, fmt: str = "auto", images: str | Path | None = None, *,
                 allow_missing_images: bool = False) -> list[LabeledQuery]:
    """Read a dataset file of any supported format into labeled queries, one per mention.

    A missing image file raises :class:`MissingImagesError` listing every one, unless
    ``allow_missing_images`` keeps those examples with ``image=None``.
    """
    return read_dataset(path, fmt, images, allow_missing_images=allow_missing_images).examples


def read_dataset(path: str | Path, fmt: str = "auto", images: str | Path | None = None, *,
                 allow_missing_images: bool = False, skip_invalid: bool = False) -> LoadedDataset:
    """Like :func:`load_dataset`, also returning the format, the file's sha1 and the missing images.

    ``skip_invalid`` leaves out the invalid lines of a vplink JSON Lines file and lists them in ``skipped``
    (other formats are published files: a bad record there is an error).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found", fix="check the dataset path")
    fmt = _canonical_format(path, fmt)
    skipped: list[SkippedLine] = []

    def skip(error: InputFileError) -> None:
        skipped.append(SkippedLine(error.line or 0, str(error)))

    raw = _read_raw(path, fmt, skip if skip_invalid else None)
    if fmt == "auto":
        fmt = sniff_format(path, raw)
    bases = _image_bases(path, images)
    adapter = _ADAPTERS[fmt]
    if fmt == "vplink":
        adapter = partial(_vplink, bases=bases, on_error=skip if skip_invalid else None)
    elif skip_invalid:
        raise DatasetError(path, f"--skip-invalid (skip_invalid=) reads vplink JSON Lines, not {fmt}",
                           fix="drop it and repair the record the error names, or convert the file to vplink "
                               "JSON Lines")
    examples = list(adapter(path, raw))
    if not examples:
        raise DatasetError(path, "the dataset holds no valid example" if skipped else "the dataset holds no example",
                           fix="check that the file is not empty")
    _check_unique_ids(path, examples)
    missing = _resolve_images(examples, bases)
    if missing and not allow_missing_images:
        raise MissingImagesError(path, missing)
    return LoadedDataset(path=path, format=fmt, examples=examples, sha1=file_sha1(path), missing_images=missing,
                         skipped=sorted(skipped, key=lambda s: s.line))  # JSON errors were found in a first pass


def sample_examples(examples: Sequence[LabeledQuery], limit: int | None = None,
                    seed: int | None = None) -> list[LabeledQuery]:
    """Pick ``limit`` examples: the first ones without a seed, a seeded random subset (in file order) with one."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if seed is None:
        return list(examples[:limit])
    # Keep file order so that a sample reads like the dataset and resumes line up.
    chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in chosen]


def sniff_format(path: str | Path, raw: Any = None) -> str:
    """Name the format of a dataset file from its shape (see :data:`FORMATS`)."""
    path = Path(path)
    if raw is None:
        raw = _read_raw(path, "auto")
    if isinstance(raw, _JsonLines):
        return "vplink"
    records = list(raw.values()) if isinstance(raw, dict) else raw if isinstance(raw, list) else None
    first = next((r for r in records or [] if isinstance(r, dict)), None)
    if first is None:
        raise DatasetError(path, f"cannot tell the format of a JSON {type(raw).__name__} with no record objects",
                           fix=f"pass fmt= (--format) as one of {', '.join(FORMATS)}")
    keys = set(first)
    if isinstance(raw, dict) and "mentions" in keys:
        return "melbench-wikimel" if isinstance(first["mentions"], list) else "melbench-richpedia"
    if isinstance(raw, list) and {"sentence", "mention", "imgPath"} <= keys and isinstance(first["mention"], list):
        return "wikidiverse"
    if isinstance(raw, list) and {"sentence", "mentions", "imgPath"} <= keys:
        return "vpwiki"
    if isinstance(raw, list) and "id" in keys and ("text" in keys or "mention" in keys):
        return "vplink"
    raise DatasetError(path, f"unknown dataset format (first record has keys {sorted(keys)})",
                       fix=f"convert it to vplink JSON Lines, or pass fmt= (--format) as one of {', '.join(FORMATS)}")


def file_sha1(path: str | Path) -> str:
    """The sha1 of a file's bytes, naming the exact data a run used."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_vpwiki_answer(answer: str | None) -> str | None:
    """Map a VPWiki answer to a KB id: ``wkQ20110`` is WikiMEL-KB ``Q20110``; others are Wikidata ids as is."""
    answer = _nil(answer)
    if answer is not None and answer.startswith(_VPWIKI_KB_PREFIX) and answer[len(_VPWIKI_KB_PREFIX):][:1] == "Q":
        return answer[len(_VPWIKI_KB_PREFIX):]
    return answer


# --- reading and sniffing ---------------------------------------------------------------------------------


class _JsonLines(list):
    """Parsed JSON Lines: ``(line, object)`` pairs, kept apart from a JSON list."""


def _canonical_format(path: Path, fmt: str) -> str:
    name = (fmt or "auto").strip().lower()
    name = _ALIASES.get(name, name)
    if name != "auto" and name not in FORMATS:
        raise DatasetError(path, f"unknown dataset format '{fmt}'", fix=f"use auto or one of {', '.join(FORMATS)}")
    return name


def _read_raw(path: Path, fmt: str, on_error: Callable[[InputFileError], None] | None = None) -> Any:
    text_head = path.open("rb").read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    # A JSON document starts with [ or {; JSON Lines has one { per line. Tell them apart by
    # trying the whole file as one document first only when it is not plainly .jsonl.
    if path.suffix.lower() != ".jsonl" and fmt != "vplink" and text_head[:1] in (b"[", b"{"):
        try:
            return json.loads(path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise DatasetError(path, f"not UTF-8 (offset {exc.start})", fix="re-save the file as UTF-8") from None
        except json.JSONDecodeError as exc:
            if text_head[:1] == b"[" or exc.msg != "Extra data":
                raise DatasetError(path, f"invalid JSON ({exc.msg})", line=exc.lineno,
                                   fix="repair the JSON, or convert the file to vplink JSON Lines") from None
    try:
        return _JsonLines(iter_jsonl(path, DatasetError, on_error=on_error))
    except DatasetError:
        raise
    except InputFileError as exc:  # iter_jsonl raises the class it is given; keep ours
        raise DatasetError(path, str(exc)) from None


def _image_bases(path: Path, images: str | Path | None) -> list[Path]:
    if images is not None:
        folder = Path(images).expanduser()
        if not folder.is_dir():
            raise DatasetError(path, f"image folder not found: {folder}", fix="pass an existing folder to --images")
        return [folder.resolve()]
    return [path.parent.resolve(), (path.parent / "images").resolve()]


def _resolve_images(examples: list[LabeledQuery], bases: list[Path]) -> list[tuple[str, str]]:
    """Make every image path absolute; return ``(id, path)`` for those not found."""
    missing: list[tuple[str, str]] = []
    found: dict[str, str | None] = {}  # several mentions share one picture: look it up once
    for example in examples:
        if example.image is None:
            continue
        if example.image not in found:
            found[example.image] = _find_image(example.image, bases)
        resolved = found[example.image]
        if resolved is None:
            missing.append((example.id, str(bases[0] / example.image)))
        example.image = resolved
    return missing


def _find_image(image: str, bases: list[Path]) -> str | None:
    candidate = Path(image).expanduser()
    if candidate.is_absolute():
        return str(candidate) if candidate.is_file() else None
    # Published files name images relative to a folder the user may have flattened: try the
    # path as written, then its bare file name, under each base.
    for base in bases:
        for option in (base / candidate, base / candidate.name):
            if option.is_file():
                return str(option.resolve())
    return None


def _check_unique_ids(path: Path, examples: list[LabeledQuery]) -> None:
    # Resuming a run skips ids already predicted, so two examples may never share one.
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise DatasetError(path, "duplicate example id", record=example.id, field="id",
                               fix="give every example (mention) a unique id")
        seen.add(example.id)


# --- field helpers ----------------------------------------------------------------------------------------


def _nil(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return None if value in _NIL_ANSWERS else value


def _text(path: Path, record: object, obj: dict, key: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        got = "it is missing" if key not in obj else f"got a {type(value).__name__}"
        raise DatasetError(path, f"expected a string, {got}", record=record, field=key,
                           fix=f"give every record a '{key}' string")
    return value


def _as_list(path: Path, record: object, obj: dict, key: str) -> list:
    value = obj.get(key)
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        got = "it is missing" if key not in obj else f"got a {type(value).__name__}"
        raise DatasetError(path, f"expected a list, {got}", record=record, field=key,
                           fix=f"'{key}' is a list with one item per mention")
    return value


def _record_items(path: Path, raw: Any, expect: type, what: str) -> Iterator[tuple[str, dict]]:
    if not isinstance(raw, expect):
        raise DatasetError(path, f"expected a JSON {expect.__name__} of records, got {type(raw).__name__}",
                           fix=f"pass the {what} file, or the right --format")
    items = raw.items() if isinstance(raw, dict) else ((None, r) for r in raw)
    for index, (key, obj) in enumerate(items):
        if not isinstance(obj, dict):
            raise DatasetError(path, f"expected an object, got {type(obj).__name__}", record=key or f"#{index}",
                               fix=f"every {what} record is a JSON object")
        rid = obj.get("id", key if key is not None else index)
        if rid is None or str(rid).strip() == "":
            raise DatasetError(path, "record has no id", record=key or f"#{index}", field="id",
                               fix="give every record an id")
        yield str(rid), obj


# --- adapters ---------------------------------------------------------------------------------------------


def _vplink(path: Path, raw: Any, *, bases: Sequence[Path] = (),
            on_error: Callable[[DatasetError], None] | None = None) -> Iterator[LabeledQuery]:
    rows = raw if isinstance(raw, _JsonLines) else [(None, obj) for obj in raw] if isinstance(raw, list) else None
    if rows is None:
        raise DatasetError(path, f"expected JSON Lines of examples, got a JSON {type(raw).__name__}",
                           fix="write one example object a line, or pass the right --format")
    sizes: dict[str, tuple[int, int] | None] = {}  # several examples share one picture: read its size once
    for index, (line, obj) in enumerate(rows):
        # JSON Lines errors name the line; a JSON list names the record's position.
        where: dict[str, Any] = {"line": line} if line is not None else {"record": f"#{index}"}
        try:
            yield _vplink_example(path, obj, where, bases, sizes)
        except DatasetError as error:
            if on_error is None:
                raise
            on_error(error)


def _vplink_example(path: Path, obj: Any, where: dict[str, Any], bases: Sequence[Path],
                    sizes: dict[str, tuple[int, int] | None]) -> LabeledQuery:
    """One example of a vplink file, checked: id, string fields, an explicit answer, a box that fits its picture."""
    if not isinstance(obj, dict):
        raise DatasetError(path, f"expected a JSON object, got {type(obj).__name__}",
                           fix="write one example object a line", **where)
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise DatasetError(path, "every example needs a non-empty id", field="id",
                           fix='add "id", e.g. "848-2"', **where)
    where = {key: value for key, value in where.items() if key != "record"}
    rid = str(rid)
    for key in ("image", "text", "mention"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise DatasetError(path, f"expected a string or null, got {type(obj[key]).__name__}", record=rid,
                               field=key, fix=f"'{key}' is a string or null", **where)
    if "answer" not in obj:
        # Only an explicit null means NIL: a missing or misspelt key would silently count as a NIL gold.
        close = difflib.get_close_matches("answer", list(obj), n=1, cutoff=0.6)
        hint = f" ({close[0]!r} is there: a misspelling?)" if close else ""
        raise DatasetError(path, f"the 'answer' key is missing{hint}", record=rid, field="answer",
                           fix='add "answer": the gold entity id, or null when the entity is not in the KB', **where)
    answer = obj["answer"]
    if answer is not None and (isinstance(answer, bool) or not isinstance(answer, (str, int))):
        raise DatasetError(path, f"expected an entity id or null, got {type(answer).__name__}", record=rid,
                           field="answer", fix="'answer' is one entity id, or null when it is not in the KB",
                           **where)
    box = _box(path, rid, obj.get("box"), obj.get("image"), where, bases, sizes)
    return LabeledQuery(id=rid, image=obj.get("image"), box=box, text=obj.get("text"),
                        mention=obj.get("mention"), answer=_nil(answer))


def _box(path: Path, rid: str, box: Any, image: str | None, where: dict, bases: Sequence[Path],
         sizes: dict[str, tuple[int, int] | None]) -> list[float] | None:
    """The box, checked as `link` and `/link` check it: its shape, and against its picture when that is readable."""
    if box is not None and not isinstance(box, list):
        # A string such as "1,2,3,4" parses in the CLI; a dataset's box is a JSON list.
        raise DatasetError(path, f"bad box {box!r}", record=rid, field="box",
                           fix="box is [x0, y0, x1, y1] in pixels, or null for the whole image", **where)
    try:
        parsed = check_box_shape(box)
        if parsed is None:
            return None
        if image is not None:
            if image not in sizes:
                found = _find_image(image, list(bases))
                try:
                    sizes[image] = displayed_size(found) if found else None
                except ImageLoadError:
                    sizes[image] = None  # an unreadable picture is the pipeline's to report, query by query
            if sizes[image] is not None:
                validate_box(box, sizes[image])
    except BoxError as error:
        raise DatasetError(path, error.reason, record=rid, field="box", fix=error.fix, **where) from None
    return [float(v) for v in parsed]


def _melbench(path: Path, raw: Any, *, what: str) -> Iterator[LabeledQuery]:
    for rid, obj in _record_items(path, raw, dict, what):
        text = _text(path, rid, obj, "sentence")
        mentions = _as_list(path, rid, obj, "mentions")
        key = "answer" if "answer" in obj else "answers"
        answers = _as_list(path, rid, obj, key)
        if len(answers) != len(mentions):
            raise DatasetError(path, f"{len(mentions)} mention(s) but {len(answers)} answer(s)", record=rid,
                               field=key, fix="give one answer per mention, in the same order")
        image = obj.get("imgPath") or obj.get("image") or f"{rid}.jpg"
        # MELBench ids name a caption; vplink's own WikiMEL files use "<caption>-<n>" per mention.
        # Richpedia keeps one mention per record as a plain string: its record id is the example id.
        single = isinstance(obj.get("mentions"), str)
        for index, (mention, answer) in enumerate(zip(mentions, answers)):
            if not isinstance(mention, str) or not mention.strip():
                raise DatasetError(path, f"mention {index} is empty or not a string", record=rid, field="mentions",
                                   fix="every mention is the word(s) of the sentence that name the entity")
            yield LabeledQuery(id=rid if single else f"{rid}-{index}", image=image, box=None, text=text,
                               mention=mention, answer=_nil(answer))


def _wikimel(path: Path, raw: Any) -> Iterator[LabeledQuery]:
    return _melbench(path, raw, what="MELBench WikiMEL")


def _richpedia(path: Path, raw: Any) -> Iterator[LabeledQuery]:
    return _melbench(path, raw, what="MELBench Richpedia-MEL")


def _wikidiverse(path: Path, raw: Any) -> Iterator[LabeledQuery]:
    for rid, obj in _record_items(path, raw, list, "WikiDiverse"):
        text = _text(path, rid, obj, "sentence")
        mentions = _as_list(path, rid, obj, "mention")
        answers = _as_list(path, rid, obj, "answer")
        if len(answers) != len(mentions):
            raise DatasetError(path, f"{len(mentions)} mention(s) but {len(answers)} answer(s)", record=rid,
                               field="answer", fix="give one answer per mention, in the same order")
        image = _text(path, rid, obj, "imgPath", required=False) or f"mention_{rid}.jpg"
        for index, (mention, answer) in enumerate(zip(mentions, answers)):
            if not isinstance(mention, str) or not mention.strip():
                raise DatasetError(path, f"mention {index} is empty or not a string", record=rid, field="mention",
                                   fix="every mention is the word(s) of the sentence that name the entity")
            yield LabeledQuery(id=f"{rid}-{index}", image=image, box=None, text=text, mention=mention,
                               answer=_nil(answer))


def _vpwiki(path: Path, raw: Any) -> Iterator[LabeledQuery]:
    for rid, obj in _record_items(path, raw, list, "VPWiki"):
        text = _text(path, rid, obj, "sentence")
        mention = obj.get("mentions")
        if isinstance(mention, list):  # a few releases wrap the one mention in a list
            mention = mention[0] if len(mention) == 1 else None
        if mention is not None and not isinstance(mention, str):
            raise DatasetError(path, f"expected a string, got {type(mention).__name__}", record=rid,
                               field="mentions", fix="'mentions' is a string (\" \" when the box replaces it)")
        if "answer" not in obj:  # only an explicit null (or "nil") means NIL
            raise DatasetError(path, "the 'answer' key is missing", record=rid, field="answer",
                               fix='add "answer": the gold entity id, or null when the entity is not in the KB')
        answer = obj["answer"]
        if isinstance(answer, list):
            if len(answer) != 1:
                raise DatasetError(path, f"expected one answer, got {len(answer)}", record=rid, field="answer",
                                   fix="a VPWiki record links one visual prompt to one entity")
            answer = answer[0]
        image = _text(path, rid, obj, "imgPath", required=False) or f"mention_{rid}.jpg"
        # VPWiki blanks the mention to " ": the visual prompt (drawn into the image) replaces it.
        yield LabeledQuery(id=rid, image=image, box=None, text=text,
                           mention=mention.strip() or None if mention else None,
                           answer=resolve_vpwiki_answer(None if answer is None else str(answer)))


_ADAPTERS: dict[str, Callable[[Path, Any], Iterator[LabeledQuery]]] = {
    "vplink": _vplink,
    "melbench-wikimel": _wikimel,
    "melbench-richpedia": _richpedia,
    "wikidiverse": _wikidiverse,
    "vpwiki": _vpwiki,
}
