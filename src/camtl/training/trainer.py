"""The training loop on accelerate, ``Trainer.fit``, read top to bottom. What it calls lives
beside it: the step (step.py, shared with add-task), checkpoints and resume (checkpoint.py),
selection and early stopping (selection.py), the logs (run_logs.py), set-up (setup.py)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from camtl.balancing import build_balancer
from camtl.config import RunConfig, save_config
from camtl.data.folds import write_trained_on
from camtl.distillation.distiller import build_distiller
from camtl.modeling.frozen_cast import cache_frozen_casts, use_frozen_cast_cache
from camtl.modeling.model import MultiTaskModel
from camtl.runfiles import CONFIG_FILE
from camtl.sampling import build_sampler
from camtl.training import checkpoint, final_report, setup
from camtl.training.checkpoint import BatchSchedulerState, Progress
from camtl.training.run_logs import RunLogs
from camtl.training.rundir import (
    CHECKPOINT_DIR,
    adopt_run_freezing,
    check_run_dir,
    check_same_folds,
    check_same_model,
    check_same_precision,
    check_same_recipe,
    check_same_tasks,
    hold_run_lock,
    prepare_run_dir,
    write_skipped_rows,
    write_status,
)
from camtl.training.sam import check_sam
from camtl.training.selection import Selection
from camtl.training.step import StepParts, all_reduce_mean, train_step
from camtl.training.uncertainty import resolve_proxies


class Trainer:
    """One run: ``__init__`` reads the data and builds the model, sampler and balancer
    (refusing bad input before the run directory is touched); ``fit`` trains."""

    def __init__(
        self,
        config: RunConfig,
        resume: bool = False,
        overwrite: bool = False,
        command: str | None = None,
    ) -> None:
        from accelerate.utils import set_seed

        self.config = config
        self.train_cfg = cfg = config.training
        self.run_dir = Path(config.output_dir)
        self.command = command or " ".join(sys.argv)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        # "auto" resolved once for this machine; evaluation and MT-U scoring use it too
        self.precision = config.precision("cuda" if torch.cuda.is_available() else "cpu")
        self.accelerator = setup.build_accelerator(config, self.precision)
        self.is_main = self.accelerator.is_main_process
        if resume:  # every rank: the model it builds must be the run's
            adopt_run_freezing(self.run_dir, config)
        if self.is_main:  # fail fast (finished run, non-empty folder) before loading data
            check_run_dir(self.run_dir, resume, overwrite)
            if resume:
                self._run_lock = hold_run_lock(self.run_dir)
                check_same_model(self.run_dir, config)
                check_same_tasks(self.run_dir, config)
                check_same_recipe(self.run_dir, config)
                check_same_precision(self.run_dir, self.precision)
                check_same_folds(self.run_dir, config)
        set_seed(config.seed)
        # Read and validate every data file, build the model and the sampler BEFORE the run
        # directory is made (or an old one replaced under --overwrite): a bad data file or
        # option must not leave a half-made run behind that blocks the next attempt.
        self.tasks, self.model, self.tokenizer = setup.build_model_and_data(config)
        # teachers checked and their outputs computed (or read back) before anything is written
        self.distiller = (
            build_distiller(
                cfg.distillation,
                self.tasks,
                self.tokenizer,
                self.precision,
                cfg.eval_batch_size,
                cfg.max_steps,
                self.accelerator.device,
            )
            if cfg.distillation is not None
            else None
        )
        sizes = [len(t.features["train"]) for t in self.tasks]
        self.sampler = build_sampler(cfg.sampler.name, cfg.sampler.options, sizes, cfg.max_steps)
        scoring = self.sampler.scoring_request()
        self.proxies = resolve_proxies(self.tasks, scoring.proxies) if scoring else {}
        names = [t.spec.name for t in self.tasks]
        self.balancer = build_balancer(cfg.balancer.name, cfg.balancer.options, names)
        setup.check_balancer_needs(self.tasks, self.balancer)
        setup.give_teacher_scores(self.balancer, cfg.distillation, self.tasks)
        if cfg.sam is not None:
            check_sam(self.balancer)
        self.resuming = resume
        if self.is_main:
            self.resuming = prepare_run_dir(self.run_dir, resume, overwrite)
            write_skipped_rows(self.run_dir, self.tasks)
            write_trained_on(self.run_dir, self.tasks)
        self.accelerator.wait_for_everyone()
        self.progress = Progress()
        self.stop_reason = "max_steps"  # or "early_stopping"

    def fit(self) -> Path:
        """Train to ``max_steps`` (or early stopping), then report on the best model."""
        cfg = self.train_cfg
        self._prepare()
        if self.resuming:
            self.progress = checkpoint.load(
                self.accelerator, self.run_dir, self.optimizer, self.optimizer_flags
            )
        elif self.is_main:
            save_config(self.config, self.run_dir / CONFIG_FILE)
            write_status(self.run_dir, "running")
        progress = self.progress
        progress.precision = self.precision  # checked against the checkpoint's on resume
        logs = RunLogs(self.run_dir, self.is_main, progress.step, cfg.max_steps, self.resuming)
        kill_after = checkpoint.kill_after_step()  # a test hook (tests/test_resume.py)
        checkpoint_every = cfg.checkpoint_every or cfg.eval_every
        self.ddp_model.train()
        started = time.perf_counter() - progress.elapsed
        while progress.step < cfg.max_steps:
            losses = train_step(self.step_parts, self.accelerator, progress.step)
            progress.step += 1
            progress.elapsed = time.perf_counter() - started
            logs.progress(losses)
            last = progress.step == cfg.max_steps
            if self.is_main and (progress.step % cfg.log_every == 0 or last):
                logs.train(progress, losses, self.step_parts)
            paused = time.perf_counter()
            evaluated = progress.step % cfg.eval_every == 0 or last
            if evaluated:
                self.selection.evaluate(self.ddp_model, progress, logs)
            stop = evaluated and not last and self.selection.should_stop(progress)
            if progress.step % checkpoint_every == 0 and not last and not stop:
                checkpoint.save(self.accelerator, self.run_dir, progress)
            progress.overhead += time.perf_counter() - paused
            if kill_after and progress.step == kill_after:
                os._exit(137)
            if stop:
                self.stop_reason = "early_stopping"
                break
        logs.close()
        self.accelerator.wait_for_everyone()
        if self.is_main:
            self.finish()
        self.accelerator.wait_for_everyone()
        return self.run_dir

    def _prepare(self) -> None:
        """Optimizer, LR scheduler and batch scheduler; what a step and selection work on."""
        cfg = self.train_cfg
        if use_frozen_cast_cache(cfg.cast_frozen_once, self.precision):
            cache_frozen_casts(self.model)
        optimizer = setup.build_optimizer(self.model, self.config)
        self.optimizer_flags = {k: optimizer.defaults[k] for k in ("fused", "foreach")}
        self.balancer.to(self.accelerator.device)
        balancer_params = [p for p in self.balancer.parameters() if p.requires_grad]
        if balancer_params:  # uncertainty weighting learns its log-variances
            optimizer.add_param_group({"params": balancer_params, "weight_decay": 0.0})
        balance_context = setup.build_balance_context(
            self.balancer, self.model, partial(all_reduce_mean, self.accelerator)
        )
        self.ddp_model, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            self.model, optimizer, setup.build_lr_scheduler(optimizer, cfg)
        )
        self.batch_scheduler = setup.build_batch_scheduler(
            self.config,
            self.sampler,
            self.accelerator.unwrap_model(self.ddp_model),
            self.tasks,
            self.tokenizer.pad_token_id,
            self.accelerator,
            self.precision,
            self.proxies,
        )
        self.accelerator.register_for_checkpointing(BatchSchedulerState(self.batch_scheduler))
        self.accelerator.register_for_checkpointing(self.balancer)
        self.step_parts = StepParts(
            model=self.ddp_model,
            balancer=self.balancer,
            optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler,
            batch_scheduler=self.batch_scheduler,
            tasks=self.tasks,
            pad_token_id=self.tokenizer.pad_token_id,
            clip_parameters=list(self.ddp_model.parameters()),
            max_grad_norm=cfg.max_grad_norm,
            accumulation=cfg.gradient_accumulation_steps,
            context=balance_context,
            distiller=self.distiller,
            sam=cfg.sam,
        )
        self.selection = Selection(
            self.accelerator,
            self.run_dir,
            self.tasks,
            self.tokenizer,
            cfg,
            self.precision,
            self.balancer,
        )

    def finish(self) -> None:
        """Evaluate the best model on dev and test, write the reports, mark the run done."""
        device = self.accelerator.device
        if device.type == "cpu":  # multi-CPU runs report "cpu:0", which safetensors rejects
            device = torch.device("cpu")
        cfg = self.train_cfg
        final_report.selected_step(self.progress.history, cfg.select_by)  # one was saved
        best = MultiTaskModel.from_pretrained(self.run_dir, device)
        settings = final_report.FinalReportSettings(
            cfg.select_by, cfg.eval_batch_size, self.tokenizer.pad_token_id, device, self.precision
        )
        best_step = final_report.write_final_reports(
            self.run_dir,
            best,
            self.tasks,
            self.progress.history,
            self.selection.best_dev_results,
            self.run_info(best),
            settings,
        )
        final_report.plot_task_shares_from_log(self.run_dir)
        final_report.plot_loss_weights_from_log(self.run_dir)
        write_status(  # before the checkpoint goes: a kill between leaves a finished run
            self.run_dir,
            "completed",
            step=self.progress.step,
            best_step=best_step,
            stopped_by=self.stop_reason,
            wall_time_s=round(self.progress.elapsed, 1),
        )
        shutil.rmtree(self.run_dir / CHECKPOINT_DIR, ignore_errors=True)
        print(f"\nrun directory: {self.run_dir}")

    def run_info(self, model: MultiTaskModel) -> dict[str, Any]:
        """The report's account of the run: its settings, size, time and sampling."""
        cfg = self.train_cfg
        return {
            "encoder": self.config.model.encoder,
            "architecture": self.config.model.architecture,
            "sampler": cfg.sampler.name,
            "balancer": cfg.balancer.name,
            "batch_mode": cfg.batch_mode,
            "max_steps": cfg.max_steps,
            "steps_run": self.progress.step,
            "stopped_by": self.stop_reason,
            "batch_size": cfg.batch_size,
            "precision": self.precision,
            "wall_time_s": round(self.progress.elapsed, 1),
            "parameters": model.parameter_counts(),
            "processes": self.accelerator.num_processes,
            "command": self.command,
            **final_report.sampling_info(
                self.tasks, self.batch_scheduler, self.sampler, self.progress.step
            ),
        }


def train(
    config: RunConfig, resume: bool = False, overwrite: bool = False, command: str | None = None
) -> Path:
    """Train a multi-task model as ``config`` says; returns the run directory."""
    return Trainer(config, resume=resume, overwrite=overwrite, command=command).fit()
