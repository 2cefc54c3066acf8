#!/usr/bin/env bash
# Debian's chromium and chromium-driver for tests/service/test_browser.py: installed with apt when they are missing
# and apt is usable (root, apt-get present); elsewhere the browser tests are skipped, and this says why.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  echo "browser tests: $(chromium --version 2>/dev/null || echo chromium) and chromedriver are installed"
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "browser tests: chromium or chromedriver is missing and apt-get cannot install them here (needs root and" \
       "apt); they will be skipped. Fix: sudo apt-get install chromium chromium-driver" >&2
  exit 0
fi
echo "browser tests: installing Debian's chromium and chromium-driver with apt-get"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
echo "browser tests: $(chromium --version 2>/dev/null) and $(chromedriver --version | cut -d' ' -f1-2) installed"
