#!/usr/bin/env bash
# The speed issue's before/after table, every figure from one session with nothing else
# running: the demo command's fixed cost (whole command minus training steps, 30 steps)
# on the code before the speed work (BEFORE, a checkout of commit ad133f5, fp32) and on this
# checkout (bf16 where the CPU has it) with an empty and with a filled feature cache; the
# step/inference/FLOP benchmark; the torch.compile probe; then the whole demo, timed.
#   git clone -q . /tmp/before && git -C /tmp/before checkout -q ad133f5
#   BEFORE=/tmp/before bash bench/speed.sh     (about 25 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
if [ -n "${BEFORE:-}" ]; then
  "$PY" bench/fixed_cost.py --src "$BEFORE" --runs 2 --out "$OUT/fixed_cost_before.json"
fi
"$PY" bench/fixed_cost.py --src . --cold --runs 2 --out "$OUT/fixed_cost_cold.json"
"$PY" bench/fixed_cost.py --src . --runs 2 --out "$OUT/fixed_cost_warm.json"
"$PY" bench/step_time.py --out "$OUT/step_time.json"
"$PY" bench/compile_probe.py --out "$OUT/compile_probe.json"
start=$(date +%s)
.venv/bin/camtl train configs/demo.yaml --output-dir "${DEMO_DIR:-/tmp/demo_speed}" --overwrite
echo "demo command: $(( $(date +%s) - start )) s"
