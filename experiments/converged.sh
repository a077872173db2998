#!/usr/bin/env bash
# The comparison at convergence (docs/research/2026-convergence.md, the paper's Tables 3.1 and 3.4): the
# seven single-task models, then plain multi-task and half-frozen CA-MTL (the paper's freezing,
# the default until issue 38) with three seeds each,
# then the ladder rows 2-4 with three seeds each, every run with early stopping; then
# experiments/results/converged.json and the dev curves. A finished run is kept and an
# interrupted one resumes from its checkpoint, so the script can be stopped and rerun
# (the whole of it is days of CPU time on 2 cores; hours on a GPU).
#   bash experiments/converged.sh [ROW...]     rows: single_task single_task_seed camtl plain
#                                              camtl_mtu camtl_unfrozen ladder_2 ladder_3 ladder_4
#                                              camtl_distill plain_distill (issue 38: taught by
#                                              the single_task runs, which must be there)
#                                              camtl_attention0 (issue 36: half-frozen CA-MTL
#                                              with attention dropout 0, its default until
#                                              issue 38; seed 12)
#                                              single_task_attention0 (the single_task row with
#                                              attention dropout 0, issue 36's default)
#                                              camtl_distill_dro (camtl_distill balanced by
#                                              score_dro toward the single-task dev scores)
#                                              camtl_distill_t2 (camtl_distill with the
#                                              teachers' distributions softened, temperature 2)
#                                              camtl_distill_a4k (camtl_distill with the gold
#                                              weight at 1 from step 4,000: anneal_steps)
#                                              single_task_cross_fit (the single_task row's
#                                              recipe, three cross-fitted runs per task;
#                                              TASKS=a,b for some tasks) and camtl_distill_cf
#                                              (camtl_distill taught by them: every task's)
#   DISTILL_FREEZING=half bash experiments/converged.sh camtl_distill
#       (the config's freezing under distillation, the embeddings and the bottom half; the
#        default here is nothing frozen)
#   THREADS=1 bash experiments/converged.sh camtl     (one thread per run, to run two at once)
#   KEEP=experiments/results/converged.json bash experiments/converged.sh ladder_3
#       (a run that results file records is not trained again, and the file keeps the runs
#        it recorded before whose folders are not here: finished on another machine)
#   KEEP=experiments/results/converged.json KEEP_ROWS=camtl_unfrozen ROOT=runs/converged_2026 \
#     OUT=experiments/results/converged_2026.json bash experiments/converged.sh camtl_unfrozen
#       (only that row of the KEEP file counts and is carried: issue 12's seed 12 joins
#        seeds 13 and 14 trained here)
#   ROOT=runs/converged_2026 OUT=experiments/results/converged_2026.json \
#     bash experiments/converged.sh single_task camtl_distill
#       (a second set of runs, written to its own results file: OUT, default
#        experiments/results/converged.json, and its curves beside it)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
ROOT=${ROOT:-runs/converged}
OUT=${OUT:-experiments/results/converged.json}
SEEDS=${SEEDS:-12 13 14}
THREADS_SET=()
[ -n "${THREADS:-}" ] && THREADS_SET=(--set "training.num_threads=$THREADS")
KEEP_ARG=()
[ -n "${KEEP:-}" ] && KEEP_ARG=(--keep "$KEEP")
for kept_row in ${KEEP_ROWS:-}; do KEEP_ARG+=(--keep-row "$kept_row"); done
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(single_task single_task_seed camtl plain camtl_mtu camtl_unfrozen ladder_2
  ladder_3 ladder_4)
PER_LAYER=(--set model.camtl.generators=per_layer)
UNFROZEN=(--set model.freeze_layers=0 --set model.freeze_embeddings=false)
NO_ALIGN_LN=(--set model.camtl.conditional_alignment=false
  --set model.camtl.conditional_layer_norm=false)

train() {  # train OUT CONFIG [--set ...]: skip when finished, resume when interrupted
  local out=$1 config=$2
  shift 2
  if grep -qs '"completed"' "$out/status.json"; then return; fi
  if [ -n "${KEEP:-}" ] && "$BIN/python" experiments/converged.py "${KEEP_ARG[@]}" \
    --recorded "$(basename "$out")"; then
    echo "$out: finished on another machine, recorded in $KEEP; not trained again" >&2
    return
  fi
  local resume=()
  [ -d "$out/checkpoint" ] && resume=(--resume)
  "$BIN/camtl" train "$config" --output-dir "$out" "${resume[@]}" "${THREADS_SET[@]}" "$@"
}

for row in "${ROWS[@]}"; do
  case $row in
    single_task)
      if [ -n "${KEEP:-}" ] && "$BIN/python" experiments/converged.py "${KEEP_ARG[@]}" \
        --recorded single_task; then
        echo "single_task: recorded in $KEEP; not trained again" >&2
        continue
      fi
      # each task alone, MiniLM fully fine-tuned, dev every 150 steps, at most 3,000 steps
      "$BIN/camtl" baseline single-task experiments/configs/converged/camtl.yaml \
        --output-root "$ROOT/single_task" --max-steps 3000 \
        --set training.eval_every=150 "${THREADS_SET[@]}" ;;
    single_task_seed)  # is one seed enough? wnut16 (the noisiest F1) again with seed 13
      "$BIN/camtl" baseline single-task experiments/configs/converged/camtl.yaml \
        --output-root "$ROOT/single_task_s13" --tasks wnut16 --max-steps 3000 \
        --set seed=13 --set training.eval_every=150 "${THREADS_SET[@]}" ;;
    single_task_cross_fit)  # teachers whose outputs on each example come from a run that
      # never trained on it: three runs per task, each without one third of train
      "$BIN/camtl" baseline single-task experiments/configs/converged/camtl.yaml \
        --output-root "$ROOT/single_task_cross_fit" --folds 3 ${TASKS:+--tasks "$TASKS"} \
        --max-steps 3000 --set training.eval_every=150 "${THREADS_SET[@]}" ;;
    single_task_attention0)  # issue 38: did attention dropout 0 (the default from issue 36
      # to 38) cost the fully fine-tuned single-task models? the single_task row again (seed
      # 12) with it; TASKS=a,b for some tasks only
      "$BIN/camtl" baseline single-task experiments/configs/converged/camtl.yaml \
        --output-root "$ROOT/single_task_attention0" ${TASKS:+--tasks "$TASKS"} \
        --max-steps 3000 --set training.eval_every=150 --set model.attention_dropout=0.0 \
        "${THREADS_SET[@]}" ;;
    camtl | plain)
      for seed in $SEEDS; do
        train "$ROOT/${row}_s$seed" "experiments/configs/converged/$row.yaml" --set "seed=$seed"
      done ;;
    camtl_mtu)  # CA-MTL with MT-Uncertainty sampling (exact mode) in place of temperature
      for seed in $SEEDS; do
        train "$ROOT/camtl_mtu_s$seed" experiments/configs/converged/camtl.yaml --set "seed=$seed" \
          --set "training.sampler={name: mt_uncertainty}"
      done ;;
    camtl_unfrozen)  # the test of the likeliest cause of the gap: nothing frozen
      for seed in $SEEDS; do
        train "$ROOT/camtl_unfrozen_s$seed" experiments/configs/converged/camtl.yaml \
          --set "seed=$seed" "${UNFROZEN[@]}"
      done ;;
    camtl_attention0)  # issue 36: the camtl row's recipe with attention dropout 0, one seed
      train "$ROOT/camtl_attention0_s12" experiments/configs/converged/camtl.yaml --set seed=12 \
        --set model.attention_dropout=0.0 ;;
    camtl_distill | plain_distill | camtl_distill_dro | camtl_distill_t2 | camtl_distill_cf | \
      camtl_distill_a4k)
      # teacher annealing from the single-task runs; camtl_distill_dro: balanced by score_dro
      # toward the teachers' dev scores; camtl_distill_t2: the teachers' distributions at
      # temperature 2; camtl_distill_cf: taught by the cross-fitted runs; camtl_distill_a4k:
      # the gold weight reaches 1 at step 4,000 (early stopping ended camtl_distill's runs at
      # 5,000-6,750 of 8,000, the gold weight at 0.63-0.84)
      base=${row%%_*}
      teachers=$ROOT/single_task
      [ "$row" = camtl_distill_cf ] && teachers=$ROOT/single_task_cross_fit
      freezing=()
      [ "$base" = camtl ] && [ "${DISTILL_FREEZING:-unfrozen}" = unfrozen ] && freezing=("${UNFROZEN[@]}")
      balancer=()
      if [ "$row" = camtl_distill_dro ]; then
        targets=$("$BIN/python" experiments/converged.py --targets "$ROOT/single_task")
        balancer=(--set "training.balancer={name: score_dro, options: {targets: $targets}}")
      fi
      temperature=1.0
      [ "$row" = camtl_distill_t2 ] && temperature=2.0
      anneal=null
      [ "$row" = camtl_distill_a4k ] && anneal=4000
      for seed in $SEEDS; do
        train "$ROOT/${row}_s$seed" "experiments/configs/converged/$base.yaml" --set "seed=$seed" \
          --set "training.distillation={teachers: $teachers, temperature: $temperature, anneal_steps: $anneal}" \
          "${freezing[@]}" \
          "${balancer[@]}"
      done ;;
    ladder_2)  # conditional attention alone
      for seed in $SEEDS; do
        train "$ROOT/ladder_2_cond_attention_s$seed" experiments/configs/converged/camtl.yaml \
          --set "seed=$seed" "${PER_LAYER[@]}" "${NO_ALIGN_LN[@]}" --set model.camtl.bottleneck=none
      done ;;
    ladder_3)  # + conditional bottleneck
      for seed in $SEEDS; do
        train "$ROOT/ladder_3_cond_bottleneck_s$seed" experiments/configs/converged/camtl.yaml \
          --set "seed=$seed" "${PER_LAYER[@]}" "${NO_ALIGN_LN[@]}"
      done ;;
    ladder_4)  # full CA-MTL with the paper's per-layer generators
      for seed in $SEEDS; do
        train "$ROOT/ladder_4_full_per_layer_s$seed" experiments/configs/converged/camtl.yaml \
          --set "seed=$seed" "${PER_LAYER[@]}"
      done ;;
    *) echo "unknown row: $row" >&2; exit 2 ;;
  esac
done

"$BIN/python" experiments/converged.py "${KEEP_ARG[@]}" --out "$OUT" --plot "${OUT%.json}_curves.png" \
  --row single_task "$ROOT"/single_task/*/ \
  --row plain "$ROOT"/plain_s*/ --row camtl "$ROOT"/camtl_s*/ \
  --row camtl_mtu "$ROOT"/camtl_mtu_s*/ --row camtl_unfrozen "$ROOT"/camtl_unfrozen_s*/ \
  --row ladder_2_cond_attention "$ROOT"/ladder_2_cond_attention_s*/ \
  --row ladder_3_cond_bottleneck "$ROOT"/ladder_3_cond_bottleneck_s*/ \
  --row ladder_4_full_per_layer "$ROOT"/ladder_4_full_per_layer_s*/ \
  --row camtl_attention0 "$ROOT"/camtl_attention0_s*/ \
  --row camtl_distill "$ROOT"/camtl_distill_s*/ --row plain_distill "$ROOT"/plain_distill_s*/ \
  --row camtl_distill_dro "$ROOT"/camtl_distill_dro_s*/ \
  --row camtl_distill_t2 "$ROOT"/camtl_distill_t2_s*/ \
  --row camtl_distill_a4k "$ROOT"/camtl_distill_a4k_s*/ \
  --row camtl_distill_cf "$ROOT"/camtl_distill_cf_s*/ \
  --row single_task_attention0 "$ROOT"/single_task_attention0/*/
