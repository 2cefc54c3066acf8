"""The Chroma store: idempotent indexing, updates, deletions, resume, encoder checks, a real server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.text_models import InterruptedEncoder
from vplink.core.errors import EncoderMismatchError, StoreError
from vplink.core.records import Entity
from vplink.retrieval.factory import open_retriever, open_store
from vplink.retrieval.kb import load_kb
from vplink.retrieval.search import QueryViews
from vplink.retrieval.store import KBStore


def entities(n: int, small_kb: Path) -> list[Entity]:
    return load_kb(small_kb).entities[:n]


def test_reindex_is_idempotent_and_tracks_changes(tmp_path: Path, small_kb: Path, text_encoder) -> None:
    store = KBStore(tmp_path / "s")
    kb = entities(40, small_kb)
    first = store.index(kb, text_encoder, progress=False)
    assert first.added == {"name": 40, "description": 40}
    again = store.index(kb, text_encoder, progress=False)
    assert again.unchanged == {"name": 40, "description": 40} and again.added == {"name": 0, "description": 0}

    changed = [e.model_copy(update={"description": e.description + " Extra."}) if i == 0 else e
               for i, e in enumerate(kb[:-3])]
    third = store.index(changed, text_encoder, progress=False)
    assert third.updated["description"] == 1 and third.updated["name"] == 1  # catalogue holds the description
    assert third.deleted == {"name": 3, "description": 3}
    assert store.count() == 37
    assert store.get_entities([kb[0].id])[kb[0].id].description.endswith("Extra.")


def test_interrupted_index_resumes(tmp_path: Path, small_kb: Path, text_encoder) -> None:
    kb = entities(30, small_kb)
    store = KBStore(tmp_path / "s")
    with pytest.raises(KeyboardInterrupt):
        store.index(kb, InterruptedEncoder(text_encoder, at_call=3), batch_size=10, progress=False, encode_chunk=10)
    assert store.count("name") == 20
    resumed = KBStore(tmp_path / "s").index(kb, text_encoder, batch_size=10, progress=False, encode_chunk=10)
    assert resumed.unchanged["name"] == 20 and resumed.added["name"] == 10
    assert resumed.added["description"] == 30


def test_store_refuses_another_encoder(small_store: KBStore, text_encoder) -> None:
    with pytest.raises(EncoderMismatchError, match="was built with sentence-transformers"):
        small_store.query("name", text_encoder.encode(["x"]), 5, "sentence-transformers:other:123")

    class Other:
        name, spec = "other-encoder", "/nowhere"

    with pytest.raises(EncoderMismatchError, match="--rebuild"):
        small_store.index(entities(2, Path()) if False else [Entity(id="Z", name="Z")], Other(), progress=False)


def test_open_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="vplink kb index"):
        open_store(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a vplink store"):
        open_store(tmp_path / "empty")
    KBStore(tmp_path / "no-kb")  # a Chroma folder without any KB in it
    with pytest.raises(StoreError, match="holds no entities"):
        open_store(tmp_path / "no-kb")
    with pytest.raises(StoreError, match="no Chroma server answers"):
        KBStore(f"http://127.0.0.1:{_free_port()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """A real `chroma run` server on 127.0.0.1."""
    binary = shutil.which("chroma")
    if binary is None:
        pytest.fail("the `chroma` command (from the chromadb package) is not installed")
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen([binary, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            KBStore(url)
            break
        except StoreError:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited with {proc.returncode}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_index_and_search_on_a_chroma_server(chroma_server: str, small_kb: Path, text_encoder) -> None:
    kb = entities(50, small_kb)
    report = KBStore(chroma_server).index(kb, text_encoder, progress=False)
    assert report.added["name"] == 50
    retriever = open_retriever(chroma_server)
    target = kb[7]
    found = retriever.search(QueryViews(mention=target.name, context=target.description), k=5)
    assert found[0].id == target.id
    assert KBStore(chroma_server).index(kb, text_encoder, progress=False).unchanged["name"] == 50


def test_a_chroma_server_with_several_kbs_needs_a_prefix(chroma_server: str, small_kb: Path, text_encoder) -> None:
    kb = entities(60, small_kb)
    KBStore(chroma_server, prefix="second").index(kb[50:60], text_encoder, progress=False)
    with pytest.raises(StoreError, match=r"holds 2 KBs \(second, vplink\).*--prefix"):
        open_retriever(chroma_server)
    retriever = open_retriever(chroma_server, prefix="second")
    assert retriever.store.count() == 10
    target = kb[55]
    assert retriever.search(QueryViews(mention=target.name, context=target.description), k=1)[0].id == target.id


def test_exact_search_is_the_brute_force_ranking_however_batched(small_store: KBStore, text_encoder,
                                                                   dev_slice) -> None:
    """The float32 preselection must not change the answer: the top k equal a full float64 product, rounded
    to 6 decimals, ties to the smaller id, for a batch and for queries one at a time."""
    import numpy as np

    names = [e.name for e in small_store.iter_entities()]
    texts = [row["text"] for row in dev_slice] + names[:20]  # a name scores 1.0 against itself: ties at the top
    vectors = text_encoder.encode(texts)
    ids, matrix = small_store._matrix("name")  # the stored (float32) vectors, rows in id order
    k = 30
    expected = []
    for vector in vectors.astype(np.float64):
        scores = np.round(matrix.astype(np.float64) @ vector, 6)
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]
        expected.append([(ids[i], float(scores[i])) for i in order])
    batched = small_store.query("name", vectors, k, text_encoder.name)
    alone = [small_store.query("name", vector[None, :], k, text_encoder.name)[0] for vector in vectors]
    assert batched == expected
    assert alone == expected


def test_get_embeddings_reads_the_stored_vectors(small_store: KBStore) -> None:
    """The in-memory answer is Chroma's own stored vector for each id; unknown ids are left out."""
    import numpy as np

    ids = small_store._matrix("description")[0][:5]
    got = small_store.get_embeddings("description", [*ids, "not-an-id"])
    assert list(got) == list(ids)
    chroma = small_store._collection("description").get(ids=list(ids), include=["embeddings"])
    for eid, vector in zip(chroma["ids"], chroma["embeddings"]):
        np.testing.assert_array_equal(got[eid], np.asarray(vector, dtype=np.float32))
    assert small_store.get_embeddings("description", []) == {}


def test_batched_exact_search_equals_one_query_at_a_time_with_ties() -> None:
    """The batched pool (k + POOL_EXTRA rows a query) gives the per-query answer, near-ties included: 60
    copies of one vector tie beyond the pool, so those queries must fall back to the full margin."""
    import numpy as np

    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(3000, 32)).astype(np.float32)
    matrix[100:160] = matrix[7]  # 61 identical rows: more ties than the pool holds
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = [f"Q{i:05d}" for i in range(len(matrix))]
    queries = np.concatenate([rng.normal(size=(40, 32)), matrix[[7, 8]]]).astype(np.float64)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rough = queries.astype(np.float32) @ matrix.T
    k = 20
    batched = KBStore._exact_batch(ids, matrix, queries, rough, k)
    alone = [KBStore._exact_pool("name", ids, matrix, q, r, k) for q, r in zip(queries, rough)]
    assert batched == alone
    assert [eid for eid, _ in batched[-2][:k]] == sorted([ids[7], *ids[100:160]])[:k]  # ties: smaller ids first
