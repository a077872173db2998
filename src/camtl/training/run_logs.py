"""What a run reports while it trains: train_log.jsonl and metrics.jsonl, TensorBoard,
the progress bar and the log lines. Only the main process writes files: the trainer and
selection call ``train``, ``dev`` and ``dev_summary`` there alone."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from camtl.fileio import append_jsonl
from camtl.runfiles import METRICS_FILE, TRAIN_LOG_FILE
from camtl.training.checkpoint import Progress
from camtl.training.step import StepParts

log = logging.getLogger("camtl")


class RunLogs:
    """The logs of one run from ``step`` on; ``resumed``: a killed run's TensorBoard
    events after ``step`` are dropped."""

    def __init__(
        self, run_dir: Path, is_main: bool, step: int, max_steps: int, resumed: bool
    ) -> None:
        from tqdm.auto import tqdm

        self.run_dir = run_dir
        self.writer = _tensorboard(run_dir, step, resumed) if is_main else None
        self.running: dict[str, float] = {}  # moving average of each loss, for the bar
        self.bar = tqdm(
            total=max_steps,
            initial=step,
            disable=not is_main,
            desc="train",
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def progress(self, losses: dict[str, float]) -> None:
        """One more step on the bar, with each task's loss averaged over recent steps."""
        for key, value in losses.items():  # exponential moving average per task loss
            self.running[key] = (
                value if key not in self.running else 0.9 * self.running[key] + 0.1 * value
            )
        self.bar.update(1)
        self.bar.set_postfix(
            {
                k.removeprefix("loss/"): f"{v:.3f}"
                for k, v in self.running.items()
                if k.startswith("loss/")
            },
            refresh=False,
        )

    def train(self, progress: Progress, losses: dict[str, float], parts: StepParts) -> None:
        """A train_log.jsonl line: losses, learning rate, examples drawn, task weights."""
        step = progress.step
        lr = parts.lr_scheduler.get_last_lr()[0]
        names = [t.spec.name for t in parts.tasks]
        record = {
            "step": step,
            "lr": lr,
            "elapsed_s": round(progress.elapsed, 2),
            **losses,
            "examples_drawn": dict(zip(names, parts.batch_scheduler.drawn)),
            "task_weights": parts.balancer.weights(),
        }
        gradient_weights = parts.balancer.gradient_weights()
        if gradient_weights is not None:
            record["gradient_weights"] = gradient_weights
        append_jsonl(self.run_dir / TRAIN_LOG_FILE, record)
        if self.writer is not None:
            for key, value in losses.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.add_scalar("train/lr", lr, step)

    def dev(self, record: dict[str, Any]) -> None:
        """A metrics.jsonl line: one dev evaluation."""
        append_jsonl(self.run_dir / METRICS_FILE, record)

    def dev_summary(self, record: dict[str, Any], saved: bool) -> None:
        """The evaluation's log line and TensorBoard scalars."""
        step = record["step"]
        log.info(
            "step %d dev: mean %.2f worst %.2f (%s)%s",
            step,
            record["mean"],
            record["worst"],
            record["worst_task"],
            "  [best, saved]" if saved else "",
        )
        if self.writer is not None:
            for name, value in record["tasks"].items():
                self.writer.add_scalar(f"dev/{name}", value, step)
            self.writer.add_scalar("dev/mean", record["mean"], step)
            self.writer.add_scalar("dev/worst", record["worst"], step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _tensorboard(run_dir: Path, step: int, resumed: bool) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but stay usable without it
        return None
    # purge_step: on resume, drop the events the killed run logged after the checkpoint
    return SummaryWriter(str(run_dir / "tb"), purge_step=step + 1 if resumed else None)
