"""Reading and writing JSON Lines safely: line numbers in errors, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from vplink.core.errors import InputFileError


def iter_jsonl(path: str | Path, error: type[InputFileError] = InputFileError, *,
               on_error: Callable[[InputFileError], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON Lines file.

    A line that is not UTF-8 or not JSON raises ``error`` naming it; given ``on_error``, the error is handed to
    it instead and the line skipped, so one bad line does not end the file (``--skip-invalid``).
    """
    path = Path(path)
    if not path.is_file():
        raise error(path, "file not found", fix="check the path")
    # Split the bytes at line ends only: decoded text's splitlines() would also cut at U+2028 and the other
    # Unicode line breaks, which JSON strings may hold raw.
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise error(path, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)",
                            line=number, fix="re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(path, f"invalid JSON ({exc.msg} at column {exc.colno})", line=number,
                            fix="write one JSON object per line") from None
        except InputFileError as bad:
            if on_error is None:
                raise
            on_error(bad)
            continue
        yield number, obj


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON Lines file into a list of objects (no validation)."""
    return [obj for _, obj in iter_jsonl(path)]


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[TextIO]:
    """Open a temporary sibling of ``path`` for writing and rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """Write rows (dicts or pydantic models) as JSON Lines, atomically."""
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(_dumps(row) + "\n")


def append_jsonl(handle: TextIO, row: Any) -> None:
    """Append one row to an open JSON Lines file and flush it, so an interrupted run loses nothing."""
    handle.write(_dumps(row) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def read_completed_ids(path: str | Path, key: str = "id") -> set[str]:
    """Ids already written to a resumable JSON Lines output; a torn last line is dropped."""
    path = Path(path)
    if not path.exists():
        return set()
    done: set[str] = set()
    good = b""
    for raw in path.read_bytes().splitlines(keepends=True):
        try:
            done.add(str(json.loads(raw)[key]))
            good += raw
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            break  # a line torn by a crash: everything after it is rewritten
    if len(good) != path.stat().st_size:
        with atomic_write(path, "wb") as handle:
            handle.write(good if good.endswith(b"\n") or not good else good + b"\n")
    return done


def write_json(path: str | Path, obj: Any) -> None:
    """Write one JSON document, indented, atomically."""
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")


def _dumps(row: Any) -> str:
    if hasattr(row, "model_dump"):
        row = row.model_dump(mode="json")
    return json.dumps(row, ensure_ascii=False, default=str)
