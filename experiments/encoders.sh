#!/usr/bin/env bash
# The demo config on the two offline encoders: all-MiniLM-L6-v2 (the default) and
# all-mpnet-base-v2 (MPNet, BERT-base size, relative position bias), same seed, same
# defaults but the freezing: the embeddings and the bottom half, as measured before issue 38
# made nothing frozen the default. A finished run is not trained again. Writes experiments/results/encoders.json
# (per encoder: seconds per training step, dev and test mean and worst, parameters).
#   bash experiments/encoders.sh          (needs `camtl data fetch mpnet`; ~40 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
ROOT=${ROOT:-runs/encoders}
for encoder in minilm mpnet; do
  out="$ROOT/demo_$encoder"
  if grep -qs '"completed"' "$out/status.json"; then continue; fi
  "$BIN/camtl" train configs/demo.yaml --overwrite --output-dir "$out" --set "model.encoder=$encoder" \
    --set model.freeze_embeddings=true --set model.freeze_layers=half
done
"$BIN/python" experiments/encoders.py "$ROOT" --out experiments/results/encoders.json
