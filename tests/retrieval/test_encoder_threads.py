"""The text encoder used from several threads at once, as `vplink eval --concurrency` and the service use it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from vplink.retrieval.kb import load_kb
from vplink.retrieval.text_encoder import TextEncoder

THREADS = 8
#: Long enough for a deadlock to show as a failure, not a hang; a healthy run takes seconds.
JOIN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def texts(small_kb: Path) -> list[str]:
    """Real KB names and descriptions of varied lengths."""
    entities = load_kb(small_kb).entities[:32]
    return [e.name_view() for e in entities] + [e.description_view() for e in entities]


def _encode_from_threads(encoder: TextEncoder, texts: list[str]) -> dict[int, np.ndarray]:
    """Every thread encodes its own slices of the texts at once; returns each slice's vectors by its start."""
    jobs = [(start, texts[start:start + 1 + start % 9]) for start in range(0, len(texts), 3)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    gate = threading.Barrier(THREADS)

    def work(mine: list[tuple[int, list[str]]]) -> None:
        try:
            gate.wait()  # all threads start encoding together
            for start, chunk in mine:
                results[start] = encoder.encode(chunk)
        except BaseException as error:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(error)

    # Daemon threads: a deadlocked encoder fails this test instead of keeping pytest from exiting.
    threads = [threading.Thread(target=work, args=(jobs[i::THREADS],), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"{len(stuck)} encoding threads still running after {JOIN_TIMEOUT_S} s (a deadlock?)"
    assert not errors, errors[0]
    assert len(results) == len(jobs)
    return results


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_encoding_from_many_threads_gives_the_single_thread_vectors(backend: str, texts: list[str]) -> None:
    encoder = TextEncoder(backend=backend, batch_size=4)
    reference = encoder.encode(texts)
    made: list[int] = []
    if backend == "openvino":
        # The deadlock of issue 20: threads stuck in create_infer_request while others inferred. The runner's
        # requests are made when it is built; encoding, from any number of threads, makes none. A spy on
        # OpenVINO's object counts the calls and then does the real work.
        compiled = encoder.onnx.runner.compiled
        create = compiled.create_infer_request
        compiled.create_infer_request = lambda: made.append(1) or create()
    try:
        found = _encode_from_threads(encoder, texts)
    finally:
        if backend == "openvino":
            del compiled.create_infer_request
    for start, vectors in found.items():
        assert np.allclose(vectors, reference[start:start + len(vectors)], atol=1e-5), start
    assert not made, f"{len(made)} infer requests made while encoding"
