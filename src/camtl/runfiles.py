"""The names of the files and folders in a run directory (docs/usage.md: "What a run
directory holds"), in one place so that writers and readers agree."""

from __future__ import annotations

CONFIG_FILE = "config.yaml"  # the resolved run config, every task spelled out
STATUS_FILE = "status.json"  # written last; says "completed" only when all else is there
METRICS_FILE = "metrics.jsonl"  # one line per dev evaluation
TRAIN_LOG_FILE = "train_log.jsonl"  # one line per logged step
CHECKPOINT_DIR = "checkpoint"  # resume state, removed when the run completes
TRAINER_STATE_FILE = "trainer_state.json"  # inside the checkpoint
SKIPPED_ROWS_FILE = "skipped_rows.jsonl"  # rows left out under source.on_bad_rows: skip
CROSS_FIT_FILE = "cross_fit.json"  # a cross-fitted run's training examples, by digest
WEIGHTS_FILE = "model.safetensors"
MODEL_FILE = "camtl_model.json"  # tasks, label maps, model config
ENCODER_CONFIG_DIR = "encoder_config"
TOKENIZER_FILE = "tokenizer.json"  # the fast tokenizer (camtl needs one), in runs and exports
EXPORT_FILE = "export.json"  # an ONNX export's record (camtl export), not in a run
DEV_CURVES_FILE = "dev_curves.png"
TASK_SHARES_FILE = "task_shares.png"
LOSS_WEIGHTS_FILE = "loss_weights.png"  # only when the balancer's weights moved
COVSIM_FILE = "covsim.json"
TRANSFER_FILE = "transfer.json"  # what add-task did
MODEL_CARD_FILE = "README.md"  # the model card (camtl.model_card)
