"""A store's read side as plain files, written once at index time: searching never opens (or copies) Chroma.

Chroma writes to its sqlite file whenever a client opens it, so a reader used to work on a private copy of the
whole store folder (85 MB for WikiMEL, gigabytes at 500k entities, again in every process). ``kb index`` now also
writes, per KB, each view's vectors as a ``.npy`` matrix (rows in id order, memory-mapped by readers), its ids and
the collection's metadata, and the catalogue's entity records. Opening reads one small JSON file.

Layout: ``<store>/vplink-read/<prefix>/`` holds ``views.json`` (written last: its presence marks a finished
snapshot), and per view ``<view>.ids.json`` and ``<view>.npy``; ``catalogue.jsonl`` holds the catalogue's metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: The folder, inside a store folder, that holds the snapshots (one sub-folder per KB prefix).
SNAPSHOT_DIR = "vplink-read"
#: The file whose presence marks a finished snapshot; written last.
VIEWS_FILE = "views.json"
#: Bumped when the layout changes: a reader ignores (and falls back from) a snapshot of another format.
FORMAT = 1


def snapshot_folder(store: str | Path, prefix: str) -> Path:
    """Where a KB's snapshot lives inside a store folder."""
    return Path(store) / SNAPSHOT_DIR / prefix


def snapshot_prefixes(store: str | Path) -> list[str] | None:
    """The KB prefixes the store's snapshots were written for, or None when the store has no usable snapshot.

    Every KB of the store must have one (``kbs.json``, written with each snapshot, lists the store's KBs).
    """
    root = Path(store) / SNAPSHOT_DIR
    try:
        kbs = json.loads((root / "kbs.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not kbs or not all(_finished(root / prefix) for prefix in kbs):
        return None
    return sorted(kbs)


def _finished(folder: Path) -> bool:
    try:
        return json.loads((folder / VIEWS_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def invalidate(store: str | Path, prefix: str) -> None:
    """Mark a KB's snapshot stale before its Chroma collections change (an interrupted run leaves none)."""
    (snapshot_folder(store, prefix) / VIEWS_FILE).unlink(missing_ok=True)


def remove(store: str | Path, prefix: str, kbs: Iterable[str]) -> None:
    """Delete a KB's snapshot and record the KBs the store still holds."""
    shutil.rmtree(snapshot_folder(store, prefix), ignore_errors=True)
    _write_kbs(Path(store) / SNAPSHOT_DIR, kbs)


def write_snapshot(store: str | Path, prefix: str, kbs: Iterable[str], views: dict[str, dict[str, Any]],
                   matrix_of: Callable[[str], tuple[list[str], np.ndarray]],
                   catalogue: Iterable[tuple[str, dict[str, Any]]]) -> Path:
    """Write one KB's snapshot into a temporary folder, then put it in place of the old one.

    ``views`` is ``{view: {"metadata": ..., "collection": id, "count": n}}``; ``matrix_of(view)`` gives the view's
    ids (sorted) and vectors; ``catalogue`` yields ``(id, metadata)`` of the catalogue view in id order.
    """
    root = Path(store) / SNAPSHOT_DIR
    root.mkdir(parents=True, exist_ok=True)
    target = root / prefix
    work = Path(tempfile.mkdtemp(prefix=f".{prefix}.", dir=root))
    try:
        for view in views:
            ids, matrix = matrix_of(view)
            (work / f"{view}.ids.json").write_text(json.dumps(ids), encoding="utf-8")
            np.save(work / f"{view}.npy", np.ascontiguousarray(matrix, dtype=np.float32))
        with (work / "catalogue.jsonl").open("w", encoding="utf-8") as out:
            for eid, meta in catalogue:
                out.write(json.dumps([eid, meta], ensure_ascii=False) + "\n")
        (work / VIEWS_FILE).write_text(json.dumps({"format": FORMAT, "views": views}), encoding="utf-8")
        work.chmod(0o755)  # mkdtemp makes it private; a store is as readable as its folder
        old = root / f".{prefix}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(work, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _write_kbs(root, kbs)
    return target


def _write_kbs(root: Path, kbs: Iterable[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".kbs.", dir=root)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(sorted(set(kbs)), out)
    os.chmod(name, 0o644)
    os.replace(name, root / "kbs.json")


class SnapshotCollection:
    """One view of a KB read from its snapshot, answering the calls :class:`KBStore` makes on a Chroma collection."""

    def __init__(self, folder: Path, view: str, info: dict[str, Any],
                 chroma: Callable[[], Any]) -> None:
        self.folder, self.view = folder, view
        self.metadata: dict[str, Any] = info.get("metadata") or {}
        self.id = info.get("collection", "")
        self._count = int(info.get("count", 0))
        self._chroma = chroma  # the real collection, opened (through a copy) only for an approximate search
        self._lock = threading.Lock()
        self._ids: list[str] | None = None
        self._vectors: np.ndarray | None = None
        self._rows: dict[str, int] | None = None
        self._records: dict[str, dict[str, Any]] | None = None

    def count(self) -> int:
        """How many entities the view holds."""
        return self._count

    def matrix(self) -> tuple[list[str], np.ndarray]:
        """The ids (sorted) and the memory-mapped float32 vectors, rows in id order."""
        with self._lock:
            if self._ids is None:
                self._ids = json.loads((self.folder / f"{self.view}.ids.json").read_text(encoding="utf-8"))
                self._vectors = np.load(self.folder / f"{self.view}.npy", mmap_mode="r")
            return self._ids, self._vectors

    def rows(self) -> dict[str, int]:
        """``{id: row}`` of the matrix."""
        ids, _ = self.matrix()
        with self._lock:
            if self._rows is None:
                self._rows = {eid: row for row, eid in enumerate(ids)}
            return self._rows

    def _metadata_of(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._records is None:
                with (self.folder / "catalogue.jsonl").open(encoding="utf-8") as lines:
                    self._records = dict(json.loads(line) for line in lines)
            return self._records

    def get(self, ids: Sequence[str] | None = None, include: Sequence[str] = (), limit: int | None = None,
            offset: int = 0) -> dict[str, Any]:
        """Chroma's ``get``: ids with their metadata (the catalogue view) or vectors, by id or by page."""
        if ids is None:
            every = self.matrix()[0]
            ids = every[offset:None if limit is None else offset + limit]
        else:
            rows = self.rows()
            ids = [eid for eid in ids if eid in rows]
        out: dict[str, Any] = {"ids": list(ids)}
        if "metadatas" in include:
            records = self._metadata_of()
            out["metadatas"] = [records.get(eid, {}) for eid in ids]
        if "embeddings" in include:
            rows, matrix = self.rows(), self.matrix()[1]
            out["embeddings"] = [matrix[rows[eid]] for eid in ids]
        return out

    def query(self, **kwargs: Any) -> dict[str, Any]:
        """Chroma's approximate search, for views too large to search exactly."""
        return self._chroma().query(**kwargs)
