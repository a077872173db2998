"""Checkpoints: saving the training state whole or not at all, and resuming from it.

A checkpoint is accelerate's state (model, optimizer, LR scheduler, RNG of every rank,
plus the batch scheduler and the balancer registered with it) and the trainer's
``Progress`` in ``trainer_state.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from camtl.errors import CamtlError
from camtl.fileio import atomic_write_text, read_jsonl
from camtl.runfiles import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    TRAIN_LOG_FILE,
    TRAINER_STATE_FILE,
)
from camtl.sampling import BatchScheduler
from camtl.training.setup import apply_optimizer_flags

log = logging.getLogger("camtl")
# Test hook: hard-kill the process (no cleanup, like SIGKILL) right after this optimizer step.
KILL_ENV = "CAMTL_KILL_AFTER_STEP"


@dataclass
class Progress:
    """How far a run has got; saved with every checkpoint."""

    step: int = 0
    best_score: float = -math.inf  # the select_by aggregate of the saved (best) model
    elapsed: float = 0.0  # seconds since the run started, across resumes
    overhead: float = 0.0  # seconds of evaluation and checkpointing inside ``elapsed``
    history: list[dict[str, Any]] = field(default_factory=list)  # the dev evaluations
    # the mixed precision the run trains in, as resolved ("bf16", "no"...); a resume must
    # resolve to the same (rundir.check_same_precision); None in checkpoints before it
    precision: str | None = None


class BatchSchedulerState:
    """Adapter so accelerate's save_state/load_state carry the batch scheduler's state."""

    def __init__(self, batch_scheduler: BatchScheduler) -> None:
        self.batch_scheduler = batch_scheduler

    def state_dict(self) -> dict[str, Any]:
        return {"json": json.dumps(self.batch_scheduler.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_scheduler.load_state_dict(json.loads(state["json"]))


def kill_after_step() -> int:
    """The step after which the test hook ``KILL_ENV`` kills the process (0: never)."""
    return int(os.environ.get(KILL_ENV, "0") or 0)


def save(accelerator: Any, run_dir: Path, progress: Progress) -> None:
    """Write checkpoint.tmp fully, then swap it in: a kill never leaves half a state."""
    tmp = run_dir / (CHECKPOINT_DIR + ".tmp")
    final = run_dir / CHECKPOINT_DIR
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()  # every rank's RNG state is in tmp before the swap
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE_FILE).write_text(json.dumps(asdict(progress)), encoding="utf-8")
        old = run_dir / (CHECKPOINT_DIR + ".old")
        shutil.rmtree(old, ignore_errors=True)  # one a kill left mid-delete: not in the way
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load(
    accelerator: Any,
    run_dir: Path,
    optimizer: torch.optim.Optimizer,
    optimizer_flags: dict[str, bool | None],
) -> Progress:
    """Load the checkpoint into what accelerate prepared; on the main process, drop the
    evaluations and train logs written after it. Returns the checkpoint's progress."""
    folder = run_dir / CHECKPOINT_DIR
    try:
        accelerator.load_state(str(folder))
    except (RuntimeError, ValueError, KeyError) as exc:  # nothing on disk changed yet
        raise CamtlError(
            f"{folder}: the checkpoint does not fit this config (its tasks, labels or "
            f"balancer differ from the run's {CONFIG_FILE}; set them back to resume): "
            f"{str(exc).strip().splitlines()[0][:200]}"
        ) from None
    apply_optimizer_flags(optimizer, optimizer_flags)
    state = json.loads((folder / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    progress = Progress(**state)
    if accelerator.is_main_process:
        truncate_logs(run_dir, progress)
    log.info("resumed from step %d", progress.step)
    return progress


def truncate_logs(run_dir: Path, progress: Progress) -> None:
    """metrics.jsonl and train_log.jsonl as they were at ``progress``'s checkpoint."""
    lines = "".join(json.dumps(r) + "\n" for r in progress.history)
    atomic_write_text(run_dir / METRICS_FILE, lines)
    logged = read_jsonl(run_dir / TRAIN_LOG_FILE, torn_tail=True)
    atomic_write_text(
        run_dir / TRAIN_LOG_FILE,
        "".join(json.dumps(r) + "\n" for r in logged if r["step"] <= progress.step),
    )
