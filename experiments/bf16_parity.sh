#!/usr/bin/env bash
# Does bf16 cost accuracy? Ablation row 7 (CA-MTL half frozen) trained in bf16 autocast with
# seeds 12, 13 and 14, then one row per precision, mean ± sd over the seeds, beside the fp32
# runs of experiments/ablation_seeds.sh where they exist.
#   bash experiments/bf16_parity.sh      (3 runs of 500 steps)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
ROW=7_camtl_full_shared_generators
for seed in ${SEEDS:-12 13 14}; do
  "$BIN/camtl" train "experiments/configs/ablation/$ROW.yaml" --overwrite --set "seed=$seed" \
    --set training.mixed_precision=bf16 --output-dir "runs/bf16_parity/${ROW}_seed$seed"
done
dirs=(runs/bf16_parity/"$ROW"_seed*)
for fp32 in "runs/ablation/$ROW" runs/ablation_seeds/"$ROW"_seed*; do
  [ -d "$fp32" ] && dirs+=("$fp32")
done
"$BIN/camtl" compare "${dirs[@]}" --by-seed --markdown
