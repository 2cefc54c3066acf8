"""The text encoder's backends on real KB texts: ONNX (fp32 and int8) against sentence-transformers' torch path,
and the store recording which backend built it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from vplink.core.errors import BackendMismatchWarning, EncoderMismatchError, ModelLoadError
from vplink.retrieval.factory import open_retriever
from vplink.retrieval.kb import load_kb
from vplink.retrieval.onnx_text import (INT8_WEIGHT_BOUND, OnnxSentenceEncoder, cpu_has_bf16, onnx_model_file,
                                        widest_int8_weight)
from vplink.retrieval.search import QueryViews
from vplink.retrieval.store import KBStore
from vplink.retrieval.text_encoder import TextEncoder


needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(),
                                reason="this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16)")


@pytest.mark.parametrize("backend, floor", [("onnx", 0.9999), ("openvino", 0.9999),
                                            pytest.param("openvino-bf16", 0.9995, marks=needs_bf16),
                                            ("onnx-int8", 0.95)])
def test_onnx_matches_torch(backend: str, floor: float, kb_texts: list[str], torch_vectors: np.ndarray) -> None:
    encoder = TextEncoder(backend=backend, batch_size=16)  # several batches of different padded lengths
    vectors = encoder.encode(kb_texts)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * torch_vectors).sum(axis=1)
    # int8's mean is 0.991 with and without VNNI (test_int8_avx2.py); full-range int8 weights gave 0.9896 on AVX2.
    assert cosines.mean() > 0.99 and cosines.min() > floor
    # Same ranking of texts for a query: the vectors are interchangeable for search, not just close.
    assert (np.argmax(vectors @ vectors[:5].T, axis=0) == np.arange(5)).all()


def test_int8_weights_stay_where_cpus_without_vnni_multiply_exactly() -> None:
    # Without VNNI, onnxruntime adds two uint8 x int8 products in int16: beyond |w| = 64 the pair can saturate,
    # and the same model gives other vectors on an AVX2-only CPU than on this one.
    encoder = TextEncoder(backend="onnx-int8")
    assert widest_int8_weight(onnx_model_file(encoder.model_path, encoder.name, int8=True)) == INT8_WEIGHT_BOUND


@needs_bf16
def test_bf16_is_really_bf16(kb_texts: list[str]) -> None:
    # OpenVINO computes in float32 when the precision is left to it on some CPUs: the two backends must differ,
    # or the store would record a backend its vectors did not come from.
    f32 = TextEncoder(backend="openvino").encode(kb_texts)
    bf16 = TextEncoder(backend="openvino-bf16").encode(kb_texts)
    assert np.abs(f32 - bf16).max() > 1e-4


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_order_and_batching_do_not_change_vectors(backend: str, kb_texts: list[str]) -> None:
    encoder = TextEncoder(backend=backend, batch_size=7)
    whole = encoder.encode(kb_texts)
    reversed_one_by_one = np.stack([encoder.encode([t])[0] for t in reversed(kb_texts[:12])])[::-1]
    assert np.allclose(whole[:12], reversed_one_by_one, atol=1e-5)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_text_past_the_model_limit_is_cut_without_changing_its_vector(kb_texts: list[str]) -> None:
    encoder = TextEncoder(backend="onnx")
    long = " ".join(kb_texts) * 40  # far beyond 256 tokens
    assert len(long) > encoder.max_chars
    assert np.allclose(encoder.encode([long]), encoder.encode([long[:encoder.max_chars // 2]]), atol=1e-5)


def test_unknown_backend_and_unsupported_model_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="onnx-int8"):
        TextEncoder(backend="tensorrt")
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(ModelLoadError, match="Dense.*--text-backend torch"):
        OnnxSentenceEncoder(tmp_path, tmp_path / "model.onnx")


def test_store_records_its_backend_and_queries_follow_it(tmp_path: Path, small_kb: Path) -> None:
    entities = load_kb(small_kb).entities[:30]
    store = KBStore(tmp_path / "s")
    store.index(entities, TextEncoder(backend="onnx-int8"), progress=False)
    assert store.backend_of("name") == store.backend_of("description") == "onnx-int8"
    with pytest.raises(EncoderMismatchError, match="onnx-int8 backend, not torch"):
        store.index(entities, TextEncoder(backend="torch"), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_retriever(tmp_path / "s").text_encoder.backend == "onnx-int8"
    with pytest.warns(BackendMismatchWarning, match="onnx-int8"):
        retriever = open_retriever(tmp_path / "s", text_backend="onnx")
    first = entities[0]
    assert retriever.search(QueryViews(context=first.description_view()), k=3)[0].id == first.id


@needs_bf16
def test_a_bf16_store_on_a_cpu_without_bf16_is_queried_in_float32(tmp_path: Path, small_kb: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    entities = load_kb(small_kb).entities[:30]
    KBStore(tmp_path / "s").index(entities, TextEncoder(backend="openvino-bf16"), progress=False)
    # The store moves to a CPU without bfloat16 (this one has it: its answer is replaced).
    monkeypatch.setattr("vplink.retrieval.onnx_text.cpu_has_bf16", lambda: False)
    with pytest.raises(ModelLoadError, match="no bfloat16.*--text-backend openvino"):
        TextEncoder(backend="openvino-bf16").encode(["a text"])
    with pytest.warns(BackendMismatchWarning, match="openvino-bf16 text backend but queries use openvino"):
        retriever = open_retriever(tmp_path / "s")
    assert retriever.text_encoder.backend == "openvino"
    first = entities[0]
    assert retriever.search(QueryViews(context=first.description_view()), k=3)[0].id == first.id


def test_a_store_without_a_recorded_backend_is_read_as_torch(tmp_path: Path, small_kb: Path) -> None:
    entities = load_kb(small_kb).entities[:10]
    torch_encoder = TextEncoder(backend="torch")

    class BeforeBackends:
        """The torch encoder as stores were built before backends existed: nothing says which backend ran."""

        name, spec, weights = torch_encoder.name, torch_encoder.spec, torch_encoder.weights

        def encode(self, texts):
            return torch_encoder.encode(texts)

    KBStore(tmp_path / "s").index(entities, BeforeBackends(), progress=False)
    assert "backend" not in KBStore(tmp_path / "s")._meta("name")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendMismatchWarning)
        retriever = open_retriever(tmp_path / "s")
    assert retriever.text_encoder.backend == "torch"
    first = entities[0]
    assert retriever.search(QueryViews(context=first.description_view()), k=3)[0].id == first.id


def test_default_backend_follows_the_device_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from vplink.retrieval.text_encoder import TEXT_BACKEND_ENV, default_backend

    monkeypatch.delenv(TEXT_BACKEND_ENV, raising=False)
    assert default_backend("cpu") == "openvino" and default_backend("cuda") == "torch"  # openvino is installed
    monkeypatch.setenv(TEXT_BACKEND_ENV, "onnx-int8")
    assert default_backend("cpu") == "onnx-int8"


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_encoding_from_several_threads_gives_the_same_vectors(backend: str, kb_texts: list[str]) -> None:
    """The linker and the web service search from several threads at once through one encoder."""
    from concurrent.futures import ThreadPoolExecutor

    encoder = TextEncoder(backend=backend, batch_size=8)
    alone = encoder.encode(kb_texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda part: encoder.encode(kb_texts[part::4]), range(4)))
    for part, vectors in enumerate(together):
        assert np.allclose(vectors, alone[part::4], atol=1e-5)
