"""Run folders that resume: a manifest of the settings that shape the records, and a refusal to resume with others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vplink.core.errors import VplinkError
from vplink.core.jsonl import write_json


class RunDirError(VplinkError):
    """An output folder holds a run that cannot be resumed with these settings."""


def claim_run_dir(out: Path, manifest: dict[str, Any], resume: bool, *, manifest_name: str, records: str) -> None:
    """Refuse to resume into ``out`` when its ``records`` were made with anything else than ``manifest`` says
    (store, k, model, data...); without ``resume``, drop them. Then record ``manifest`` as ``manifest_name``."""
    existing = out / manifest_name
    if resume and existing.exists() and (out / records).exists():
        try:
            old = json.loads(existing.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        before, now = flatten(old), flatten(manifest)
        differ = [key for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]
        if differ:
            shown = "; ".join(f"{key}: {before.get(key, '(not recorded)')!r} -> {now.get(key, '(none)')!r}"
                              for key in differ[:8]) + (f"; and {len(differ) - 8} more" if len(differ) > 8 else "")
            raise RunDirError(f"{out}: holds {records} made with other settings ({shown}). Fix: pass another "
                              "--out folder, or --restart to start this one over")
    if not resume:
        (out / records).unlink(missing_ok=True)
    write_json(existing, manifest)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}``, so that a difference is named by its path."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}
