#!/usr/bin/env bash
# Is the 256-wide task embedding (the default) worse than the d-wide one, or was one seed
# noise? Rows 5 (z = d = 384) and 6 (z = 256) of the ablation with two more seeds.
#   bash bench/ablation_seeds.sh      (about 40 minutes on 2 CPU cores; SEEDS="13" for one)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
for seed in ${SEEDS:-13 14}; do
  for row in 5_camtl_full_zdim_hidden 6_camtl_full_zdim_256; do
    "$BIN/camtl" train "configs/ablation/$row.yaml" --overwrite --set "seed=$seed" \
      --output-dir "runs/ablation_seeds/${row}_seed$seed"
  done
done
"$BIN/camtl" compare runs/ablation/5_camtl_full_zdim_hidden runs/ablation/6_camtl_full_zdim_256 \
  runs/ablation_seeds/*/ --markdown
