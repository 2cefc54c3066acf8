"""Stand-ins built from the real default text model: an encoder interrupted mid-run, and a copy of the model's
folder (with changed weights when asked), for the store's resume and weight-fingerprint checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class InterruptedEncoder:
    """The real encoder under its own name, interrupted (as by Ctrl-C) on its ``at_call``-th encode."""

    def __init__(self, encoder, at_call: int = 1) -> None:
        self.encoder, self.at_call, self.calls = encoder, at_call, 0
        self.name, self.spec, self.weights = encoder.name, encoder.spec, encoder.weights
        self.backend = encoder.backend

    def encode(self, texts):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return self.encoder.encode(texts)


def text_model_copy(root: Path, perturb: bool) -> Path:
    """The default text model under the same folder names, its weights copied (and changed when asked)."""
    from vplink.retrieval.text_encoder import default_text_model_path

    source = default_text_model_path().resolve()
    target = root / source.parent.name / source.name
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "model.safetensors":
            (target / item.name).symlink_to(item)
    if not perturb:
        (target / "model.safetensors").symlink_to(source / "model.safetensors")
        return target
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(source / "model.safetensors"))
    name = next(n for n in tensors if n.endswith("attention.self.query.weight"))
    tensors[name] = tensors[name] + np.float32(0.05)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target
