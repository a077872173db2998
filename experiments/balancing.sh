#!/usr/bin/env bash
# The balancing evidence on the offline suite (docs/research/2026-sampling-balancing.md): each row is
# experiments/configs/balancing/suite.yaml with a sampler, a balancer and seeds. A finished run is kept,
# an interrupted one resumes from its checkpoint, so the script can be stopped and rerun.
# About 20 minutes a run on 2 CPU cores; 20 runs.
#   bash experiments/balancing.sh [ROW...]          (default: every row)
#   SINGLE_TASK="runs/converged_single_task/*" bash experiments/balancing.sh   (relative worst)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
ROOT=${ROOT:-runs/balancing}
UNIFORM='{name: uniform}'
AMORTIZED='{name: mt_uncertainty, options: {mode: amortized}}'
# name | sampler | balancer | seeds [| one more --set, e.g. the SAM step]
ROWS=(
  "uniform_equal|$UNIFORM|{name: equal}|12 13 14"
  "mtu_amortized_equal|$AMORTIZED|{name: equal}|12 13 14"
  "uniform_lookahead_dro|$UNIFORM|{name: lookahead_dro}|12 13 14"
  "uniform_famo|$UNIFORM|{name: famo}|12 13 14"
  "temperature_equal|{name: temperature}|{name: equal}|12"
  "mtu_exact_equal|{name: mt_uncertainty}|{name: equal}|12"
  "uniform_group_dro_relative|$UNIFORM|{name: group_dro, options: {relative_losses: true}}|12"
  "uniform_pcgrad|$UNIFORM|{name: pcgrad}|12"
  "mtu_lookahead_dro|$AMORTIZED|{name: lookahead_dro}|12"
  "uniform_score_dro|$UNIFORM|{name: score_dro}|12 13 14"
  "uniform_equal_sam|$UNIFORM|{name: equal}|12 13 14|training.sam={rho: 0.05}"
)
wanted=("$@")
for row in "${ROWS[@]}"; do
  IFS='|' read -r name sampler balancer seeds row_set <<<"$row"
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
  for seed in $seeds; do
    out="$ROOT/${name}_s$seed"
    if grep -qs '"completed"' "$out/status.json"; then continue; fi
    resume=()
    [ -d "$out/checkpoint" ] && resume=(--resume)
    "$BIN/camtl" train experiments/configs/balancing/suite.yaml --output-dir "$out" "${resume[@]}" \
      --set "seed=$seed" --set "training.sampler=$sampler" --set "training.balancer=$balancer" \
      ${EXTRA_SET:+--set "$EXTRA_SET"} ${row_set:+--set "$row_set"}
  done
done
# shellcheck disable=SC2086
"$BIN/camtl" compare --by-seed "$ROOT"/*/ ${SINGLE_TASK:-} --markdown
