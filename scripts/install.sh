#!/usr/bin/env bash
# Installs streamcodec and everything it needs into the active Python environment.
# Usage: bash scripts/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
# torch with a matching torchvision (compressai imports it). These two are the pair this
# machine's wheel cache holds; they run on the CPU and on a GPU alike.
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# compressai (entropy models of the learned texture codes) pins numpy<2 and pulls torch-geometric
# through its metadata, although its entropy models need neither; install it without its resolver
# and add what its package __init__ imports.
python -m pip install -q --no-deps "compressai==1.2.8"
python -m pip install -q einops pandas pytorch-msssim requests torch-geometric
# mediapipe 0.10.14 is the last release with the legacy face mesh bundled in the wheel.
python -m pip install -q --no-deps "mediapipe==0.10.14"
extras="dlib"
if [ "${1:-}" = "--test" ]; then extras="dlib,test"; fi
python -m pip install -q -e ".[${extras}]"
