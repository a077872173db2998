#!/usr/bin/env bash
# Transfer to a held-out task (the paper's Table 3.3 shape): CA-MTL trained without
# rt_polarity, then `camtl add-task` on 0.1/1/10/100% of its training data (the new task
# embedding row and head only; with JOINT=1 also `--joint` at 10% and 100%), against the
# bare MiniLM fully fine-tuned on the same subsets for the same steps (3 epochs, 10 to 300).
#   bash experiments/transfer.sh        # the demo-sized source (400 steps, fp32): ~35 min, 2 cores
#   SOURCE=experiments/configs/converged/holdout_rt_polarity.yaml OUT=runs/transfer_converged JOINT=1 \
#     TABLE=experiments/results/transfer_converged.json bash experiments/transfer.sh
#                                 # from a source trained to its early stop (hours on CPU)
# A finished source run is kept (a converged one takes hours) and an interrupted one resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
SOURCE=${SOURCE:-experiments/configs/transfer/holdout_rt_polarity.yaml}
OUT=${OUT:-runs/transfer}
TABLE=${TABLE:-experiments/results/transfer.json}
THREADS_SET=()
[ -n "${THREADS:-}" ] && THREADS_SET=(--set "training.num_threads=$THREADS")
# the bare baseline in the source run's precision (the demo-sized source is fp32)
PRECISION=$("$BIN/python" -c "from camtl.config import load_config
print(load_config('$SOURCE').training.mixed_precision)")
source_run=$OUT/holdout_rt_polarity
if ! grep -qs '"completed"' "$source_run/status.json"; then
  resume=(--overwrite)
  [ -d "$source_run/checkpoint" ] && resume=(--resume)
  "$BIN/camtl" train "$SOURCE" --output-dir "$source_run" "${resume[@]}" "${THREADS_SET[@]}"
fi
"$BIN/camtl" evaluate "$source_run" --zero-shot experiments/configs/transfer/rt_polarity.yaml
N=10201  # rt_polarity training examples (camtl data list)
for fraction in 0.001 0.01 0.1 1.0; do
  steps=$("$BIN/python" -c "from camtl.transfer import default_steps
print(default_steps(max(1, round($fraction * $N)), 32))")
  "$BIN/camtl" add-task "$source_run" experiments/configs/transfer/rt_polarity.yaml \
    --fraction "$fraction" --output "$OUT/camtl_$fraction" --overwrite
  if [ "${JOINT:-0}" = 1 ] && { [ "$fraction" = 0.1 ] || [ "$fraction" = 1.0 ]; }; then
    "$BIN/camtl" add-task "$source_run" experiments/configs/transfer/rt_polarity.yaml --joint \
      --fraction "$fraction" --output "$OUT/joint_$fraction" --overwrite
  fi
  "$BIN/camtl" train experiments/configs/transfer/bare_rt_polarity.yaml --overwrite \
    --set "tasks[0].train_fraction=$fraction" --set "training.max_steps=$steps" \
    --set "training.mixed_precision=$PRECISION" "${THREADS_SET[@]}" \
    --output-dir "$OUT/bare_$fraction"
done
"$BIN/python" experiments/transfer_table.py "$OUT" --out "$TABLE"
