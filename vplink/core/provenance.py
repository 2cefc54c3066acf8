"""What a measurement ran on: the commit and whether the tree had local changes, and the CPU with its SIMD flags."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]
CPUINFO = Path("/proc/cpuinfo")
#: The instruction sets that change what the encoders compute or how fast: int8 kernels differ with and without
#: VNNI (avx512_vnni, or avx_vnni on CPUs without AVX-512), bfloat16 needs avx512_bf16 or AMX.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def git_version() -> dict[str, Any]:
    """The commit of the code that ran (``git rev-parse HEAD``) and whether the tree had local changes."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if head else None
    return {"git_commit": head, "git_dirty": bool(code_changes(status)) if status is not None else None}


#: Where runs and benchmarks write their outputs: data, not code.
OUTPUT_FOLDERS = ("results/", "benchmarks/results/")


def code_changes(status: str | None) -> list[str]:
    """The lines of ``git status --porcelain`` that change code: a run re-writing its own outputs (new or
    committed ones, under :data:`OUTPUT_FOLDERS`) does not dirty the tree it runs on."""
    # split, not a column: the status's first line may have lost its leading blank to the output's strip()
    return [line for line in (status or "").splitlines()
            if line.strip() and not line.split(maxsplit=1)[-1].strip('"').startswith(OUTPUT_FOLDERS)]


def cpu_info(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU's model name, its logical cores and which of :data:`SIMD_FLAGS` it has (None where unknown)."""
    # The kernel's flags, not raw CPUID: AMX counts only once the kernel has enabled it for processes.
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                if fields:
                    break  # the first processor's block is enough: all cores of a machine report the same
                continue
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields["flags"].split()) if "flags" in fields else None
    simd = {flag: (flag in flags) if flags is not None else None for flag in SIMD_FLAGS}
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "simd": simd}


def provenance() -> dict[str, Any]:
    """The commit, ``git_dirty`` and the CPU, as every benchmark's JSON records them."""
    return {**git_version(), "cpu": cpu_info()}
