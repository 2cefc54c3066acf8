"""Fingerprints of model weights: a hash of the weight files, cached by path, size and modification time."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from vplink.core.errors import ModelLoadError

#: File names that hold a model's weights (the configs are fingerprinted separately by the encoders).
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.onnx", "*.msgpack", "*.h5")
CACHE_ENV = "VPLINK_CACHE_DIR"
_lock = threading.Lock()
_memory: dict[str, str] = {}


def cache_file() -> Path:
    """Where weight hashes are kept between runs: ``$VPLINK_CACHE_DIR`` or ``~/.cache/vplink``."""
    base = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                     os.path.expanduser("~/.cache"), "vplink")
    return Path(base) / "weight_hashes.json"


def weights_fingerprint(folder: str | Path) -> str:
    """``sha256:<hex>`` over every weight file under ``folder`` (relative name, size and content).

    Hashing a 90 MB model takes about a second, so each file's hash is cached under its resolved path,
    size and modification time: a changed file is hashed again, an unchanged one is not.
    """
    folder = Path(folder).resolve()
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.rglob(pattern) if p.is_file()})
    if not files:
        raise ModelLoadError(f"no weight files ({', '.join(WEIGHT_PATTERNS)}) under {folder}. "
                             "Fix: point the model path at a folder that holds the model's weights")
    digest = hashlib.sha256()
    cache = _load_cache()
    dirty = False
    for file in files:
        stat = file.stat()
        key = f"{file}:{stat.st_size}:{stat.st_mtime_ns}"
        file_hash = cache.get(key)
        if file_hash is None:
            file_hash = _sha256(file)
            cache[key] = file_hash
            dirty = True
        digest.update(f"{file.relative_to(folder)}\x00{stat.st_size}\x00{file_hash}\n".encode())
    if dirty:
        _save_cache(cache)
    return "sha256:" + digest.hexdigest()[:16]


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_cache() -> dict[str, str]:
    with _lock:
        if not _memory:
            try:
                _memory.update(json.loads(cache_file().read_text(encoding="utf-8")))
            except (OSError, ValueError):
                pass  # no cache yet, or a broken one: hashes are recomputed
        return _memory


def _save_cache(cache: dict[str, str]) -> None:
    from vplink.core.jsonl import write_json

    with _lock:
        try:
            write_json(cache_file(), cache)
        except OSError:
            pass  # a read-only home: the hash is only recomputed next time
