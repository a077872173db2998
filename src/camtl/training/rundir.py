"""The run directory: what a finished or unfinished run looks like on disk.

config.yaml            resolved config (every task spelled out)
camtl_model.json       tasks, label maps, model config   } the best model so far,
model.safetensors      weights                           } reloadable with
encoder_config/        encoder architecture              } MultiTaskModel.from_pretrained
tokenizer files
checkpoint/            latest training state (model, optimizer, LR and batch schedulers, RNG)
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
from typing import TYPE_CHECKING, Any

from camtl.errors import CamtlError, ConfigError
from camtl.fileio import atomic_write_text
from camtl.runfiles import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    SKIPPED_ROWS_FILE,
    STATUS_FILE,
    TRAINER_STATE_FILE,
)

if TYPE_CHECKING:
    from camtl.config import RunConfig
    from camtl.data.prepare import TaskData
    from camtl.tasks.spec import CrossFit


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's status record; None when there is none, or none camtl wrote (unreadable,
    or without a "status")."""
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return status if isinstance(status, dict) and isinstance(status.get("status"), str) else None


EVALUATE_ELSEWHERE = "give another output folder (--output-dir), or evaluate it once it finishes"


def check_finished_for_reports(run_dir: Path, instead: str, output_dir: Path | None = None) -> None:
    """Refuse to write reports into a run that is still training or was stopped (reports
    written elsewhere, ``output_dir``, are fine): its model changes when it resumes, and the
    reports would then describe another model."""
    if output_dir is not None and output_dir.resolve() != run_dir.resolve():
        return
    status = read_status(run_dir)
    if status is None or status["status"] == "completed":
        return
    if (run_dir / CHECKPOINT_DIR).is_dir():
        why = "its model changes when it resumes, so reports written into it would go stale"
    else:
        why = "it stopped with nothing to resume (camtl train --overwrite trains it again)"
    raise CamtlError(
        f"{run_dir}: the run is unfinished (status {status['status']!r}); {why}: {instead}"
    )


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
    if run_dir.exists() and not run_dir.is_dir():
        raise CamtlError(f"{run_dir}: output_dir is a file, not a folder (choose another)")
    status = read_status(run_dir)
    has_checkpoint = (run_dir / CHECKPOINT_DIR).is_dir()
    if resume:
        if status and status.get("status") == "completed":  # a checkpoint a kill left behind
            raise CamtlError(f"{run_dir}: holds a finished run; nothing to resume")
        if not has_checkpoint:
            raise CamtlError(f"{run_dir}: nothing to resume (no {CHECKPOINT_DIR}/ folder)")
        return True
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
            # a camtl run by what camtl writes: a folder named checkpoint/ is not enough
            if status is None and not (run_dir / CHECKPOINT_DIR / TRAINER_STATE_FILE).is_file():
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
        elif has_checkpoint:
            raise CamtlError(
                f"{run_dir}: holds an unfinished run; pass --resume to continue "
                "it or --overwrite to start again"
            )
        elif status:
            raise CamtlError(
                f"{run_dir}: holds a run that stopped before its first checkpoint (nothing "
                "to resume); pass --overwrite to start again"
            )
        else:
            raise CamtlError(f"{run_dir}: folder is not empty; choose another output_dir")
    if apply:
        run_dir.mkdir(parents=True, exist_ok=True)
    return False


def write_skipped_rows(run_dir: Path, tasks: list[TaskData]) -> None:
    """List the rows that source.on_bad_rows: skip left out, one JSON line each."""
    rows = [{"task": t.spec.name, **row} for t in tasks for row in t.skipped]
    if rows:
        atomic_write_text(
            run_dir / SKIPPED_ROWS_FILE,
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
        )


def adopt_run_freezing(run_dir: Path, config: RunConfig) -> None:
    """Resuming: freezing that ``config`` leaves unset is the run's own (as it recorded it,
    or for a run saved before issue 38 the default it trained with), not today's default."""
    from camtl.config import load_saved_config

    if not (run_dir / CONFIG_FILE).is_file():
        return
    saved = load_saved_config(run_dir).model
    if config.model.freeze_embeddings is None:
        config.model.freeze_embeddings = saved.freeze_embeddings
    if config.model.freeze_layers is None:
        config.model.freeze_layers = saved.freeze_layers


def check_same_model(
    run_dir: Path,
    config: RunConfig,
    advice: str = "its checkpoint holds that model (set it back to resume)",
) -> None:
    """Resuming: the model section must be the one the run started with (its checkpoint
    holds that model's weights); names the first key that differs. ``advice``: what the
    message tells the user to do."""
    from camtl.config import load_saved_config
    from camtl.model_config import section_in_use
    from camtl.structured import to_dict

    if not (run_dir / CONFIG_FILE).is_file():
        return
    before = section_in_use(to_dict(load_saved_config(run_dir).model))
    difference = _first_difference(before, section_in_use(to_dict(config.model)), "model")
    if difference:
        key, old, new = difference
        raise ConfigError(
            f"key '{key}': {new!r} here, but the run in {run_dir} started with {old!r}; {advice}"
        )


def hold_run_lock(run_dir: Path) -> int:
    """Resuming: an exclusive lock on the run folder for this process's life (the kernel
    drops it when the process ends, killed or not), so that two ``--resume`` of one run
    cannot both train it and interleave its logs. Returns the descriptor to keep open."""
    import fcntl
    import os

    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise CamtlError(
            f"{run_dir}: another camtl process is training this run; resume it once that "
            "one has stopped"
        ) from None
    return descriptor


def check_same_tasks(
    run_dir: Path,
    config: RunConfig,
    advice: str = "to resume; camtl add-task adds a task to a finished run",
) -> None:
    """Resuming: the tasks (names, kinds, labels in order) must be the run's (its checkpoint
    holds their heads); names the key. The balancer, whose state the checkpoint holds too,
    is in the training section that check_same_recipe compares."""
    from camtl.config import load_saved_config

    if not (run_dir / CONFIG_FILE).is_file():
        return
    saved = load_saved_config(run_dir)
    before = [(t.name, t.type, t.labels) for t in saved.tasks]
    now = [(t.name, t.type, t.labels) for t in config.tasks]
    if before != now:
        raise ConfigError(
            f"key 'tasks': {[t[0] for t in now]} here, but the run in {run_dir} started with "
            f"{[t[0] for t in before]} (names, kinds and labels must match {advice})"
        )


# keys a resumed run may change: they do not change what is trained (threads, how evaluation
# batches, how often it logs or checkpoints), or only its floating-point rounding (the AdamW
# kernel); casting frozen weights once is bit-identical. mixed_precision is compared as it
# resolves on this machine (check_same_precision), not as written.
RESUME_MAY_CHANGE = frozenset(
    {
        "training.num_threads",
        "training.eval_batch_size",
        "training.log_every",
        "training.checkpoint_every",
        "training.optimizer_impl",
        "training.cast_frozen_once",
        "training.mixed_precision",
    }
)
# a task's keys a resumed run may change: where its files are (moved, the same data), its
# description; its labels and cross_fit have checks of their own (check_same_tasks,
# check_same_folds)
TASK_MAY_CHANGE = frozenset({"source.paths", "source.root", "description", "labels", "cross_fit"})
AGAIN = "set it back to resume, or --overwrite to train again"


def check_same_recipe(run_dir: Path, config: RunConfig, advice: str = AGAIN) -> None:
    """Resuming: the seed, the training section (sampler and balancer options as validated)
    and each task's settings must be the run's, but for the keys that do not change what is
    trained (``RESUME_MAY_CHANGE``, ``TASK_MAY_CHANGE``). A resume continues exactly
    (schedule, sampler, RNG states); a changed ``max_steps``, ``batch_size``, learning rate,
    teachers or ``max_length`` would train by neither recipe. Call after check_same_tasks.
    ``advice``: what the message tells the user to do (a finished run kept is not resumed)."""
    from camtl.config import load_saved_config

    if not (run_dir / CONFIG_FILE).is_file():
        return
    saved = load_saved_config(run_dir)
    if saved.seed != config.seed:
        raise ConfigError(
            f"key 'seed': {config.seed!r} here, but the run in {run_dir} started with "
            f"{saved.seed!r} ({advice})"
        )
    pairs = [(_recipe(saved.training), _recipe(config.training), "training")]
    pairs += [
        (_task_recipe(before), _task_recipe(now), f"tasks[{i}]")
        for i, (before, now) in enumerate(zip(saved.tasks, config.tasks))
    ]
    for before, now, path in pairs:
        difference = _first_difference(before, now, path)
        if difference:
            key, old, new = difference
            raise ConfigError(
                f"key '{key}': {_shown(new)} here, but the run in {run_dir} started with "
                f"{_shown(old)} ({advice})"
            )


def check_same_precision(run_dir: Path, precision: str) -> None:
    """Resuming: the precision ``training.mixed_precision`` resolves to here must be the one
    the run trained in (its checkpoint records it): ``auto`` resolves by machine, and a run
    started in bf16 and resumed on a machine without fast bf16 would go on in fp32."""
    try:
        state = json.loads((run_dir / CHECKPOINT_DIR / TRAINER_STATE_FILE).read_text("utf-8"))
    except (OSError, ValueError):  # checkpoint.load names a damaged or missing state
        return
    started = state.get("precision") if isinstance(state, dict) else None
    if started is not None and started != precision:
        raise ConfigError(
            f"key 'training.mixed_precision': resolves to {precision!r} here, but the run in "
            f"{run_dir} trained in {started!r} (write mixed_precision: {started} to resume it "
            "as it was, or --overwrite to train again)"
        )


def _recipe(training: Any) -> Any:
    """The training section as compared on resume: without ``RESUME_MAY_CHANGE``, and the
    sampler's and balancer's options as validated (defaults written out or not: the same)."""
    from camtl.balancing.base import BALANCERS
    from camtl.sampling.base import SAMPLERS
    from camtl.structured import to_dict

    data = _without(to_dict(training), "training", RESUME_MAY_CHANGE)
    for key, registry in (("sampler", SAMPLERS), ("balancer", BALANCERS)):
        chosen = getattr(training, key)
        data[key]["options"] = to_dict(registry.lookup(chosen.name, chosen.options)[1])
    return data


def _task_recipe(task: Any) -> Any:
    from camtl.structured import to_dict

    return _without(to_dict(task), "", TASK_MAY_CHANGE)


def _without(section: Any, path: str, may_change: frozenset[str]) -> Any:
    """``section`` less the keys of ``may_change`` (found by their dotted path below
    ``path``; "" for the top)."""
    if not isinstance(section, dict):
        return section
    kept = {}
    for key, value in section.items():
        dotted = f"{path}.{key}" if path else key
        if dotted not in may_change:
            kept[key] = _without(value, dotted, may_change)
    return kept


def _shown(value: Any) -> str:
    return "nothing (unset)" if value is None else repr(value)


def check_same_folds(run_dir: Path, config: RunConfig) -> None:
    """Resuming or keeping a run: each task must hold out the fold of train it started with
    (``cross_fit``; none for a plain run). One trained on another split of train would, as
    a cross-fitted teacher, teach examples it trained on."""
    from camtl.config import load_saved_config

    if not (run_dir / CONFIG_FILE).is_file():
        return
    before = {t.name: t.cross_fit for t in load_saved_config(run_dir).tasks}
    for i, task in enumerate(config.tasks):
        if task.name in before and before[task.name] != task.cross_fit:
            raise ConfigError(
                f"key 'tasks[{i}].cross_fit': {fold_text(task.cross_fit)} here, but the run "
                f"in {run_dir} started with {fold_text(before[task.name])}; --overwrite "
                "trains it again"
            )


def fold_text(cross_fit: CrossFit | None) -> str:
    if cross_fit is None:
        return "every training example"
    return f"fold {cross_fit.held_out} of {cross_fit.folds} held out"


def _first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if a == b else (path, a, b)
