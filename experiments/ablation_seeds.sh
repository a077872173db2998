#!/usr/bin/env bash
# Does the default lose anything? The plain model (row 1), per-layer generators with a d-wide
# z (row 5, the paper) and a 256-wide z (row 6), and the default, shared generators with a
# d-wide z (row 7), each with seeds 13 and 14 beside the ladder's seed 12; one row per
# configuration, mean ± standard deviation over the three seeds.
#   bash experiments/ablation_seeds.sh      (8 runs, about 80 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
ROWS="1_plain_mtl 5_camtl_full_zdim_hidden 6_camtl_full_zdim_256 7_camtl_full_shared_generators"
for seed in ${SEEDS:-13 14}; do
  for row in $ROWS; do
    "$BIN/camtl" train "experiments/configs/ablation/$row.yaml" --overwrite --set "seed=$seed" \
      --output-dir "runs/ablation_seeds/${row}_seed$seed"
  done
done
dirs=()
for row in $ROWS; do dirs+=("runs/ablation/$row" runs/ablation_seeds/"$row"_seed*); done
"$BIN/camtl" compare "${dirs[@]}" --by-seed --markdown
