"""The run directory: what a finished or unfinished run looks like on disk.

config.yaml            resolved config (every task spelled out)
camtl_model.json       tasks, label maps, model config   } the best model so far,
model.safetensors      weights                           } reloadable with
encoder_config/        encoder architecture              } MultiTaskModel.from_pretrained
tokenizer files
checkpoint/            latest training state (model, optimizer, scheduler, sampler, RNG)
metrics.jsonl          one line per evaluation;  train_log.jsonl: one per logged step
tb/                    TensorBoard events
report.{json,md}, dev_curves.png, report_test.{json,md}
status.json            {"status": "running" | "completed", ...} -- written last
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from camtl.errors import CamtlError
from camtl.fileio import atomic_write_text
from camtl.runfiles import CHECKPOINT_DIR, STATUS_FILE


def read_status(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    data = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    atomic_write_text(run_dir / STATUS_FILE, json.dumps(data, indent=2))


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """The checks of ``prepare_run_dir`` alone: raises what it would, writes nothing."""
    return _run_dir_state(run_dir, resume, overwrite, apply=False)


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Check what is there; returns True when training resumes from a checkpoint.

    Never deletes a folder that is not a camtl run, and never starts over a run by itself.
    """
    return _run_dir_state(run_dir, resume, overwrite, apply=True)


def _run_dir_state(run_dir: Path, resume: bool, overwrite: bool, apply: bool) -> bool:
    status = read_status(run_dir)
    has_checkpoint = (run_dir / CHECKPOINT_DIR).is_dir()
    if resume:
        if not has_checkpoint:
            raise CamtlError(f"{run_dir}: nothing to resume (no {CHECKPOINT_DIR}/ folder)")
        return True
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
            if status is None and not has_checkpoint:
                raise CamtlError(
                    f"{run_dir}: not a camtl run directory; refusing to "
                    "overwrite it (choose another output_dir)"
                )
            if apply:
                shutil.rmtree(run_dir)
        elif status and status.get("status") == "completed":
            raise CamtlError(
                f"{run_dir}: holds a finished run; pass --overwrite to replace it "
                "or set output_dir elsewhere"
            )
        elif has_checkpoint or status:
            raise CamtlError(
                f"{run_dir}: holds an unfinished run; pass --resume to continue "
                "it or --overwrite to start again"
            )
        else:
            raise CamtlError(f"{run_dir}: folder is not empty; choose another output_dir")
    if apply:
        run_dir.mkdir(parents=True, exist_ok=True)
    return False
