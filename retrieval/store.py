"""The Chroma store of a KB: one collection per entity view, embeddings computed by vplink itself."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from vplink.retrieval.progress import tqdm

from vplink.retrieval.errors import EncoderMismatchError, StoreError
from vplink.retrieval.records import Entity

TEXT_VIEWS = ("name", "description")
IMAGE_VIEW = "image"
VIEWS = (*TEXT_VIEWS, IMAGE_VIEW)
# The name view doubles as the entity catalogue: its metadata holds every field a caller shows.
CATALOGUE_VIEW = "name"
# Texts embedded per encode call while indexing: big enough that length-sorted batches pad little and the
# encoder runs without pauses, small enough that an interrupted run loses little (each chunk is upserted at once).
ENCODE_CHUNK = 8192
# What a store that recorded no backend was built with (every store before backends existed).
LEGACY_BACKEND = "torch"


@dataclass
class IndexReport:
    """What one indexing run did, per view."""

    added: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    image_errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per view: added / updated / unchanged / deleted."""
        views = sorted(set(self.added) | set(self.unchanged) | set(self.deleted))
        return "\n".join(
            f"{v}: {self.added.get(v, 0)} added, {self.updated.get(v, 0)} updated, "
            f"{self.unchanged.get(v, 0)} unchanged, {self.deleted.get(v, 0)} deleted" for v in views)


def _connect(location: str | Path):
    """A Chroma client: embedded for a folder, HTTP for an ``http(s)://host:port`` URL."""
    import chromadb

    text = str(location)
    if text.startswith(("http://", "https://")):
        url = urlparse(text)
        try:
            client = chromadb.HttpClient(host=url.hostname or "127.0.0.1", port=url.port or 8000,
                                         ssl=url.scheme == "https")
            client.heartbeat()
        except Exception as exc:
            raise StoreError(f"no Chroma server answers at {text} ({exc}). Fix: start one with "
                             f"`chroma run --path DIR --host {url.hostname} --port {url.port}` or pass a folder") from None
        return client
    Path(text).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=text)


class KBStore:
    """A KB indexed in Chroma: collections ``<prefix>-name``, ``-description`` and ``-image``."""

    def __init__(self, location: str | Path, *, prefix: str = "vplink") -> None:
        self.location = str(location)
        self.prefix = prefix
        self.client = _connect(location)
        self._collections: dict[str, Any] = {}

    @property
    def is_remote(self) -> bool:
        """Whether the store lives on a Chroma server."""
        return self.location.startswith(("http://", "https://"))

    def collection_name(self, view: str) -> str:
        """The Chroma collection that holds one view."""
        return f"{self.prefix}-{view}"

    def _collection(self, view: str, *, create_for: str | None = None, spec: str | None = None,
                    backend: str | None = None):
        """The collection of a view; ``create_for`` (an encoder fingerprint) creates it if missing.

        ``spec`` is how to load that encoder again (a model folder or an image-encoder spec), ``backend``
        what ran it (torch, onnx, onnx-int8), so queries are encoded the same way.
        """
        if view in self._collections:
            return self._collections[view]
        from chromadb.errors import NotFoundError

        name = self.collection_name(view)
        try:
            col = self.client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError):
            if create_for is None:
                return None
            # embedding_function=None: Chroma's default would download a model; we embed ourselves.
            col = self.client.create_collection(name, embedding_function=None,
                                                configuration={"hnsw": {"space": "cosine"}},
                                                metadata={"encoder": create_for, "view": view,
                                                          "spec": spec or "",
                                                          **({"backend": backend} if backend else {})})
        self._collections[view] = col
        return col

    def views(self) -> list[str]:
        """The views this store holds."""
        return [v for v in VIEWS if self._collection(v) is not None]

    def encoder_of(self, view: str) -> str | None:
        """The fingerprint of the encoder that built a view, or None if the view is absent."""
        col = self._collection(view)
        return None if col is None else (col.metadata or {}).get("encoder")

    def encoder_spec(self, view: str) -> str | None:
        """How to load the encoder that built a view again, as recorded at indexing time."""
        col = self._collection(view)
        return None if col is None else (col.metadata or {}).get("spec") or None

    def backend_of(self, view: str) -> str | None:
        """The text backend (torch, onnx, onnx-int8) that built a view; None if the view is absent."""
        col = self._collection(view)
        return None if col is None else (col.metadata or {}).get("backend", LEGACY_BACKEND)

    def check_encoder(self, view: str, encoder_name: str) -> None:
        """Refuse vectors from another encoder than the one that built the view."""
        built_by = self.encoder_of(view)
        if built_by is None:
            raise StoreError(f"the store at {self.location} has no '{view}' view. Fix: run `vplink kb index` first")
        if built_by != encoder_name:
            raise EncoderMismatchError(
                f"the '{view}' view of {self.location} was built with {built_by}, not {encoder_name}. "
                "Fix: query with the same model, or re-index with `vplink kb index --rebuild`")

    def count(self, view: str = CATALOGUE_VIEW) -> int:
        """How many entities a view holds."""
        col = self._collection(view)
        return 0 if col is None else col.count()

    # ----------------------------------------------------------------- indexing

    def index(self, entities: Sequence[Entity], text_encoder, image_encoder=None, *, batch_size: int = 256,
              rebuild: bool = False, progress: bool = True, encode_chunk: int = ENCODE_CHUNK) -> IndexReport:
        """Embed and upsert entities into every view, skipping unchanged ones and deleting removed ones.

        Each chunk of texts is written as soon as it is embedded, so an interrupted run resumes where
        it stopped: the next run finds those entities unchanged.
        """
        report = IndexReport()
        if rebuild:
            self.drop()
        batch_size = min(batch_size, self.client.get_max_batch_size())
        plans: list[tuple[str, Any, dict[str, tuple[str, Any]]]] = []
        for view in TEXT_VIEWS:
            plans.append((view, text_encoder, {e.id: (_text_of(e, view), e) for e in entities}))
        if image_encoder is not None:
            with_images = {e.id: (_image_key(e), e) for e in entities if e.image}
            plans.append((IMAGE_VIEW, image_encoder, with_images))
        for view, encoder, wanted in plans:
            self._sync_view(view, encoder, wanted, batch_size, progress, report, encode_chunk)
        return report

    def _sync_view(self, view: str, encoder, wanted: dict[str, tuple[str, Entity]], batch_size: int,
                   progress: bool, report: IndexReport, encode_chunk: int = ENCODE_CHUNK) -> None:
        existing = self._collection(view)
        if existing is not None and (existing.metadata or {}).get("encoder") != encoder.name:
            raise EncoderMismatchError(
                f"the '{view}' view of {self.location} was built with {(existing.metadata or {}).get('encoder')}, "
                f"not {encoder.name}. Fix: pass the same model, or `--rebuild` to re-embed everything")
        backend = getattr(encoder, "backend", None)
        if existing is not None and backend and (existing.metadata or {}).get("backend", LEGACY_BACKEND) != backend:
            raise EncoderMismatchError(
                f"the '{view}' view of {self.location} was embedded with the "
                f"{(existing.metadata or {}).get('backend', LEGACY_BACKEND)} backend, not {backend}: mixing them "
                "would put slightly different vectors in one index. Fix: pass that --text-backend, or `--rebuild`")
        col = self._collection(view, create_for=encoder.name, spec=getattr(encoder, "spec", None), backend=backend)
        stored = self._stored_hashes(col)
        hashes = {eid: _hash(view, content, entity) for eid, (content, entity) in wanted.items()}
        todo = [eid for eid in wanted if stored.get(eid) != hashes[eid]]
        removed = [eid for eid in stored if eid not in wanted]
        report.added[view] = sum(1 for eid in todo if eid not in stored)
        report.updated[view] = len(todo) - report.added[view]
        report.unchanged[view] = len(wanted) - len(todo)
        report.deleted[view] = len(removed)
        for start in range(0, len(removed), batch_size):
            col.delete(ids=removed[start:start + batch_size])
        bar = tqdm(total=len(todo), desc=f"index {view}", unit="entity", disable=not progress or not todo)
        if view == IMAGE_VIEW:
            for start in range(0, len(todo), batch_size):
                ids, vectors = self._embed_images(todo[start:start + batch_size], wanted, encoder, report)
                self._upsert(col, view, ids, vectors, wanted, hashes)
                bar.update(len(todo[start:start + batch_size]))
        else:
            # Longest texts first across the whole view: every batch the encoder forms pads to similar lengths.
            todo.sort(key=lambda eid: -len(wanted[eid][0]))
            for chunk_start in range(0, len(todo), encode_chunk):
                chunk = todo[chunk_start:chunk_start + encode_chunk]
                vectors = encoder.encode([wanted[eid][0] for eid in chunk])
                for start in range(0, len(chunk), batch_size):
                    ids = chunk[start:start + batch_size]
                    self._upsert(col, view, ids, vectors[start:start + batch_size], wanted, hashes)
                    bar.update(len(ids))
        bar.close()

    @staticmethod
    def _upsert(col, view: str, ids: list[str], vectors: np.ndarray, wanted, hashes: dict[str, str]) -> None:
        if ids:
            col.upsert(ids=ids, embeddings=vectors, documents=[_document(view, wanted[eid]) for eid in ids],
                       metadatas=[_metadata(wanted[eid][1], hashes[eid]) for eid in ids])

    @staticmethod
    def _embed_images(ids: list[str], wanted, encoder, report: IndexReport) -> tuple[list[str], np.ndarray]:
        """Mean image embedding per entity; an unreadable image is reported, not fatal."""
        from vplink.retrieval.images import load_image

        kept, vectors = [], []
        for eid in ids:
            images = []
            for path in wanted[eid][1].image:
                try:
                    images.append(load_image(path))
                except Exception as exc:  # a bad picture must not stop a long indexing run
                    report.image_errors.append(f"{eid}: {exc}")
            if images:
                mean = encoder.encode(images).mean(axis=0)
                vectors.append(mean / (np.linalg.norm(mean) or 1.0))
                kept.append(eid)
        return kept, np.asarray(vectors, dtype=np.float32).reshape(len(kept), -1)

    @staticmethod
    def _stored_hashes(col) -> dict[str, str]:
        return {eid: meta.get("hash", "") for eid, meta in _iter_metadata(col)}

    def drop(self) -> None:
        """Delete every view of this store."""
        for view in VIEWS:
            if self._collection(view) is not None:
                self.client.delete_collection(self.collection_name(view))
        self._collections.clear()

    # ----------------------------------------------------------------- reading

    def query(self, view: str, vectors: np.ndarray, k: int, encoder_name: str) -> list[list[tuple[str, float]]]:
        """Nearest entities of each query vector in one view, as ``(id, cosine similarity)``."""
        self.check_encoder(view, encoder_name)
        col = self._collection(view)
        if len(vectors) == 0:
            return []
        k = min(k, col.count())
        if k == 0:
            return [[] for _ in range(len(vectors))]
        result = col.query(query_embeddings=np.asarray(vectors, dtype=np.float32), n_results=k,
                           include=["distances"])
        return [[(eid, 1.0 - float(dist)) for eid, dist in zip(ids, dists)]
                for ids, dists in zip(result["ids"], result["distances"])]

    def get_entities(self, ids: Sequence[str]) -> dict[str, Entity]:
        """Entities by id, rebuilt from the catalogue view's metadata."""
        col = self._collection(CATALOGUE_VIEW)
        if col is None or not ids:
            return {}
        found = col.get(ids=list(dict.fromkeys(ids)), include=["metadatas"])
        return {eid: _entity_from(eid, meta) for eid, meta in zip(found["ids"], found["metadatas"])}

    def iter_entities(self) -> Iterator[Entity]:
        """Every entity in the store, in pages."""
        col = self._collection(CATALOGUE_VIEW)
        if col is None:
            return
        for eid, meta in _iter_metadata(col):
            yield _entity_from(eid, meta)


def _text_of(entity: Entity, view: str) -> str:
    return entity.name_view() if view == "name" else entity.description_view()


def _image_key(entity: Entity) -> str:
    """Image paths with size and modification time: a changed picture changes the key."""
    parts = []
    for path in entity.image:
        file = Path(path)
        stat = file.stat() if file.exists() else None
        parts.append(f"{path}:{stat.st_size if stat else 0}:{int(stat.st_mtime) if stat else 0}")
    return "|".join(parts)


def _hash(view: str, content: str, entity: Entity) -> str:
    # The catalogue view stores the whole record, so any field change must re-upsert it.
    payload = content + ("\x00" + entity.content_hash() if view == CATALOGUE_VIEW else "")
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


def _document(view: str, planned: tuple[str, Entity]) -> str:
    return planned[1].name if view == IMAGE_VIEW else planned[0]


def _metadata(entity: Entity, content_hash: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": entity.name, "hash": content_hash,
                            "aliases": json.dumps(entity.aliases, ensure_ascii=False),
                            "description": entity.description, "image": json.dumps(entity.image)}
    if entity.type:
        meta["type"] = entity.type
    return meta


def _entity_from(eid: str, meta: dict[str, Any]) -> Entity:
    return Entity(id=eid, name=meta.get("name", eid), aliases=json.loads(meta.get("aliases", "[]")),
                  description=meta.get("description", ""), type=meta.get("type"),
                  image=json.loads(meta.get("image", "[]")))


def _iter_metadata(col, page: int = 5000) -> Iterator[tuple[str, dict[str, Any]]]:
    offset = 0
    while True:
        got = col.get(include=["metadatas"], limit=page, offset=offset)
        if not got["ids"]:
            return
        yield from zip(got["ids"], got["metadatas"])
        offset += len(got["ids"])

