"""The int8 text backend on a CPU without AVX-512 or VNNI: onnxruntime's AVX2 kernels, run under qemu's emulation
of an AMD EPYC (Zen 2), so that any x86 machine can check what an AVX2-only CPU computes."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vplink.retrieval.text_encoder import TextEncoder

QEMU = shutil.which("qemu-x86_64")
# EPYC-Rome: avx2 and fma, no avx512f, no avx512_vnni, no avx_vnni; onnxruntime picks its kernels by CPUID.
AVX2_CPU = "EPYC-Rome"
pytestmark = [
    pytest.mark.slow,  # a few minutes: the whole encoder runs instruction by instruction in the emulator
    pytest.mark.skipif(not QEMU or platform.machine() != "x86_64",
                       reason="emulates an AVX2-only CPU (no AVX-512, no VNNI) with qemu-user on x86_64: "
                              "`apt-get install qemu-user`"),
]

ENCODE = """
import json, sys
import numpy as np
from vplink.retrieval.text_encoder import TextEncoder
np.save(sys.argv[1], TextEncoder(backend="onnx-int8", batch_size=16).encode(json.loads(sys.stdin.read())))
"""


def test_int8_vectors_are_as_good_without_vnni(kb_texts: list[str], torch_vectors: np.ndarray,
                                                tmp_path: Path) -> None:
    native = TextEncoder(backend="onnx-int8", batch_size=16).encode(kb_texts)  # also quantises into the cache
    out = tmp_path / "avx2.npy"
    done = subprocess.run([QEMU, "-cpu", AVX2_CPU, sys.executable, "-c", ENCODE, str(out)], input=json.dumps(kb_texts),
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    emulated = np.load(out)
    to_torch, here, between = ((a * b).sum(axis=1) for a, b in ((emulated, torch_vectors), (native, torch_vectors),
                                                                 (emulated, native)))
    print(f"cosine to torch: {AVX2_CPU} mean {to_torch.mean():.5f} min {to_torch.min():.5f}; this CPU mean "
          f"{here.mean():.5f} min {here.min():.5f}; between the two min {between.min():.5f}")
    # The bar test_text_backends.py holds this CPU's int8 vectors to; full-range int8 weights gave 0.9896 here.
    assert to_torch.mean() > 0.99 and to_torch.min() > 0.95
    # The integers agree; a float rounding that differs between the two CPUs' kernels can move one activation by
    # one step of its dynamic quantisation, and the vector by about as much as int8 itself moves it from torch's.
    assert between.min() > 0.98
