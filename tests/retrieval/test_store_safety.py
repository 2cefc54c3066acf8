"""Opening a store safely: read-only opens, KB prefixes, weight fingerprints, completeness, bad paths."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.text_models import InterruptedEncoder, text_model_copy
from vplink.core.errors import EncoderMismatchError, ModelLoadError, StoreError
from vplink.retrieval.factory import IncompleteStoreWarning, open_retriever, open_store
from vplink.retrieval.kb import load_kb
from vplink.retrieval.search import QueryViews
from vplink.retrieval.store import KBStore
from vplink.retrieval.text_encoder import TextEncoder

VPLINK = [sys.executable, "-c", "from vplink.cli import main; main()"]


def _files(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Size, modification time and content hash of every file under a folder."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, small_kb: Path, text_encoder) -> Path:
    """A 30-entity store built in this process (below Chroma's HNSW sync threshold, the worst case)."""
    folder = tmp_path_factory.mktemp("tiny") / "store"
    KBStore(folder).index(load_kb(small_kb).entities[:30], text_encoder, progress=False)
    return folder


def test_search_does_not_write_to_the_store(tiny_store: Path) -> None:
    before = _files(tiny_store)
    done = subprocess.run([*VPLINK, "kb", "search", str(tiny_store), "an American politician", "-k", "3", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"id"' in done.stdout
    assert _files(tiny_store) == before  # not a byte, not a modification time


def test_search_on_a_folder_that_is_not_a_store_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.txt").write_text("not a store")
    with pytest.raises(StoreError, match="is not a vplink store.*Fix: build one with `vplink kb index"):
        open_store(folder)
    done = subprocess.run([*VPLINK, "kb", "search", str(folder), "query"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "not a vplink store" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt"]


def test_kb_index_into_an_existing_file_is_a_clear_error(tmp_path: Path) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_text('{"id": "Q1", "name": "Ada Lovelace"}\n', encoding="utf-8")
    target = tmp_path / "store.txt"
    target.write_text("keep me")
    done = subprocess.run([*VPLINK, "kb", "index", str(kb), "--store", str(target)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"{target} is a file, not a store folder" in done.stderr and "Fix:" in done.stderr
    assert "Traceback" not in done.stderr
    assert target.read_text() == "keep me"


def test_several_kbs_in_one_store_need_a_prefix(tmp_path: Path, small_kb: Path, text_encoder) -> None:
    entities = load_kb(small_kb).entities
    folder = tmp_path / "shared"
    KBStore(folder, prefix="people").index(entities[:5], text_encoder, progress=False)
    KBStore(folder, prefix="places").index(entities[5:8], text_encoder, progress=False)
    with pytest.raises(StoreError, match=r"holds 2 KBs \(people, places\).*--prefix"):
        open_store(folder)
    assert open_store(folder, prefix="places").count() == 3
    retriever = open_retriever(folder, prefix="places")
    target = entities[6]
    assert retriever.search(QueryViews(mention=target.name, context=target.description), k=1)[0].id == target.id
    with pytest.raises(StoreError, match="no entities under the prefix 'vplink'.*people, places"):
        open_store(folder, prefix="vplink")


def test_one_kb_is_found_without_its_prefix(tmp_path: Path, small_kb: Path, text_encoder) -> None:
    KBStore(tmp_path / "s", prefix="mine").index(load_kb(small_kb).entities[:4], text_encoder, progress=False)
    assert open_store(tmp_path / "s").prefix == "mine"


def test_other_weights_under_the_same_model_name_are_refused(tmp_path: Path, small_kb: Path, text_encoder) -> None:
    other = TextEncoder(text_model_copy(tmp_path / "b", perturb=True))
    assert other.name == text_encoder.name  # the config-based name cannot tell them apart
    assert other.weights != text_encoder.weights
    entities = load_kb(small_kb).entities
    folder = tmp_path / "store"
    KBStore(folder).index(entities[:5], text_encoder, progress=False)
    with pytest.raises(EncoderMismatchError, match="other weight files"):
        KBStore(folder).index(entities[:8], other, progress=False)
    assert open_store(folder).count() == 5  # nothing was mixed in
    with pytest.raises(EncoderMismatchError, match="--text-model"):
        open_retriever(folder, text_model=other.model_path)


def test_text_model_path_is_stored_resolved_and_can_be_overridden(tmp_path: Path, small_kb: Path, monkeypatch) -> None:
    model = text_model_copy(tmp_path / "models", perturb=False)
    monkeypatch.chdir(model.parent.parent)
    relative = Path(model.parent.name) / model.name
    encoder = TextEncoder(relative)
    assert encoder.spec == str(model.resolve())
    folder = tmp_path / "store"
    KBStore(folder).index(load_kb(small_kb).entities[:4], encoder, progress=False)
    monkeypatch.chdir(tmp_path)  # another working directory: the stored path still loads
    assert open_retriever(folder).text_encoder.model_path == model.resolve()
    moved = model.parent.parent.rename(tmp_path / "moved")
    with pytest.raises(ModelLoadError, match="pass its folder with --text-model"):
        open_retriever(folder)
    reopened = open_retriever(folder, text_model=moved / model.parent.name / model.name)
    assert reopened.search(QueryViews(context="an American politician"), k=1)


def test_an_interrupted_index_warns_on_open_until_finished(tmp_path: Path, small_kb: Path, text_encoder) -> None:
    kb = load_kb(small_kb).entities[:30]

    with pytest.raises(KeyboardInterrupt):
        KBStore(tmp_path / "s").index(kb, InterruptedEncoder(text_encoder, at_call=3), batch_size=10, progress=False,
                                      encode_chunk=10)
    with pytest.warns(IncompleteStoreWarning, match=r"did not finish.*name 20, description 0.*re-run `vplink kb index"):
        open_store(tmp_path / "s")
    KBStore(tmp_path / "s").index(kb, text_encoder, batch_size=10, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_store(tmp_path / "s").count("description") == 30


def test_a_kb_whose_only_picture_is_unreadable_indexes_and_reports_it(tmp_path: Path, text_encoder,
                                                                      efficientnet) -> None:
    # Issue 20: `kb index` crashed (cannot reshape array of size 0) when no picture of a batch could be read,
    # leaving the store marked incomplete. A bad picture is reported; the entity's text views are still indexed.
    (tmp_path / "notes.txt").write_text("not a picture\n", encoding="utf-8")
    (tmp_path / "kb.jsonl").write_text('{"id": "Q1", "name": "Ada Lovelace", "image": "notes.txt"}\n', encoding="utf-8")
    store = KBStore(tmp_path / "s")
    report = store.index(load_kb(tmp_path / "kb.jsonl").entities, text_encoder, efficientnet, progress=False)
    assert len(report.image_errors) == 1 and report.image_errors[0].startswith("Q1: ")
    assert "notes.txt" in report.image_errors[0] and "not an image" in report.image_errors[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complete: no IncompleteStoreWarning
        reopened = open_store(tmp_path / "s")
    assert reopened.count("name") == 1 and reopened.count("image") == 0


def test_a_reader_maps_the_snapshot_and_never_opens_or_copies_chroma(tiny_store: Path, text_encoder) -> None:
    """Opening reads the snapshot written at index time (no private copy of the store, no Chroma client) and
    searches give what a Chroma reader of the same store gives; a store without one still opens, through Chroma."""
    import shutil
    import tempfile

    from vplink.retrieval.snapshot import SNAPSHOT_DIR

    copies_before = set(Path(tempfile.gettempdir()).glob("vplink-store-*"))
    retriever = open_retriever(tiny_store)
    queries = [QueryViews(mention="Obama", context="an American politician"), QueryViews(context="a river in Europe")]
    from_snapshot = retriever.search_batch(queries, k=5)
    store = retriever.store
    assert store.reads_snapshot and store._client is None  # Chroma was never opened
    assert set(Path(tempfile.gettempdir()).glob("vplink-store-*")) == copies_before  # nothing was copied
    assert store.get_entities([from_snapshot[0][0].id])[from_snapshot[0][0].id].name == from_snapshot[0][0].name

    legacy = tiny_store.parent / "legacy"
    shutil.copytree(tiny_store, legacy, ignore=shutil.ignore_patterns(SNAPSHOT_DIR))  # as indexed before snapshots
    old = open_retriever(legacy)
    assert not old.store.reads_snapshot
    assert [[(c.id, c.score) for c in cands] for cands in old.search_batch(queries, k=5)] == \
        [[(c.id, c.score) for c in cands] for cands in from_snapshot]
    assert old.store.fingerprint()["views"] == store.fingerprint()["views"]


def test_an_interrupted_index_removes_the_snapshot_so_readers_see_chroma(tmp_path: Path, small_kb: Path,
                                                                        text_encoder) -> None:
    """A run that stops after changing Chroma must not leave readers on the older snapshot."""
    kb = load_kb(small_kb).entities[:30]
    KBStore(tmp_path / "s").index(kb[:10], text_encoder, progress=False)
    assert open_store(tmp_path / "s").reads_snapshot
    with pytest.raises(KeyboardInterrupt):
        KBStore(tmp_path / "s").index(kb, InterruptedEncoder(text_encoder, at_call=2), batch_size=10,
                                      progress=False, encode_chunk=10)
    with pytest.warns(IncompleteStoreWarning):
        reader = open_store(tmp_path / "s")
    assert not reader.reads_snapshot and reader.count() > 10


def test_a_snapshot_reader_searches_a_large_view_through_chroma(tiny_store: Path, text_encoder, monkeypatch) -> None:
    """Above EXACT_LIMIT a snapshot reader opens Chroma (through its private copy) for HNSW, only then."""
    from vplink.retrieval import store as store_module

    store = open_store(tiny_store)
    vectors = text_encoder.encode(["an American politician"])
    exact = store.query("name", vectors, 3, text_encoder.name)
    assert store._client is None
    monkeypatch.setattr(store_module, "EXACT_LIMIT", 0)
    approximate = store.query("name", vectors, 3, text_encoder.name)
    assert store._client is not None and approximate[0][0][0] == exact[0][0][0]  # HNSW's float32 score may differ
    assert abs(approximate[0][0][1] - exact[0][0][1]) < 1e-5
