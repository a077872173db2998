"""Checkpoint selection and early stopping: the main process evaluates on dev, keeps the
best model and decides whether to stop; every rank learns what it needs of that (the
balancer's dev scores, the stop) by a broadcast."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from camtl.balancing import LossBalancer, Need
from camtl.config import TrainingConfig
from camtl.data.prepare import TaskData
from camtl.evaluation.evaluate import evaluate_tasks
from camtl.modeling.model import MultiTaskModel
from camtl.training.checkpoint import Progress
from camtl.training.run_logs import RunLogs

log = logging.getLogger("camtl")


class Selection:
    """Evaluates, keeps the best model and decides on early stopping, for ``Trainer.fit``."""

    def __init__(
        self,
        accelerator: Any,
        run_dir: Path,
        tasks: list[TaskData],
        tokenizer: Any,
        train_cfg: TrainingConfig,
        precision: str,
        balancer: LossBalancer,
    ) -> None:
        self.accelerator = accelerator
        self.is_main = accelerator.is_main_process
        self.run_dir = run_dir
        self.tasks = tasks
        self.tokenizer = tokenizer
        self.train_cfg = train_cfg
        self.precision = precision
        self.balancer = balancer
        # dev results of the saved (best) model, when this process evaluated it: the final
        # report reuses them instead of running the same model over dev again
        self.best_dev_results: dict[str, Any] | None = None

    def evaluate(self, ddp_model: torch.nn.Module, progress: Progress, logs: RunLogs) -> None:
        """Dev evaluation on the main process; saves the model when the aggregate improves."""
        primary: dict[str, float] = {}
        if self.is_main:
            model: MultiTaskModel = self.accelerator.unwrap_model(ddp_model)
            results = evaluate_tasks(
                model,
                self.tasks,
                "dev",
                self.train_cfg.eval_batch_size,
                self.tokenizer.pad_token_id,
                self.accelerator.device,
                with_baselines=False,
                precision=self.precision,
            )
            record = dev_record(results, progress)
            progress.history.append(record)
            logs.dev(record)
            score = results["aggregate"][self.train_cfg.select_by]
            improved = score > progress.best_score
            if improved:
                progress.best_score = score
                self.best_dev_results = results
                model.save_pretrained(self.run_dir, self.tokenizer)
            logs.dev_summary(record, saved=improved)
            primary = record["tasks"]
        if Need.DEV_SCORES in self.balancer.needs:
            self._share_dev_scores(primary)
        self.accelerator.wait_for_everyone()

    def should_stop(self, progress: Progress) -> bool:
        """The main process decides from the dev history; every rank gets its answer."""
        rule = self.train_cfg.early_stopping
        if rule is None:
            return False
        stop = self.is_main and rule.should_stop(
            [r[self.train_cfg.select_by] for r in progress.history]
        )
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            flag = torch.tensor([int(stop)], device=self.accelerator.device)
            stop = bool(broadcast(flag, from_process=0).item())
        if stop:
            log.info(
                "early stopping at step %d: %s has not risen by more than %s in %d evaluations",
                progress.step,
                self.train_cfg.select_by,
                rule.min_delta,
                rule.patience,
            )
        return stop

    def _share_dev_scores(self, primary: dict[str, float]) -> None:
        """Hand the main process's dev scores to the balancer on every rank."""
        names = [t.spec.name for t in self.tasks]
        values = torch.tensor(
            [primary.get(n, 0.0) for n in names],
            dtype=torch.float64,
            device=self.accelerator.device,
        )
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            values = broadcast(values, from_process=0)
        self.balancer.observe_dev_scores(dict(zip(names, values.cpu().tolist())))


def dev_record(results: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The metrics.jsonl line of one dev evaluation at ``progress.step``."""
    agg = results["aggregate"]
    return {
        "step": progress.step,
        "tasks": {n: e["scores"][e["primary_metric"]] for n, e in results["tasks"].items()},
        "scores": {n: e["scores"] for n, e in results["tasks"].items()},
        "mean": agg["mean"],
        "worst": agg["worst"],
        "worst_task": agg["worst_task"],
        "spread": agg["spread"],
        # training seconds so far, evaluations and checkpoints excluded: the
        # clock for "reaches a dev score in no more time"
        "train_s": round(progress.elapsed - progress.overhead, 2),
    }
