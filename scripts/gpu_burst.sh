#!/usr/bin/env bash
# One GPU burst on a lent machine (the device tool), prepared here and run there as one command:
# the generator's GPU speed and CPU agreement, then the configs/gpu/ variants trained side by side
# for MINUTES each on packed pairs. Results go to $OUT (gpu_speed.json, nvidia_smi.txt, run_<variant>.tar).
#
# Prepare (here):
#   python scripts/pack_pairs.py -o .devpack/pairs          # ~35 MiB: the whole tree travels in 64
#   cp ../shared/data/faces/catalogue.tsv .devpack/
#   mkdir -p .devpack/cache/lpips && cp ~/.cache/streamcodec/lpips/alex.safetensors .devpack/cache/lpips/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .devpack compressai==1.2.8 pytorch-msssim
# Run (device tool, carry .devpack):  bash scripts/gpu_burst.sh 6
#
# The machine has torch but no compressai (its wheels travel in .devpack), no mediapipe (the pack
# carries the face layout) and no PyAV, whose 35 MB wheel does not fit: a stand-in module that
# raises on any use lets the imports resolve, as training never decodes or encodes video.
set -uo pipefail
MINUTES=${1:-6}  # whole minutes
OUT=${OUT:-/tmp/burst_out}
VARIANTS=${VARIANTS:-"w16b2 w16b6 w24b4 w32b4"}
WORKERS=${WORKERS:-3}
mkdir -p "$OUT" /tmp/runs /tmp/stubs/av
[ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
  .devpack/*.whl || exit 1
cat > /tmp/stubs/av/__init__.py <<'EOF'
def __getattr__(name):
    raise ImportError("PyAV is not installed on this machine (GPU burst): nothing here may decode video")
EOF
export PYTHONPATH="/tmp/site:/tmp/stubs:$PWD" STREAMCODEC_CACHE="$PWD/.devpack/cache" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
python3 scripts/generator_speed.py --out "$OUT/gpu_speed.json" 2>&1 | tail -30
for v in $VARIANTS; do
  timeout $((${MINUTES%.*} * 60 + 150)) python3 scripts/train.py --config "configs/gpu/train_$v.yaml" \
    --data .devpack/pairs --catalogue .devpack/catalogue.tsv --out "/tmp/runs/$v" --workers "$WORKERS" \
    --threads 1 --max-minutes "$MINUTES" --finish-on-stop > "/tmp/runs/$v.log" 2>&1 &
done
wait
for v in $VARIANTS; do echo "== $v"; tr '\r' '\n' < "/tmp/runs/$v.log" | grep -v "^train:" | tail -4; done
# one archive per variant (the tool returns at most 8 files of 16 MB): final weights, or the last
# checkpoint of a run that did not reach them, its log, metrics, split and samples
for v in $VARIANTS; do
  skip=(--exclude optim.safetensors)
  [ -f "/tmp/runs/$v/final.safetensors" ] && skip+=(--exclude last.safetensors)
  tar -cf "$OUT/run_$v.tar" -C /tmp/runs "${skip[@]}" "$v" "$v.log"
done
ls -la "$OUT"
