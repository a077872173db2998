"""`camtl baseline single-task`: one single-task run per task of a multi-task config.

The paper's comparison (its Tables 3.1 and 3.4) sets one multi-task model against one
fine-tuned model per task. Each single-task run gets the config's encoder, data and
training settings (early stopping included), with the bare encoder fully fine-tuned
(``plain``, nothing frozen) unless asked otherwise; ``camtl compare`` then folds the runs
into one "single_task" row beside the multi-task runs.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from camtl.config import BalancerConfig, RunConfig, SamplerConfig
from camtl.errors import ConfigError
from camtl.runfiles import CHECKPOINT_DIR
from camtl.training.rundir import read_status

log = logging.getLogger("camtl")


@dataclass
class BaselineOptions:
    output_root: Path | None = None  # default: <output_dir>_single_task
    tasks: list[str] | None = None  # default: every task of the config
    architecture: str = "plain"  # "keep": the config's own model section
    max_steps: int | None = None  # default: the config's
    overwrite: bool = False


def single_task_configs(config: RunConfig, options: BaselineOptions) -> list[RunConfig]:
    """One config per task: the task alone, in ``<output_root>/<task>``."""
    names = [t.name for t in config.tasks]
    unknown = sorted(set(options.tasks or []) - set(names))
    if unknown:
        raise ConfigError(f"--tasks: {', '.join(unknown)} not in the config (tasks: {names})")
    root = options.output_root or Path(f"{config.output_dir.rstrip('/')}_single_task")
    configs = []
    for task in config.tasks:
        if options.tasks and task.name not in options.tasks:
            continue
        single = copy.deepcopy(config)
        single.tasks = [task]
        single.output_dir = str(root / task.name)
        if options.architecture != "keep":
            single.model.architecture = options.architecture
            single.model.freeze_embeddings = None  # the architecture's default freezing
            single.model.freeze_layers = None
        # one task: nothing to sample or balance between
        single.training.sampler = SamplerConfig()
        single.training.balancer = BalancerConfig()
        if options.max_steps is not None:
            single.training.max_steps = options.max_steps
        configs.append(single)
    return configs


def run_single_task_baselines(
    config: RunConfig, options: BaselineOptions, command: str | None = None
) -> list[Path]:
    """Train the runs that are not finished yet (an interrupted one resumes from its
    checkpoint); returns every run directory, finished before or now."""
    from camtl.training import train

    run_dirs = []
    for single in single_task_configs(config, options):
        run_dir = Path(single.output_dir)
        status = read_status(run_dir)
        if status and status.get("status") == "completed" and not options.overwrite:
            log.info("%s: finished already, kept (--overwrite trains it again)", run_dir)
        else:
            resume = (run_dir / CHECKPOINT_DIR).is_dir() and not options.overwrite
            print(f"\nsingle-task run of {single.tasks[0].name}: {run_dir}")
            train(single, resume=resume, overwrite=options.overwrite, command=command)
        run_dirs.append(run_dir)
    return run_dirs
