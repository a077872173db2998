"""`camtl baseline single-task`: one single-task run per task of a multi-task config.

The paper's comparison (its Tables 3.1 and 3.4) sets one multi-task model against one
fine-tuned model per task. Each single-task run gets the config's encoder, data and
training settings (early stopping included), with the bare encoder fully fine-tuned
(``plain``, nothing frozen) unless asked otherwise; ``camtl compare`` then folds the runs
into one "single_task" row beside the multi-task runs.

With ``folds`` (k) each task gets k runs instead, ``<task>/fold_<i>``, run i trained on
every fold of train but fold i: cross-fitted teachers for ``training.distillation``, whose
outputs on each training example come from the run that never trained on it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from camtl.config import BalancerConfig, RunConfig, SamplerConfig
from camtl.data.folds import fold_run_name
from camtl.errors import ConfigError
from camtl.runfiles import CHECKPOINT_DIR, CONFIG_FILE
from camtl.tasks.spec import CrossFit
from camtl.training.rundir import (
    adopt_run_freezing,
    check_same_folds,
    check_same_model,
    check_same_recipe,
    check_same_tasks,
    read_status,
)

log = logging.getLogger("camtl")


@dataclass
class BaselineOptions:
    output_root: Path | None = None  # default: <output_dir>_single_task (_cross_fit with folds)
    tasks: list[str] | None = None  # default: every task of the config
    architecture: str = "plain"  # "keep": the config's own model section
    max_steps: int | None = None  # default: the config's
    overwrite: bool = False
    folds: int | None = None  # k cross-fitted runs per task


def single_task_configs(config: RunConfig, options: BaselineOptions) -> list[RunConfig]:
    """One config per task: the task alone, in ``<output_root>/<task>``; with ``folds``,
    k per task in ``<output_root>/<task>/fold_<i>``."""
    names = [t.name for t in config.tasks]
    unknown = sorted(set(options.tasks or []) - set(names))
    if unknown:
        raise ConfigError(f"--tasks: {', '.join(unknown)} not in the config (tasks: {names})")
    if options.folds is not None and options.folds < 2:
        raise ConfigError(f"--folds: must be at least 2, got {options.folds}")
    suffix = "_single_task" if options.folds is None else "_cross_fit"
    root = options.output_root or Path(f"{config.output_dir.rstrip('/')}{suffix}")
    configs = []
    for task in config.tasks:
        if options.tasks and task.name not in options.tasks:
            continue
        if options.folds is None:
            configs.append(_single_task_config(config, options, task.name, root / task.name))
            continue
        for held_out in range(options.folds):
            run_dir = root / task.name / fold_run_name(held_out)
            single = _single_task_config(config, options, task.name, run_dir)
            single.tasks[0].cross_fit = CrossFit(folds=options.folds, held_out=held_out)
            configs.append(single)
    return configs


def _single_task_config(
    config: RunConfig, options: BaselineOptions, task_name: str, run_dir: Path
) -> RunConfig:
    single = copy.deepcopy(config)
    single.tasks = [t for t in single.tasks if t.name == task_name]
    single.output_dir = str(run_dir)
    if options.architecture != "keep":
        single.model.architecture = options.architecture
        single.model.freeze_embeddings = None  # the architecture's default freezing
        single.model.freeze_layers = None
    # one task: nothing to sample or balance between
    single.training.sampler = SamplerConfig()
    single.training.balancer = BalancerConfig()
    if options.max_steps is not None:
        single.training.max_steps = options.max_steps
    return single


def run_single_task_baselines(
    config: RunConfig, options: BaselineOptions, command: str | None = None
) -> list[Path]:
    """Train the runs that are not finished yet (an interrupted one resumes from its
    checkpoint); returns every run directory, finished before or now."""
    from camtl.training import train

    run_dirs = []
    configs = single_task_configs(config, options)
    for single in configs:  # every run checked before any trains
        _check_folder(single, options)
    for single in configs:
        run_dir = Path(single.output_dir)
        status = read_status(run_dir)
        if status and status.get("status") == "completed" and not options.overwrite:
            log.info("%s: finished already, kept (--overwrite trains it again)", run_dir)
        else:
            resume = (run_dir / CHECKPOINT_DIR).is_dir() and not options.overwrite
            fold = single.tasks[0].cross_fit
            which = "" if fold is None else f", fold {fold.held_out} of {fold.folds} held out"
            print(f"\nsingle-task run of {single.tasks[0].name}{which}: {run_dir}")
            train(single, resume=resume, overwrite=options.overwrite, command=command)
        run_dirs.append(run_dir)
    return run_dirs


KEEP = (
    "a finished run is kept only if trained as asked: set it back, or --overwrite to train it again"
)


def _check_folder(single: RunConfig, options: BaselineOptions) -> None:
    """A run kept or resumed must hold out the fold asked for (none, for a plain run) and be
    trained by the recipe asked for, and fold runs are not made inside a run (whose
    --overwrite would delete them)."""
    run_dir = Path(single.output_dir)
    fold = single.tasks[0].cross_fit
    if fold is not None and (run_dir.parent / CONFIG_FILE).is_file():
        raise ConfigError(
            f"--folds: {run_dir.parent} holds a run; the cross-fitted runs go in a folder of "
            "their own (--output-root)"
        )
    if options.overwrite:
        return
    status = read_status(run_dir)
    finished = bool(status and status.get("status") == "completed")
    resumes = (run_dir / CHECKPOINT_DIR).is_dir() and not finished
    try:
        check_same_folds(run_dir, single)
        if resumes or finished:  # what train --resume checks, before any run trains; a
            # finished run is kept only if trained as asked (--max-steps, --set, the model)
            as_run = copy.deepcopy(single)
            adopt_run_freezing(run_dir, as_run)  # freezing left unset: the run's, as on resume
            if resumes:
                check_same_model(run_dir, as_run)
                check_same_tasks(run_dir, single)
                check_same_recipe(run_dir, single)
            else:
                check_same_model(run_dir, as_run, advice=KEEP)
                check_same_tasks(run_dir, single, "to keep it; --overwrite trains it again")
                check_same_recipe(run_dir, single, advice=KEEP)
    except ConfigError as error:
        raise ConfigError(f"{run_dir}: {error} (or choose another --output-root)") from None
