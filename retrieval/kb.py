"""Loading a KB file: JSON Lines validated line by line against the entity contract (``vplink.core.records``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from vplink.core.errors import KBError
from vplink.core.jsonl import iter_jsonl
from vplink.core.records import Entity


@dataclass
class SkippedLine:
    """A KB line left out by ``skip_invalid``, with why."""

    line: int
    reason: str


@dataclass
class LoadedKB:
    """Entities read from a KB file, and the lines skipped when invalid lines were allowed."""

    path: Path
    entities: list[Entity]
    skipped: list[SkippedLine] = field(default_factory=list)

    def by_id(self) -> dict[str, Entity]:
        """Entities keyed by id."""
        return {e.id: e for e in self.entities}


def load_kb(path: str | Path, *, skip_invalid: bool = False, check_images: bool = True,
            image_root: str | Path | None = None) -> LoadedKB:
    """Load and validate a KB JSON Lines file; image paths come back absolute.

    Image paths are resolved against the KB file's folder and must stay under ``image_root``
    (default: that folder): a KB cannot make vplink read ``../../etc/passwd``.

    Raises :class:`KBError` naming the file, line and field of the first problem,
    unless ``skip_invalid`` is set, in which case bad lines are collected in ``skipped``.
    """
    path = Path(path)
    root = Path(image_root).resolve() if image_root is not None else path.resolve().parent
    entities: list[Entity] = []
    skipped: list[SkippedLine] = []
    seen: dict[str, int] = {}

    def reject(error: KBError) -> None:
        if not skip_invalid:
            raise error
        skipped.append(SkippedLine(error.line or 0, str(error)))

    for line, obj in _lines(path, skip_invalid, skipped):
        try:
            entity = _validate(path, line, obj)
            if entity.id in seen:
                raise KBError(path, f"duplicate id '{entity.id}' (first on line {seen[entity.id]})", line=line,
                              field="id", fix="give every entity a unique id, or merge the two records")
            if check_images:
                entity.image = [_resolve_image(path, line, image, root) for image in entity.image]
        except KBError as error:
            reject(error)
            continue
        seen[entity.id] = line
        entities.append(entity)
    if not entities:
        raise KBError(path, "the KB holds no valid entity",
                      fix='add one JSON object a line, e.g. {"id": "Q76", "name": "Barack Obama"}')
    return LoadedKB(path=path, entities=entities, skipped=skipped)


def _lines(path: Path, skip_invalid: bool, skipped: list[SkippedLine]):
    """Yield parsed lines; with ``skip_invalid`` a line of broken JSON is skipped, not fatal."""
    def skip(error: KBError) -> None:
        skipped.append(SkippedLine(error.line or 0, str(error)))

    yield from iter_jsonl(path, KBError, on_error=skip if skip_invalid else None)


def _validate(path: Path, line: int, obj: object) -> Entity:
    if not isinstance(obj, dict):
        raise KBError(path, f"expected a JSON object, got {type(obj).__name__}", line=line,
                      fix='write one object a line, e.g. {"id": "Q76", "name": "Barack Obama"}')
    try:
        return Entity.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = ".".join(str(p) for p in first["loc"]) or None
        message = "is required but missing" if first["type"] == "missing" else first["msg"].lower()
        raise KBError(path, message, line=line, field=field_name,
                      fix=_FIXES.get(str(first["loc"][0]) if first["loc"] else "", "see the entity contract in the README")) from None


_FIXES = {
    "id": "give every entity a non-empty string id",
    "name": "give every entity a non-empty name",
    "aliases": "aliases is a list of strings",
    "image": "image is a path relative to the KB file, or a list of them",
    "description": "description is a string",
    "type": "type is a string such as 'human'",
}


def _resolve_image(path: Path, line: int, image: str, root: Path) -> str:
    """An image path resolved against the KB's folder, refused unless it stays under ``root``."""
    resolved = (path.resolve().parent / image).resolve()  # symlinks followed: a link out of root is refused too
    if not resolved.is_relative_to(root):
        raise KBError(path, f"image path {image!r} points outside the image folder {root}", line=line, field="image",
                      fix="give image paths relative to the KB file that stay inside its folder, "
                          "or name the folder that holds the images with --image-root")
    if not resolved.is_file():
        raise KBError(path, f"image file not found: {resolved}", line=line, field="image",
                      fix="paths are relative to the KB file; fix the path or drop the field")
    return str(resolved)
