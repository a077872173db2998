#!/usr/bin/env bash
# Transfer to a held-out task (issue 5, the paper's Table 3.3 shape): CA-MTL trained without
# rt_polarity, then `camtl add-task` on 0.1/1/10/100% of its training data (the new task
# embedding row and head only), against the bare MiniLM fully fine-tuned on the same subsets
# for the same steps (3 epochs, 10 to 300). About 35 minutes on 2 CPU cores.
#   bash bench/transfer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=runs/transfer
"$BIN/camtl" train configs/transfer/holdout_rt_polarity.yaml --overwrite
"$BIN/camtl" evaluate $OUT/holdout_rt_polarity --zero-shot configs/transfer/rt_polarity.yaml
N=10201  # rt_polarity training examples (camtl data list)
for fraction in 0.001 0.01 0.1 1.0; do
  steps=$("$BIN/python" -c "from camtl.transfer import default_steps
print(default_steps(max(1, round($fraction * $N)), 32))")
  "$BIN/camtl" add-task $OUT/holdout_rt_polarity configs/transfer/rt_polarity.yaml \
    --fraction "$fraction" --output "$OUT/camtl_$fraction" --overwrite
  "$BIN/camtl" train configs/transfer/bare_rt_polarity.yaml --overwrite \
    --set "tasks[0].train_fraction=$fraction" --set "training.max_steps=$steps" \
    --output-dir "$OUT/bare_$fraction"
done
"$BIN/python" bench/transfer_table.py $OUT --out bench/results/transfer.json
