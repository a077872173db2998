#!/usr/bin/env bash
# Sampling and balancing evidence: sampler x balancer pairs on the offline suite with CA-MTL, one budget,
# then the table and the time-to-target analysis (about 75 minutes on 2 CPU cores).
#   bash experiments/sampling.sh [CONFIG...]      (default: every experiments/configs/sampling/*.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(experiments/configs/sampling/*.yaml)
for config in "${configs[@]}"; do
  "$BIN/camtl" train "$config" --overwrite
done
"$BIN/camtl" compare runs/sampling/*/ --markdown
"$BIN/python" experiments/sampling_evidence.py runs/sampling/*/ --baseline runs/sampling/1_uniform_equal \
  --out experiments/results/sampling_evidence.json
