#!/usr/bin/env bash
# The GPU check of `--device`: train configs/demo.yaml for 200 steps on CUDA in
# bf16, `camtl evaluate --split dev --device cuda`, then `camtl serve --device cuda` under a
# burst of 200 concurrent requests over every demo task; prints training step time,
# evaluation time and requests/s, and writes them to $RESULT (default $OUT/gpu_check.json
# where $OUT is set, else runs/gpu_check/gpu_check.json). Budget: under 8 minutes on one
# H100 or H200 (each phase has its own timeout). Untested on a GPU until it has run on one.
#
# The GPU machine starts bare and offline: it has torch with CUDA, transformers,
# accelerate and the rest of camtl's dependencies, but not the offline data, nor fastapi,
# uvicorn, pydantic or seqeval. Prepare both here, on a machine with the cache and PyPI
# (both folders are git-ignored):
#   bash bench/gpu_check.sh pack          # -> .gpu-cache/ (about 51 MiB) and .whl/ (3 MiB)
# then, on the GPU machine, from the repository root (carry .gpu-cache and .whl):
#   bash bench/gpu_check.sh
# Without a GPU the same path runs on the CPU, with a few steps and small splits:
#   bash bench/gpu_check.sh --dry-run     # DEVICE=cpu STEPS=5; about 2 minutes on 2 cores
#
# Settings (environment): PY (python3; here .venv/bin/python is used where it exists),
# DEVICE (cuda, cuda:N or cpu), STEPS (200), REQUESTS (200), RECORDS (8 per request),
# WORK (runs/gpu_check), PACK (.gpu-cache), WHEELS (.whl), RESULT. With no PACK folder the
# cache is $CAMTL_CACHE or ~/.cache/camtl, as `camtl data fetch` left it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
PACK=${PACK:-.gpu-cache}
WHEELS=${WHEELS:-.whl}
WORK=${WORK:-runs/gpu_check}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export TQDM_MININTERVAL=30  # a progress line every 30 s, not a screenful

if [ "${1:-}" = "pack" ]; then
  "$PY" bench/gpu_check.py pack --out "$PACK"
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  # the GPU image's Python is 3.12 on x86-64; the versions are this project's .venv's
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" fastapi==0.165.0 starlette==1.10.0 \
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 annotated-doc==0.0.7 \
    typing-inspection==0.4.5 typing-extensions==4.16.0 uvicorn==0.55.0
  "$PY" -m pip wheel -q --no-deps -w "$WHEELS" seqeval==1.2.2  # an sdist on PyPI: built here
  du -sh "$PACK" "$WHEELS"
  exit 0
fi

DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-200}
sets=(--set "training.max_steps=$STEPS" --set "training.eval_every=$STEPS")
if [ "${1:-}" = "--dry-run" ]; then
  DEVICE=cpu
  STEPS=${STEPS_DRY:-5}
  sets=(--set "training.max_steps=$STEPS" --set "training.eval_every=$STEPS")
  for i in 0 1 2 3 4 5 6; do  # the demo's seven tasks, cut small
    sets+=(--set "tasks[$i].max_train_examples=256" --set "tasks[$i].max_dev_examples=64"
      --set "tasks[$i].max_test_examples=64")
  done
elif [ -n "${1:-}" ]; then
  echo "usage: bash bench/gpu_check.sh [pack | --dry-run]" >&2
  exit 2
fi
if [ "$DEVICE" = cpu ]; then
  export CUDA_VISIBLE_DEVICES=""  # training takes the GPU whenever torch sees one
  sets+=(--set training.log_every=1)
else
  sets+=(--set training.mixed_precision=bf16 --set training.log_every=25)
fi
REQUESTS=${REQUESTS:-200}
RECORDS=${RECORDS:-8}
RESULT=${RESULT:-${OUT:-$WORK}/gpu_check.json}
if [ -d "$WORK" ] && [ -n "$(ls -A "$WORK")" ] && [ ! -f "$WORK/.gpu_check" ]; then
  echo "WORK=$WORK: not empty and not this check's folder; choose another" >&2
  exit 2
fi
rm -rf "$WORK" && mkdir -p "$WORK" && touch "$WORK/.gpu_check"
WORK=$(cd "$WORK" && pwd)
RUN="$WORK/run"
began=$(date +%s)

# -- 1. dependencies and data ------------------------------------------------------------
if [ -d "$WHEELS" ] && ! "$PY" -c "import fastapi, uvicorn, seqeval" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:$WORK/site"  # these shadow the image's own copies
fi
"$PY" - "$DEVICE" <<'EOF'
import sys

import torch

missing = []
for name in ("camtl", "transformers", "accelerate", "fastapi", "uvicorn", "seqeval"):
    try:
        __import__(name)
    except ImportError:
        missing.append(name)
if missing:
    sys.exit(f"missing: {', '.join(missing)} (see the top of bench/gpu_check.sh: carry .whl)")
from camtl.device import resolve_device
from camtl.errors import CamtlError

try:
    device = resolve_device(sys.argv[1])
except CamtlError as exc:
    sys.exit(f"error: {exc}")
gpu = torch.cuda.get_device_name(device) if device != "cpu" else "none"
print(f"torch {torch.__version__}, device {device}, GPU: {gpu}")
EOF
if [ -d "$PACK" ]; then
  "$PY" bench/gpu_check.py unpack "$PACK" --out "$WORK/cache"
  export CAMTL_CACHE="$WORK/cache"
fi
export CAMTL_FEATURE_CACHE_DIR="$WORK/features"
CACHE=${CAMTL_CACHE:-$HOME/.cache/camtl}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
since() { local ms=$(($(now_ms) - $1)); printf "%d.%03d" $((ms / 1000)) $((ms % 1000)); }
# -- 2. train ----------------------------------------------------------------------------
start=$(now_ms)
timeout 240 "$PY" -m camtl.cli train configs/demo.yaml --output-dir "$RUN" --overwrite \
  "${sets[@]}" 2>&1 | tee "$WORK/train.log" || true
[ -f "$RUN/report.json" ] || { echo "training failed: $WORK/train.log" >&2; exit 1; }
train_s=$(since "$start")

# -- 3. evaluate on dev ------------------------------------------------------------------
start=$(now_ms)
timeout 90 "$PY" -m camtl.cli evaluate "$RUN" --split dev --device "$DEVICE"
eval_s=$(since "$start")

# -- 4. serve and a burst of requests ----------------------------------------------------
PORT=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); \
print(s.getsockname()[1])")
"$PY" -m camtl.cli serve "$RUN" --device "$DEVICE" --port "$PORT" >"$WORK/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
timeout 150 "$PY" bench/gpu_check.py burst --url "http://127.0.0.1:$PORT" --cache "$CACHE" \
  --requests "$REQUESTS" --records "$RECORDS" --concurrency "$REQUESTS" \
  --out "$WORK/burst.json" || { cat "$WORK/serve.log" >&2; exit 1; }
kill -TERM "$server"
wait "$server" || true
trap - EXIT

# -- 5. the figures ----------------------------------------------------------------------
"$PY" bench/gpu_check.py summary --run "$RUN" --device "$DEVICE" --train-wall-s "$train_s" \
  --eval-wall-s "$eval_s" --burst "$WORK/burst.json" --out "$RESULT"
echo "wrote $RESULT ($(($(date +%s) - began)) s in all)"
logs=$(dirname "$RESULT")
if [ "$(cd "$logs" && pwd)" != "$WORK" ]; then  # the logs beside the result ($OUT)
  cp "$WORK/train.log" "$logs/gpu_check_train.log"
  cp "$WORK/serve.log" "$logs/gpu_check_serve.log"
fi
"$PY" - "$RESULT" <<'EOF'
import json
import sys

statuses = json.load(open(sys.argv[1]))["serve"]["statuses"]
failed = sum(n for code, n in statuses.items() if code != "200")
if failed:
    sys.exit(f"FAILED: {failed} requests of the burst were not answered 200 ({statuses}); "
             "see serve.log")
EOF
