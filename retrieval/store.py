"""The Chroma store of a KB: one collection per entity view, embeddings computed by vplink itself."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from threadpoolctl import threadpool_limits

from vplink.core.errors import EncoderMismatchError, StoreError
from vplink.core.progress import tqdm
from vplink.core.records import Entity
from vplink.retrieval import snapshot

TEXT_VIEWS = ("name", "description")
IMAGE_VIEW = "image"
#: dlib face descriptors of the entities' portraits, compared by Euclidean distance.
FACE_VIEW = "face"
VIEWS = (*TEXT_VIEWS, IMAGE_VIEW, FACE_VIEW)
# The views whose vectors are compared by L2 distance rather than cosine.
_L2_VIEWS = (FACE_VIEW,)
# The name view doubles as the entity catalogue: its metadata holds every field a caller shows.
CATALOGUE_VIEW = "name"
# Texts embedded per encode call while indexing (the view is sorted longest first, so batches pad little): each
# chunk is written while the next is encoded, and an interrupted run loses at most one chunk.
ENCODE_CHUNK = 2048
#: Rows per Chroma write of a text view: few large writes cost less than many small ones.
WRITE_BATCH = 2048
# What a store that recorded no backend was built with (every store before backends existed).
LEGACY_BACKEND = "torch"
#: Views up to this many entities are searched exactly (the snapshot's memory-mapped vectors: 440 MB of 384-d float32
#: at the limit); larger ones by Chroma's HNSW. Chosen from benchmarks/results/kb_size.json (AMD EPYC, 2 cores): exact
#: search's p95 grows linearly to 83 ms a query and view at 500k entities and would pass 50 ms at ~300k, while HNSW
#: (p95 9 ms) misses 3-6 % of the exact top 20, takes 2 s per 1,000 entities to index and 5 s to open at 500k.
EXACT_LIMIT = 300_000
#: Decimals a similarity (and a fused score) keeps: float noise below this cannot reorder two runs.
SCORE_DECIMALS = 6
#: How far below a query's k-th best float32 score the exact float64 rescoring still looks; float32 products
#: of unit vectors err by ~1e-7, so nothing of the exact top k can fall outside.
PRESELECT_MARGIN = 1e-4
#: Rows beyond k that a batched exact search rescores per query (a query whose pool may miss a near-tie of its
#: k-th best is rescored alone, with every row in the margin).
POOL_EXTRA = 32
#: The file that makes a folder a Chroma store.
CHROMA_FILE = "chroma.sqlite3"


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


def is_url(location: str | Path) -> bool:
    """Whether a store location names a Chroma server rather than a folder."""
    return str(location).startswith(("http://", "https://"))


def _connect(location: str | Path, *, read_only: bool = False):
    """A Chroma client: embedded for a folder, HTTP for an ``http(s)://host:port`` URL.

    Returns ``(client, copy)``: with ``read_only`` a folder is opened through a temporary copy (``copy``, removed
    with the store), because Chroma writes to its files on every open. Readers of a store with a snapshot
    (:mod:`vplink.retrieval.snapshot`) come here only for an approximate search of a view above EXACT_LIMIT.
    """
    import chromadb

    text = str(location)
    if is_url(text):
        url = urlparse(text)
        try:
            client = chromadb.HttpClient(host=url.hostname or "127.0.0.1", port=url.port or 8000,
                                         ssl=url.scheme == "https")
            client.heartbeat()
        except Exception as exc:
            raise StoreError(f"no Chroma server answers at {text} ({exc}). Fix: start one with "
                             f"`chroma run --path DIR --host {url.hostname} --port {url.port}` or pass a folder") from None
        return client, None
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"{folder} is a file, not a store folder. Fix: pass a folder for the store "
                         "(it is created if missing), or move that file away")
    if not read_only:
        folder.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=text), None
    if not (folder / CHROMA_FILE).is_file():
        raise StoreError(f"{folder} is not a vplink store (it has no {CHROMA_FILE}). Fix: build one with "
                         f"`vplink kb index KB.jsonl --store {folder}`, or pass the folder you built")
    # Chroma takes a write lock in its sqlite file and re-saves its HNSW files on every open; a
    # reader must leave the store as it found it, so it reads a private copy.
    copy = Path(tempfile.mkdtemp(prefix="vplink-store-"))
    shutil.copytree(folder, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns(snapshot.SNAPSHOT_DIR))
    return chromadb.PersistentClient(path=str(copy)), copy


class KBStore:
    """A KB indexed in Chroma: collections ``<prefix>-name``, ``-description`` and ``-image``.

    Read-only, a store folder with a snapshot (written by :meth:`index`) is read from its files alone: opening it
    reads one small JSON file and maps the vectors, whatever the KB's size. Without one (stores indexed before
    snapshots existed, or a run that did not finish) it is read through a private copy, as Chroma writes on open.
    """

    def __init__(self, location: str | Path, *, prefix: str = "vplink", read_only: bool = False) -> None:
        self.location = str(location)
        self.prefix = prefix
        self.read_only = read_only
        self._client = None
        folder = Path(self.location)
        #: The KBs the store's snapshots cover; None: this store is read through Chroma.
        self._snapshots = snapshot.snapshot_prefixes(folder) if read_only and not is_url(self.location) \
            and (folder / CHROMA_FILE).is_file() else None
        if self._snapshots is None:
            _ = self.client  # opened now: a location that is no store fails here, with its fix
        self._snapshot_views: dict[str, dict[str, Any]] = {}  # {prefix: {view: what views.json says of it}}
        self._collections: dict[str, Any] = {}
        self._matrices: dict[str, tuple[list[str], np.ndarray]] = {}
        self._rows: dict[str, dict[str, int]] = {}  # {view: {id: row of its matrix}}
        self._lock = threading.Lock()

    @property
    def client(self):
        """The Chroma client (for a snapshot reader, opened on its first approximate search)."""
        if self._client is None:
            self._client, copy = _connect(self.location, read_only=self.read_only)
            if copy is not None:
                weakref.finalize(self, shutil.rmtree, copy, ignore_errors=True)
        return self._client

    @property
    def reads_snapshot(self) -> bool:
        """Whether searches read the store's snapshot files rather than Chroma."""
        return self._snapshots is not None

    @property
    def is_remote(self) -> bool:
        """Whether the store lives on a Chroma server."""
        return is_url(self.location)

    def kb_prefixes(self) -> list[str]:
        """The prefixes of the KBs this store (folder or server) holds, one per catalogue collection."""
        if self._snapshots is not None:
            return list(self._snapshots)
        suffix = f"-{CATALOGUE_VIEW}"
        names = [getattr(c, "name", c) for c in self.client.list_collections()]
        return sorted(n[: -len(suffix)] for n in names if n.endswith(suffix))

    def collection_name(self, view: str) -> str:
        """The Chroma collection that holds one view."""
        return f"{self.prefix}-{view}"

    def _collection(self, view: str, *, create_for: str | None = None, spec: str | None = None,
                    weights: str | None = None, backend: str | None = None):
        """The collection of a view; ``create_for`` (an encoder fingerprint) creates it if missing.

        ``spec`` is how to load that encoder again (a model folder or an image-encoder spec);
        ``weights`` is the hash of its weight files; ``backend`` what ran it (one of text_encoder.BACKENDS),
        so queries are encoded the same way.
        """
        if view in self._collections:
            return self._collections[view]
        if self._snapshots is not None:
            return self._snapshot_collection(view)
        from chromadb.errors import NotFoundError

        name = self.collection_name(view)
        try:
            col = self.client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError):
            if create_for is None:
                return None
            # embedding_function=None: Chroma's default would download a model; we embed ourselves.
            col = self.client.create_collection(name, embedding_function=None,
                                                configuration={"hnsw": {"space": "l2" if view in _L2_VIEWS
                                                                        else "cosine"}},
                                                metadata={"encoder": create_for, "view": view,
                                                          "spec": spec or "",
                                                          **({"weights": weights} if weights else {}),
                                                          **({"backend": backend} if backend else {})})
        self._collections[view] = col
        return col

    def _snapshot_collection(self, view: str) -> snapshot.SnapshotCollection | None:
        """A view read from this KB's snapshot (None when the KB has no such view)."""
        folder = snapshot.snapshot_folder(self.location, self.prefix)
        if self.prefix not in self._snapshot_views:
            found = self.prefix in self._snapshots and json.loads((folder / snapshot.VIEWS_FILE).read_text("utf-8"))
            self._snapshot_views[self.prefix] = found["views"] if found else {}
        info = self._snapshot_views[self.prefix].get(view)
        if info is None:
            return None
        col = snapshot.SnapshotCollection(folder, view, info, lambda: self.client.get_collection(
            self.collection_name(view), embedding_function=None))
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
        """The text backend (one of text_encoder.BACKENDS) that built a view; None if the view is absent."""
        col = self._collection(view)
        return None if col is None else (col.metadata or {}).get("backend", LEGACY_BACKEND)

    def check_encoder(self, view: str, encoder_name: str, weights: str | None = None) -> None:
        """Refuse vectors from another encoder (or the same one with other weights) than built the view."""
        built_by = self.encoder_of(view)
        if built_by is None:
            raise StoreError(f"the store at {self.location} has no '{view}' view. Fix: run `vplink kb index` first")
        if built_by != encoder_name:
            raise EncoderMismatchError(
                f"the '{view}' view of {self.location} was built with {built_by}, not {encoder_name}. "
                "Fix: query with the same model, or re-index with `vplink kb index --rebuild`")
        built_weights = self._meta(view).get("weights")
        if weights and built_weights and built_weights != weights:
            raise EncoderMismatchError(
                f"the '{view}' view of {self.location} was built with {built_by} weights {built_weights}, but the "
                f"model at hand has weights {weights} (same name, other weight files). Fix: pass the model the "
                "store was built with (--text-model), or re-index with `vplink kb index --rebuild`")

    def _meta(self, view: str) -> dict[str, Any]:
        col = self._collection(view)
        return dict((col.metadata or {}) if col is not None else {})

    def _set_meta(self, view: str, **values: Any) -> None:
        col = self._collection(view)
        col.modify(metadata={**(col.metadata or {}), **values})

    def problems(self) -> list[str]:
        """Why this store may not hold every entity in every view (an empty list when it is complete)."""
        if self._collection(CATALOGUE_VIEW) is None:
            return []
        meta = self._meta(CATALOGUE_VIEW)
        counts = {view: self.count(view) for view in self.views()}
        out = []
        if meta.get("complete") is False:
            out.append("its last indexing run did not finish")
        if counts.get("description", 0) != counts[CATALOGUE_VIEW]:
            out.append(f"its views hold different numbers of entities ({_counts_text(counts)})")
        if meta.get("complete") and meta.get("entities") not in (None, counts[CATALOGUE_VIEW]):
            out.append(f"it holds {counts[CATALOGUE_VIEW]} entities but indexing recorded {meta.get('entities')}")
        if meta.get("complete") and meta.get("image_entities") not in (None, counts.get(IMAGE_VIEW, 0)):
            out.append(f"its image view holds {counts.get(IMAGE_VIEW, 0)} entities but indexing recorded "
                       f"{meta.get('image_entities')}")
        if meta.get("complete") and meta.get("face_entities") not in (None, counts.get(FACE_VIEW, 0)):
            out.append(f"its face view holds {counts.get(FACE_VIEW, 0)} entities but indexing recorded "
                       f"{meta.get('face_entities')}")
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this store's content: location, prefix, collections, encoders, weights and counts."""
        location = self.location if self.is_remote else str(Path(self.location).resolve())
        views = {}
        for view in self.views():
            meta = self._meta(view)
            views[view] = {"collection": str(self._collection(view).id), "encoder": meta.get("encoder"),
                           "weights": meta.get("weights"), "count": self.count(view)}
        return {"location": location, "prefix": self.prefix, "content": self._meta(CATALOGUE_VIEW).get("content"),
                "views": views}

    def count(self, view: str = CATALOGUE_VIEW) -> int:
        """How many entities a view holds."""
        col = self._collection(view)
        return 0 if col is None else col.count()

    # ----------------------------------------------------------------- indexing

    def index(self, entities: Sequence[Entity], text_encoder, image_encoder=None, *, face_encoder=None,
              batch_size: int = 256, rebuild: bool = False, progress: bool = True,
              encode_chunk: int = ENCODE_CHUNK) -> IndexReport:
        """Embed and upsert entities into every view, skipping unchanged ones and deleting removed ones.

        Each chunk of texts is written as soon as it is embedded, so an interrupted run resumes where
        it stopped: the next run finds those entities unchanged.
        """
        if self.read_only:
            raise StoreError(f"the store at {self.location} was opened for reading. Fix: open it with "
                             "KBStore(location) to index")
        report = IndexReport()
        if not self.is_remote:  # the snapshot is about to be out of date; an interrupted run leaves none
            snapshot.invalidate(self.location, self.prefix)
        if rebuild:
            self.drop()
        batch_size = min(batch_size, self.client.get_max_batch_size())
        plans: list[tuple[str, Any, dict[str, tuple[str, Any]]]] = []
        for view in TEXT_VIEWS:
            plans.append((view, text_encoder, {e.id: (_text_of(e, view), e) for e in entities}))
        if image_encoder is not None:
            with_images = {e.id: (_image_key(e), e) for e in entities if e.image}
            plans.append((IMAGE_VIEW, image_encoder, with_images))
        if face_encoder is not None:
            plans.append((FACE_VIEW, face_encoder, {e.id: (_image_key(e), e) for e in entities if e.image}))
        self._prepare_views(plans)
        self._matrices.clear()  # vectors read for searching are about to change
        self._rows.clear()
        # Complete only once every view holds every entity: an interrupted run leaves this False.
        self._set_meta(CATALOGUE_VIEW, complete=False)
        for view, encoder, wanted in plans:
            self._sync_view(view, encoder, wanted, batch_size, progress, report, encode_chunk)
        content = hashlib.sha1("\n".join(sorted(f"{e.id}\t{e.content_hash()}" for e in entities)).encode())
        self._set_meta(CATALOGUE_VIEW, complete=True, entities=len(entities), content=content.hexdigest()[:16],
                       image_entities=self.count(IMAGE_VIEW), face_entities=self.count(FACE_VIEW))
        self.write_snapshot()
        return report

    def write_snapshot(self) -> None:
        """Write the files readers search (:mod:`vplink.retrieval.snapshot`); a Chroma server needs none."""
        if self.is_remote:
            return
        views = {view: {"metadata": self._meta(view), "collection": str(self._collection(view).id),
                        "count": self.count(view)} for view in self.views()}
        catalogue = sorted(_iter_metadata(self._collection(CATALOGUE_VIEW)))
        snapshot.write_snapshot(self.location, self.prefix, self.kb_prefixes(), views, self._matrix, catalogue)
        self._matrices.clear()  # read for the snapshot only: an indexing process need not keep them
        self._rows.clear()

    def _prepare_views(self, plans: list[tuple[str, Any, dict]]) -> None:
        """Check every view's encoder and weights before anything is written, then create missing views."""
        for view, encoder, _ in plans:
            weights = getattr(encoder, "weights", None)
            if self._collection(view) is not None:
                self.check_encoder(view, encoder.name, weights)
                self._check_backend(view, getattr(encoder, "backend", None))
        for view, encoder, _ in plans:
            weights = getattr(encoder, "weights", None)
            self._collection(view, create_for=encoder.name, spec=getattr(encoder, "spec", None), weights=weights,
                             backend=getattr(encoder, "backend", None))
            if weights and not self._meta(view).get("weights"):
                self._set_meta(view, weights=weights)  # a store from before weight fingerprints adopts them

    def _check_backend(self, view: str, backend: str | None) -> None:
        """Refuse to add vectors from another text backend to a view (mixed vectors in one index)."""
        built_with = self.backend_of(view)
        if backend and built_with != backend:
            raise EncoderMismatchError(
                f"the '{view}' view of {self.location} was embedded with the {built_with} backend, not {backend}: "
                "mixing them would put slightly different vectors in one index. Fix: pass that --text-backend, "
                "or `--rebuild`")

    def _sync_view(self, view: str, encoder, wanted: dict[str, tuple[str, Entity]], batch_size: int,
                   progress: bool, report: IndexReport, encode_chunk: int = ENCODE_CHUNK) -> None:
        col = self._collection(view)  # checked against this encoder, or created, by _prepare_views
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
        # A context: the bar ends its line before an error or Ctrl-C message is printed below it.
        with tqdm(total=len(todo), desc=f"index {view}", unit="entity", disable=not progress or not todo) as bar:
            if view in (IMAGE_VIEW, FACE_VIEW):
                for start in range(0, len(todo), batch_size):
                    # Image vectors are compared by cosine (normalised); face descriptors by distance (as they are).
                    ids, vectors = self._embed_pictures(todo[start:start + batch_size], wanted, encoder, report,
                                                        normalise=view == IMAGE_VIEW)
                    self._upsert(col, view, ids, vectors, wanted, hashes)
                    bar.update(len(todo[start:start + batch_size]))
            else:
                # Longest texts first across the whole view: every batch the encoder forms pads to similar lengths.
                todo.sort(key=lambda eid: -len(wanted[eid][0]))
                rows = min(WRITE_BATCH, self.client.get_max_batch_size())

                def write(chunk: list[str], vectors: np.ndarray) -> None:
                    for start in range(0, len(chunk), rows):
                        self._upsert(col, view, chunk[start:start + rows], vectors[start:start + rows], wanted, hashes)
                        bar.update(len(chunk[start:start + rows]))

                # A chunk is handed to a writer thread before the next one is encoded. Chroma's upsert holds the GIL
                # for the whole call, so the next chunk's tokenising waits for it and the overlap is small (a
                # profile of the WikiMEL index). At most one write is in flight, and leaving the block (an error,
                # Ctrl-C) waits for it: what was encoded is kept.
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-write") as writer:
                    pending: Future | None = None
                    for chunk_start in range(0, len(todo), encode_chunk):
                        chunk = todo[chunk_start:chunk_start + encode_chunk]
                        vectors = encoder.encode([wanted[eid][0] for eid in chunk])
                        if pending is not None:
                            pending.result()  # a failed write stops the run here
                        pending = writer.submit(write, chunk, vectors)
                    if pending is not None:
                        pending.result()

    @staticmethod
    def _upsert(col, view: str, ids: list[str], vectors: np.ndarray, wanted, hashes: dict[str, str]) -> None:
        """Write vectors with what the store reads back: every field of the entity in the catalogue view, only
        the content hash elsewhere. No documents: nothing searches Chroma's text, and its full-text index
        slowed every write."""
        if ids:
            col.upsert(ids=ids, embeddings=vectors,
                       metadatas=[_metadata(wanted[eid][1], hashes[eid]) if view == CATALOGUE_VIEW
                                  else {"hash": hashes[eid]} for eid in ids])

    @staticmethod
    def _embed_pictures(ids: list[str], wanted, encoder, report: IndexReport, *,
                        normalise: bool) -> tuple[list[str], np.ndarray]:
        """Mean embedding of each entity's pictures; an unreadable picture, or one in which the encoder
        finds nothing (a portrait without a face), is reported, not fatal."""
        from vplink.retrieval.images import load_image

        kept, vectors = [], []
        for eid in ids:
            found = []
            for path in wanted[eid][1].image:
                try:
                    vector = encoder.encode([load_image(path)])[0]
                except Exception as exc:  # a bad picture must not stop a long indexing run
                    report.image_errors.append(f"{eid}: {exc}")
                    continue
                if vector is None:
                    report.image_errors.append(f"{eid}: no face found in {path}")
                else:
                    found.append(np.asarray(vector, dtype=np.float32))
            if found:
                mean = np.mean(found, axis=0)
                vectors.append(mean / (np.linalg.norm(mean) or 1.0) if normalise else mean)
                kept.append(eid)
        if not kept:  # no picture of the batch could be read: nothing to write (reshape(0, -1) cannot guess a width)
            return [], np.zeros((0, 0), dtype=np.float32)
        return kept, np.asarray(vectors, dtype=np.float32)

    @staticmethod
    def _stored_hashes(col) -> dict[str, str]:
        return {eid: meta.get("hash", "") for eid, meta in _iter_metadata(col)}

    def drop(self) -> None:
        """Delete every view of this store."""
        for view in VIEWS:
            if self._collection(view) is not None:
                self.client.delete_collection(self.collection_name(view))
        self._collections.clear()
        if not self.is_remote:
            snapshot.remove(self.location, self.prefix, [p for p in self.kb_prefixes() if p != self.prefix])
        self._matrices.clear()
        self._rows.clear()

    # ----------------------------------------------------------------- reading

    def query(self, view: str, vectors: np.ndarray, k: int, encoder_name: str) -> list[list[tuple[str, float]]]:
        """Nearest entities of each query vector in one view, as ``(id, cosine similarity)``.

        Exact and deterministic up to :data:`EXACT_LIMIT` entities: Chroma's HNSW graph is rebuilt
        from its log on every open, differently each time, so its approximate answers differed
        between two identical runs. Similarities are rounded to 6 decimals and ties go to the smaller id.
        """
        self.check_encoder(view, encoder_name)
        col = self._collection(view)
        if len(vectors) == 0:
            return []
        k = min(k, col.count())
        if k == 0:
            return [[] for _ in range(len(vectors))]
        if col.count() > EXACT_LIMIT:
            return self._query_hnsw(col, vectors, k, view)
        ids, matrix = self._matrix(view)
        queries = np.asarray(vectors, dtype=np.float64)
        # One BLAS thread: the product is small, and idle OpenBLAS threads spin on the cores the text encoder
        # needs next (OPENBLAS_NUM_THREADS=1 took `retrieve` on WikiMEL dev from 109 to 175 queries/s).
        with threadpool_limits(1, user_api="blas"):
            # A float32 product finds each query's pool: every row within PRESELECT_MARGIN of its k-th best
            # (far more than float32 error). Only the pool is rescored in float64 and rounded to 6 decimals,
            # so the answer is the exact one, whatever the batch, at a fraction of a full float64 product.
            rough = np.ascontiguousarray(self._scores(view, matrix, queries.T.astype(np.float32)).T)  # queries x rows
            if view in _L2_VIEWS or len(ids) <= k + POOL_EXTRA:
                return [self._exact_pool(view, ids, matrix, query, row, k) for query, row in zip(queries, rough)]
            return self._exact_batch(ids, matrix, queries, rough, k)

    @classmethod
    def _exact_pool(cls, view: str, ids: list[str], matrix: np.ndarray, query: np.ndarray, rough: np.ndarray,
                    k: int) -> list[tuple[str, float]]:
        """One query's exact top k: the rows within PRESELECT_MARGIN of its rough k-th best, rescored in float64."""
        kth = np.partition(rough, len(ids) - k)[len(ids) - k]
        pool = np.flatnonzero(rough >= kth - PRESELECT_MARGIN)
        # The stored vectors are float32: in float64 the pool's products are exact up to the rounding.
        scores = np.round(cls._scores(view, matrix[pool].astype(np.float64), query[:, None])[:, 0], SCORE_DECIMALS)
        # Sorted by score, then by row: rows are in id order, so ties go to the smaller id.
        order = np.lexsort((pool, -scores))[:k]
        return list(zip(map(ids.__getitem__, pool[order].tolist()), scores[order].tolist()))

    @classmethod
    def _exact_batch(cls, ids: list[str], matrix: np.ndarray, queries: np.ndarray, rough: np.ndarray,
                     k: int) -> list[list[tuple[str, float]]]:
        """Cosine top k of many queries at once: each query's best k + POOL_EXTRA rows are rescored in float64.

        The answer is :meth:`_exact_pool`'s whenever that pool holds every row within PRESELECT_MARGIN of the
        k-th best; a query where it may not (many near-ties) is answered by :meth:`_exact_pool` itself.
        """
        width = k + POOL_EXTRA
        part = np.argpartition(-rough, width, axis=1)  # [:, :width] the best rows, [:, width] the next best
        pool, outside = part[:, :width], np.take_along_axis(rough, part[:, width:width + 1], axis=1)[:, 0]
        pooled = np.take_along_axis(rough, pool, axis=1)
        kth = -np.partition(-pooled, k - 1, axis=1)[:, k - 1]
        out: list[list[tuple[str, float]]] = []
        for start in range(0, len(queries), 64):  # bounded float64 temporaries
            rows = pool[start:start + 64]
            scores = np.round(np.einsum("qkd,qd->qk", matrix[rows].astype(np.float64), queries[start:start + 64]),
                              SCORE_DECIMALS)
            order = np.lexsort((rows, -scores), axis=-1)[:, :k]
            best, best_scores = np.take_along_axis(rows, order, 1).tolist(), np.take_along_axis(scores, order, 1)
            for j, (found, values) in enumerate(zip(best, best_scores.tolist()), start=start):
                if outside[j] >= kth[j] - PRESELECT_MARGIN:  # the pool may miss a near-tie
                    out.append(cls._exact_pool(CATALOGUE_VIEW, ids, matrix, queries[j], rough[j], k))
                else:
                    out.append(list(zip(map(ids.__getitem__, found), values)))
        return out

    @staticmethod
    def _scores(view: str, matrix: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Rows x queries similarities: cosine (vectors are normalised), or, for face descriptors, a score from
        the Euclidean distance."""
        if view not in _L2_VIEWS:
            return matrix @ queries
        from vplink.retrieval.faces import face_similarity

        squared = (matrix ** 2).sum(1)[:, None] - 2 * matrix @ queries + (queries ** 2).sum(0)[None, :]
        return face_similarity(np.sqrt(np.maximum(0.0, squared)))

    @staticmethod
    def _query_hnsw(col, vectors: np.ndarray, k: int, view: str) -> list[list[tuple[str, float]]]:
        """Approximate search through Chroma's index, for views too large to hold in memory."""
        n = min(col.count(), 2 * k)  # a wider pool, cut by exact score, makes the top k far more stable
        result = col.query(query_embeddings=np.asarray(vectors, dtype=np.float32), n_results=n, include=["distances"])
        return [sorted(((eid, round(_similarity(view, float(dist)), SCORE_DECIMALS)) for eid, dist in zip(ids, dists)),
                       key=lambda item: (-item[1], item[0]))[:k]
                for ids, dists in zip(result["ids"], result["distances"])]

    def get_embeddings(self, view: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of some entities in one view (absent ids are left out).

        Views searched in memory answer from the matrix already held for search (a dict lookup per id; a
        Chroma ``get`` took most of a reranked query's time), larger views from Chroma.
        """
        col = self._collection(view)
        if col is None or not ids:
            return {}
        if col.count() > EXACT_LIMIT and self._snapshots is None:
            found = col.get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
            return {eid: np.asarray(vec, dtype=np.float32) for eid, vec in zip(found["ids"], found["embeddings"])}
        row_of, matrix = self._row_index(view)
        return {eid: matrix[row_of[eid]] for eid in ids if eid in row_of}

    def _row_index(self, view: str) -> tuple[dict[str, int], np.ndarray]:
        """``{id: row}`` of a view's in-memory matrix, and the matrix."""
        if self._snapshots is not None:
            col = self._collection(view)
            return col.rows(), col.matrix()[1]
        ids, matrix = self._matrix(view)
        with self._lock:
            if view not in self._rows:
                self._rows[view] = {eid: row for row, eid in enumerate(ids)}
            return self._rows[view], matrix

    def _matrix(self, view: str) -> tuple[list[str], np.ndarray]:
        """Every vector of a view (float32, as stored), rows in id order; read from Chroma once per store, or
        mapped from the snapshot."""
        if self._snapshots is not None:
            return self._collection(view).matrix()
        with self._lock:
            if view not in self._matrices:
                col = self._collection(view)
                ids: list[str] = []
                rows: list[np.ndarray] = []
                offset = 0
                while True:
                    got = col.get(include=["embeddings"], limit=5000, offset=offset)
                    if not len(got["ids"]):
                        break
                    ids += got["ids"]
                    rows.append(np.asarray(got["embeddings"], dtype=np.float32))
                    offset += len(got["ids"])
                order = sorted(range(len(ids)), key=ids.__getitem__)
                matrix = np.ascontiguousarray(np.concatenate(rows)[order]) if rows else np.zeros((0, 0), np.float32)
                self._matrices[view] = ([ids[i] for i in order], matrix)
            return self._matrices[view]

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


def _similarity(view: str, distance: float) -> float:
    """Chroma's distance as a similarity: 1 - cosine distance, or the face score of an L2 distance."""
    if view in _L2_VIEWS:
        from vplink.retrieval.faces import face_similarity

        return float(face_similarity(np.sqrt(max(distance, 0.0))))  # Chroma's "l2" is the squared distance
    return 1.0 - distance


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{view} {n}" for view, n in counts.items())


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

