"""The training loop on accelerate: mixed-task batches, evaluation, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from camtl.balancing import Need, build_balancer
from camtl.config import RunConfig, save_config
from camtl.data.collate import collate_features
from camtl.evaluation.evaluate import evaluate_tasks
from camtl.fileio import append_jsonl, read_jsonl
from camtl.modeling.frozen_cast import cache_frozen_casts, use_frozen_cast_cache
from camtl.modeling.model import MultiTaskModel
from camtl.runfiles import (
    CONFIG_FILE,
    METRICS_FILE,
    TRAIN_LOG_FILE,
    TRAINER_STATE_FILE,
)
from camtl.sampling import BatchScheduler, build_sampler
from camtl.training.final_report import (
    FinalReportSettings,
    plot_task_shares_from_log,
    write_final_reports,
)
from camtl.training.rundir import (
    CHECKPOINT_DIR,
    atomic_write_text,
    check_run_dir,
    check_same_model,
    prepare_run_dir,
    write_skipped_rows,
    write_status,
)
from camtl.training.setup import (
    apply_optimizer_flags,
    build_accelerator,
    build_balance_context,
    build_model_and_data,
    build_optimizer,
    check_balancer_needs,
)
from camtl.training.uncertainty import make_scorer, resolve_proxies

log = logging.getLogger("camtl")
# Test hook: hard-kill the process (no cleanup, like SIGKILL) right after this optimizer step.
KILL_ENV = "CAMTL_KILL_AFTER_STEP"


class _SchedulerState:
    """Adapter so accelerate's save_state/load_state carry the batch scheduler's state."""

    def __init__(self, scheduler: BatchScheduler) -> None:
        self.scheduler = scheduler

    def state_dict(self) -> dict[str, Any]:
        return {"json": json.dumps(self.scheduler.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(json.loads(state["json"]))


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        resume: bool = False,
        overwrite: bool = False,
        command: str | None = None,
    ) -> None:
        from accelerate.utils import set_seed

        self.config = config
        self.train_cfg = config.training
        self.run_dir = Path(config.output_dir)
        self.command = command or " ".join(sys.argv)
        if config.training.num_threads:
            torch.set_num_threads(config.training.num_threads)
        # "auto" resolved once for this machine; evaluation and MT-U scoring use it too
        self.precision = config.precision("cuda" if torch.cuda.is_available() else "cpu")
        self.accelerator = build_accelerator(config, self.precision)
        self.is_main = self.accelerator.is_main_process
        if self.is_main:  # fail fast (finished run, non-empty folder) before loading data
            check_run_dir(self.run_dir, resume, overwrite)
            if resume:
                check_same_model(self.run_dir, config)
        set_seed(config.seed)
        # Read and validate every data file, build the model and the sampler BEFORE the run
        # directory is made (or an old one replaced under --overwrite): a bad data file or
        # option must not leave a half-made run behind that blocks the next attempt.
        self.tasks, self.model, self.tokenizer = build_model_and_data(config)
        self.sampler = build_sampler(
            config.training.sampler.name,
            config.training.sampler.options,
            [len(t.features["train"]) for t in self.tasks],
            config.training.max_steps,
        )
        self.scoring = self.sampler.scoring_request()
        self.proxies = resolve_proxies(self.tasks, self.scoring.proxies) if self.scoring else {}
        self.balancer = build_balancer(
            config.training.balancer.name,
            config.training.balancer.options,
            [t.spec.name for t in self.tasks],
        )
        check_balancer_needs(self.tasks, self.balancer)
        self.resuming = resume
        if self.is_main:
            self.resuming = prepare_run_dir(self.run_dir, resume, overwrite)
            write_skipped_rows(self.run_dir, self.tasks)
        self.accelerator.wait_for_everyone()
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.best_score = -math.inf
        self.stop_reason = "max_steps"  # or "early_stopping"
        self.elapsed = 0.0
        self.overhead = 0.0  # seconds of evaluation and checkpointing inside ``elapsed``
        # dev results of the saved (best) model, when this process evaluated it: the final
        # report reuses them instead of running the same model over dev again
        self.best_dev_results: dict[str, Any] | None = None

    # -- set-up --------------------------------------------------------------------------
    def _setup_training(self) -> None:
        cfg = self.train_cfg
        if use_frozen_cast_cache(cfg.cast_frozen_once, self.precision):
            cache_frozen_casts(self.model)
        optimizer = build_optimizer(self.model, self.config)
        self.optimizer_flags = {k: optimizer.defaults[k] for k in ("fused", "foreach")}
        self.balancer.to(self.accelerator.device)
        balancer_params = [p for p in self.balancer.parameters() if p.requires_grad]
        if balancer_params:  # uncertainty weighting learns its log-variances
            optimizer.add_param_group({"params": balancer_params, "weight_decay": 0.0})
        self.balance_context = build_balance_context(
            self.balancer, self.model, self._all_reduce_mean
        )
        from transformers import get_linear_schedule_with_warmup

        lr_schedule = get_linear_schedule_with_warmup(
            optimizer, int(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps
        )
        self.ddp_model, self.optimizer, self.lr_schedule = self.accelerator.prepare(
            self.model, optimizer, lr_schedule
        )
        self.world = self.accelerator.num_processes
        scorer = None
        if self.scoring is not None:
            scorer = make_scorer(
                self.accelerator.unwrap_model(self.ddp_model),
                self.tasks,
                self.tokenizer.pad_token_id,
                self.accelerator.device,
                cfg.eval_batch_size,
                self.scoring.mc_samples,
                self.config.seed,
                lambda: self.sampler.candidates_scored() or 0,
                self.proxies,
                self.precision,
                shard=(self.accelerator.process_index, self.accelerator.num_processes),
                reduce_sum=lambda t: self.accelerator.reduce(t.contiguous(), reduction="sum"),
            )
        self.scheduler = BatchScheduler(
            self.sampler,
            [len(t.features["train"]) for t in self.tasks],
            cfg.batch_size * self.world,
            cfg.batch_mode,
            self.config.seed,
            scorer,
        )
        self.accelerator.register_for_checkpointing(_SchedulerState(self.scheduler))
        self.accelerator.register_for_checkpointing(self.balancer)

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write checkpoint.tmp fully, then swap it in: a kill never leaves half a state."""
        tmp = self.run_dir / (CHECKPOINT_DIR + ".tmp")
        final = self.run_dir / CHECKPOINT_DIR
        if self.is_main and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp), safe_serialization=True)
        self.accelerator.wait_for_everyone()  # every rank's RNG state is in tmp before the swap
        if self.is_main:
            state = {
                "step": self.step,
                "best_score": self.best_score,
                "elapsed": self.elapsed,
                "overhead": self.overhead,
                "history": self.history,
            }
            (tmp / TRAINER_STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
            old = self.run_dir / (CHECKPOINT_DIR + ".old")
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def load_checkpoint(self) -> None:
        folder = self.run_dir / CHECKPOINT_DIR
        self.accelerator.load_state(str(folder))
        apply_optimizer_flags(self.optimizer, self.optimizer_flags)
        state = json.loads((folder / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
        self.step = state["step"]
        self.best_score = state["best_score"]
        self.elapsed = state["elapsed"]
        self.overhead = state.get("overhead", 0.0)
        self.history = state["history"]
        if self.is_main:  # drop evaluations and train logs written after the checkpoint
            lines = "".join(json.dumps(r) + "\n" for r in self.history)
            atomic_write_text(self.run_dir / METRICS_FILE, lines)
            logged = read_jsonl(self.run_dir / TRAIN_LOG_FILE)
            atomic_write_text(
                self.run_dir / TRAIN_LOG_FILE,
                "".join(json.dumps(r) + "\n" for r in logged if r["step"] <= self.step),
            )
        log.info("resumed from step %d", self.step)

    # -- the loop ------------------------------------------------------------------------
    def _micro_batch(self) -> dict[str, torch.Tensor]:
        global_batch = self.scheduler.next_batch(self.step)
        mine = BatchScheduler.shard(global_batch, self.accelerator.process_index, self.world)
        features = [self.tasks[t].features["train"][i] for t, i in mine]
        batch = collate_features(features, self.tokenizer.pad_token_id)
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}

    def train_step(self) -> dict[str, float]:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches."""
        accum = self.train_cfg.gradient_accumulation_steps
        task_losses: dict[str, list[float]] = {}
        total = 0.0
        for micro in range(accum):
            batch = self._micro_batch()
            sync = micro == accum - 1
            context = self.accelerator.no_sync(self.ddp_model) if not sync else _null()
            self.balance_context.step = self.step
            self.balance_context.update = sync
            self.balance_context.learning_rate = self.lr_schedule.get_last_lr()[0]
            with context, self.accelerator.autocast():
                out = self.ddp_model(**batch)
                loss = self.balancer.combine(out.task_losses, self.balance_context) / accum
            self.accelerator.backward(loss)
            total += float(loss.detach())
            for name, value in out.task_losses.items():
                task_losses.setdefault(name, []).append(float(value.detach()))
        if self.world > 1:  # the balancer is outside DDP: average its gradients by hand
            for param in self.balancer.parameters():
                if param.grad is not None:
                    param.grad = self._all_reduce_mean(param.grad)
        if self.train_cfg.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(
                self.ddp_model.parameters(), self.train_cfg.max_grad_norm
            )
        self.optimizer.step()
        self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": total, **{f"loss/{k}": sum(v) / len(v) for k, v in task_losses.items()}}

    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return tensor
        return self.accelerator.reduce(tensor.contiguous(), reduction="mean")

    def evaluate_and_select(self) -> None:
        """Dev evaluation on the main process; saves the model when the aggregate improves."""
        primary: dict[str, float] = {}
        if self.is_main:
            model = self.accelerator.unwrap_model(self.ddp_model)
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
            agg = results["aggregate"]
            primary = {n: e["scores"][e["primary_metric"]] for n, e in results["tasks"].items()}
            record = {
                "step": self.step,
                "tasks": primary,
                "scores": {n: e["scores"] for n, e in results["tasks"].items()},
                "mean": agg["mean"],
                "worst": agg["worst"],
                "worst_task": agg["worst_task"],
                "spread": agg["spread"],
                # training seconds so far, evaluations and checkpoints excluded: the
                # clock for "reaches a dev score in no more time"
                "train_s": round(self.elapsed - self.overhead, 2),
            }
            self.history.append(record)
            append_jsonl(self.run_dir / METRICS_FILE, record)
            score = agg[self.train_cfg.select_by]
            improved = score > self.best_score
            if improved:
                self.best_score = score
                self.best_dev_results = results
                model.save_pretrained(self.run_dir, self.tokenizer)
            log.info(
                "step %d dev: mean %.2f worst %.2f (%s)%s",
                self.step,
                agg["mean"],
                agg["worst"],
                agg["worst_task"],
                "  [best, saved]" if improved else "",
            )
            if self.writer is not None:
                for name, value in record["tasks"].items():
                    self.writer.add_scalar(f"dev/{name}", value, self.step)
                self.writer.add_scalar("dev/mean", agg["mean"], self.step)
                self.writer.add_scalar("dev/worst", agg["worst"], self.step)
        if Need.DEV_SCORES in self.balancer.needs:
            self._share_dev_scores(primary)
        self.accelerator.wait_for_everyone()

    def _share_dev_scores(self, primary: dict[str, float]) -> None:
        """Hand the main process's dev scores to the balancer on every rank."""
        names = [t.spec.name for t in self.tasks]
        values = torch.tensor(
            [primary.get(n, 0.0) for n in names],
            dtype=torch.float64,
            device=self.accelerator.device,
        )
        if self.world > 1:
            from accelerate.utils import broadcast

            values = broadcast(values, from_process=0)
        self.balancer.observe_dev_scores(dict(zip(names, values.cpu().tolist())))

    def fit(self) -> Path:
        from tqdm.auto import tqdm

        cfg = self.train_cfg
        self._setup_training()
        if self.is_main and not self.resuming:
            save_config(self.config, self.run_dir / CONFIG_FILE)
            write_status(self.run_dir, "running")
        if self.resuming:
            self.load_checkpoint()
        self.writer = self._tensorboard()
        kill_after = int(os.environ.get(KILL_ENV, "0") or 0)
        checkpoint_every = cfg.checkpoint_every or cfg.eval_every
        running: dict[str, float] = {}
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            disable=not self.is_main,
            desc="train",
            dynamic_ncols=True,
            file=sys.stderr,
        )
        self.ddp_model.train()
        started = time.perf_counter() - self.elapsed
        while self.step < cfg.max_steps:
            logs = self.train_step()
            self.elapsed = time.perf_counter() - started
            for key, value in logs.items():  # exponential moving average per task loss
                running[key] = value if key not in running else 0.9 * running[key] + 0.1 * value
            bar.update(1)
            bar.set_postfix(
                {
                    k.removeprefix("loss/"): f"{v:.3f}"
                    for k, v in running.items()
                    if k.startswith("loss/")
                },
                refresh=False,
            )
            if self.is_main and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                self._log_step(logs)
            paused = time.perf_counter()
            evaluated = self.step % cfg.eval_every == 0 or self.step == cfg.max_steps
            if evaluated:
                self.evaluate_and_select()
            stop = evaluated and self.step < cfg.max_steps and self.early_stop_reached()
            if self.step % checkpoint_every == 0 and self.step < cfg.max_steps and not stop:
                self.save_checkpoint()
            self.overhead += time.perf_counter() - paused
            if kill_after and self.step == kill_after:
                os._exit(137)
            if stop:
                self.stop_reason = "early_stopping"
                log.info(
                    "early stopping at step %d: %s has not risen by more than %s in %d evaluations",
                    self.step,
                    cfg.select_by,
                    cfg.early_stopping.min_delta if cfg.early_stopping else 0,
                    cfg.early_stopping.patience if cfg.early_stopping else 0,
                )
                break
        bar.close()
        self.accelerator.wait_for_everyone()
        if self.is_main:
            self.finish()
        self.accelerator.wait_for_everyone()
        return self.run_dir

    def early_stop_reached(self) -> bool:
        """The main process decides from the dev history; every rank gets its answer."""
        rule = self.train_cfg.early_stopping
        if rule is None:
            return False
        stop = self.is_main and rule.should_stop(
            [r[self.train_cfg.select_by] for r in self.history]
        )
        if self.world > 1:
            from accelerate.utils import broadcast

            flag = torch.tensor([int(stop)], device=self.accelerator.device)
            stop = bool(broadcast(flag, from_process=0).item())
        return stop

    def _tensorboard(self) -> Any:
        if not self.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency, but stay usable without it
            return None
        # purge_step: on resume, drop the events the killed run logged after the checkpoint
        return SummaryWriter(
            str(self.run_dir / "tb"), purge_step=self.step + 1 if self.resuming else None
        )

    def _log_step(self, logs: dict[str, float]) -> None:
        lr = self.lr_schedule.get_last_lr()[0]
        drawn = dict(zip([t.spec.name for t in self.tasks], self.scheduler.drawn))
        record = {
            "step": self.step,
            "lr": lr,
            "elapsed_s": round(self.elapsed, 2),
            **logs,
            "examples_drawn": drawn,
            "task_weights": self.balancer.weights(),
        }
        gradient_weights = self.balancer.gradient_weights()
        if gradient_weights is not None:
            record["gradient_weights"] = gradient_weights
        append_jsonl(self.run_dir / TRAIN_LOG_FILE, record)
        if self.writer is not None:
            for key, value in logs.items():
                self.writer.add_scalar(f"train/{key}", value, self.step)
            self.writer.add_scalar("train/lr", lr, self.step)

    def finish(self) -> None:
        """Evaluate the best model on dev and test, write the reports, mark the run done."""
        if self.writer is not None:
            self.writer.close()
        device = self.accelerator.device
        if device.type == "cpu":  # multi-CPU runs report "cpu:0", which safetensors rejects
            device = torch.device("cpu")
        best = MultiTaskModel.from_pretrained(self.run_dir, device)
        best_step = write_final_reports(
            self.run_dir,
            best,
            self.tasks,
            self.history,
            self.best_dev_results,
            self.run_info(best),
            FinalReportSettings(
                self.train_cfg.select_by,
                self.train_cfg.eval_batch_size,
                self.tokenizer.pad_token_id,
                device,
                self.precision,
            ),
        )
        plot_task_shares_from_log(self.run_dir)
        shutil.rmtree(self.run_dir / CHECKPOINT_DIR, ignore_errors=True)
        write_status(
            self.run_dir,
            "completed",
            step=self.step,
            best_step=best_step,
            stopped_by=self.stop_reason,
            wall_time_s=round(self.elapsed, 1),
        )
        print(f"\nrun directory: {self.run_dir}")

    def run_info(self, model: MultiTaskModel) -> dict[str, Any]:
        return {
            "encoder": self.config.model.encoder,
            "architecture": self.config.model.architecture,
            "sampler": self.train_cfg.sampler.name,
            "balancer": self.train_cfg.balancer.name,
            "batch_mode": self.train_cfg.batch_mode,
            "max_steps": self.train_cfg.max_steps,
            "steps_run": self.step,
            "stopped_by": self.stop_reason,
            "batch_size": self.train_cfg.batch_size,
            "precision": self.precision,
            "wall_time_s": round(self.elapsed, 1),
            "parameters": model.parameter_counts(),
            "processes": self.accelerator.num_processes,
            "command": self.command,
            "examples_drawn": dict(zip([t.spec.name for t in self.tasks], self.scheduler.drawn)),
            "examples_used_total_fraction": round(
                sum(int(s.sum()) for s in self.scheduler.seen)
                / sum(len(s) for s in self.scheduler.seen),
                4,
            ),
            "examples_used_fraction": {
                self.tasks[t].spec.name: round(f, 4)
                for t, f in self.scheduler.used_fraction().items()
            },
            "candidates_scored": self.sampler.candidates_scored(),
            "longest_unsampled_steps": dict(
                zip(
                    [t.spec.name for t in self.tasks],
                    self.scheduler.longest_unsampled(self.step),
                )
            ),
        }


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def train(
    config: RunConfig, resume: bool = False, overwrite: bool = False, command: str | None = None
) -> Path:
    """Train a multi-task model as ``config`` says; returns the run directory."""
    return Trainer(config, resume=resume, overwrite=overwrite, command=command).fit()
