#!/usr/bin/env bash
# The Table 3.1 ladder on the offline suite (rows 1-7), one budget, then one table.
#   bash experiments/ablation.sh            (about 65 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
for config in experiments/configs/ablation/*.yaml; do
  "$BIN/camtl" train "$config" --overwrite
done
"$BIN/camtl" compare runs/ablation/*/ --markdown
