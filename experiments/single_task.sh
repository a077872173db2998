#!/usr/bin/env bash
# Single-task baselines and the single-task vs plain multi-task vs CA-MTL table,
# against the 500-step ablation runs (bash experiments/ablation.sh first). About 15 minutes.
#   bash experiments/single_task.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
for config in experiments/configs/single_task/*.yaml; do
  "$BIN/camtl" train "$config" --overwrite
done
"$BIN/camtl" compare runs/single_task/*/ runs/ablation/1_plain_mtl \
  runs/ablation/5_camtl_full_zdim_hidden --markdown
