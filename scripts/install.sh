#!/usr/bin/env bash
# Installs streamcodec and everything it needs into the active Python environment.
# Usage: bash scripts/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
# The CPU build of torch is enough for the codec and its metrics.
python -m pip install -q "torch==2.13.0"
# mediapipe 0.10.14 is the last release with the legacy face mesh bundled in the wheel.
python -m pip install -q --no-deps "mediapipe==0.10.14"
extras="dlib"
if [ "${1:-}" = "--test" ]; then extras="dlib,test"; fi
python -m pip install -q -e ".[${extras}]"
