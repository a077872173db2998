"""Transfer to a new task (the paper's section 3.5.4): `camtl add-task` and zero-shot scores.

A new task gets a head and, on CA-MTL, a new task-embedding row. By default only that row
and the head train, so every other task's predictions stay exactly as they were (the
gradient of the other rows is masked, and Adam moves a parameter with zero gradient and no
weight decay by exactly zero). ``joint=True`` instead trains the run's usual trainable
parameters on the new task mixed with the run's own tasks.

Initialising the row: ``random``, ``xavier``, ``copy:TASK`` (the row of a trained task),
``auto`` (the trained row whose probe, the new head alone fitted on a few hundred examples,
scores best on dev). Zero-shot scoring, kept as a diagnostic, evaluates the new task's dev
split once per candidate row; the head is a trained task's head when that task has the new
task's type and label list, otherwise one freshly initialised head, the same for every
candidate (as in the paper's Table 3.8, where such scores sit near chance).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from camtl.balancing import build_balancer
from camtl.config import RunConfig, load_task_file, save_config
from camtl.data.folds import write_trained_on
from camtl.data.prepare import TaskData, encode_split, prepare_tasks
from camtl.errors import CamtlError, ConfigError
from camtl.evaluation.evaluate import evaluate_tasks
from camtl.evaluation.report import check_report_folder, format_table, report_name, write_report
from camtl.evaluation.runs import load_run
from camtl.fileio import atomic_write_text, check_apart
from camtl.model_card import write_model_card
from camtl.modeling.families import check_task_lengths
from camtl.modeling.model import MultiTaskModel
from camtl.runfiles import CONFIG_FILE, CROSS_FIT_FILE, TRANSFER_FILE
from camtl.sampling import BatchScheduler, build_sampler
from camtl.tasks.spec import TaskSpec
from camtl.training.rundir import (
    EVALUATE_ELSEWHERE,
    check_finished_for_reports,
    prepare_run_dir,
    write_status,
)
from camtl.training.step import SingleProcess, StepParts, train_step

INITS = ("random", "xavier", "auto")  # and copy:TASK


@dataclass
class AdaptOptions:
    init: str = "auto"
    fraction: float | None = None
    steps: int | None = None  # None: 3 epochs of the kept examples, within [10, 300]
    batch_size: int = 32
    learning_rate: float | None = None  # None: 1e-3 for row + head, the run's rate if joint
    joint: bool = False
    seed: int = 12
    eval_batch_size: int = 128


def check_init(init: str, model: MultiTaskModel) -> None:
    if init in INITS:
        return
    if init.startswith("copy:") and init[5:] in model.task_index:
        return
    known = ", ".join(f"copy:{t}" for t in model.task_index)
    raise ConfigError(f"--init {init!r}: expected random, xavier, auto or copy:TASK ({known})")


def load_new_task(
    path: Path,
    model: MultiTaskModel,
    tokenizer: Any,
    fraction: float | None,
    splits: tuple[str, ...] = ("train", "dev", "test"),
) -> TaskData:
    """The new task's data, tokenized with the task index it will have in the model."""
    spec = load_task_file(path)
    check_task_lengths(
        model.encoder.config, [spec], model.config.encoder, f"{path}: key 'task.max_length'"
    )
    if spec.name in model.task_index:
        raise ConfigError(
            f"{path}: task {spec.name!r} is already in the model "
            f"(tasks: {', '.join(model.task_index)})"
        )
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"--fraction {fraction}: must be in (0, 1]")
        spec.train_fraction = fraction
    (task,) = prepare_tasks([spec], tokenizer, splits, encode=())
    if not task.examples.get("dev"):
        raise CamtlError(f"{path}: task {spec.name!r} has no dev split to score it on")
    index = len(model.tasks)
    for split in task.examples:
        encode_split(task, split, tokenizer, index)
    return task


def _head_fits(model: MultiTaskModel, name: str, spec: TaskSpec, labels: list[str]) -> bool:
    """Whether trained task ``name``'s head can serve the new task as it is."""
    existing = model.tasks[model.task_index[name]]
    return existing.type == spec.type and model.labels.get(name, []) == labels


def _compatible_head(model: MultiTaskModel, spec: TaskSpec, labels: list[str]) -> str | None:
    """The first trained task whose head fits the new task (same type and labels)."""
    return next((t.name for t in model.tasks if _head_fits(model, t.name, spec, labels)), None)


def _dev_score(
    model: MultiTaskModel, task: TaskData, batch_size: int, pad_token_id: int, precision: str
) -> tuple[str, float]:
    """(primary metric, its dev score) of ``task`` under ``model``."""
    entry = evaluate_tasks(
        model, [task], "dev", batch_size, pad_token_id, with_baselines=False, precision=precision
    )["tasks"][task.spec.name]
    return entry["primary_metric"], entry["scores"][entry["primary_metric"]]


def zero_shot_scores(
    model: MultiTaskModel,
    task: TaskData,
    pad_token_id: int,
    batch_size: int = 128,
    seed: int = 12,
    precision: str = "no",
) -> list[dict[str, Any]]:
    """Dev score of the new task with each trained task's embedding row (and a random row).

    The model is left unchanged: scoring runs on a copy with one extra row and head.
    """
    if model.encoder.task_embeddings() is None:
        raise CamtlError(
            "zero-shot scores compare task embeddings: this run's model is "
            f"{model.config.architecture}, without them (architecture: camtl has them)"
        )
    probe = copy.deepcopy(model)
    torch.manual_seed(seed)  # one fresh head, the same for every candidate row
    index = probe.add_task(task.spec, task.labels)
    reused = _compatible_head(model, task.spec, task.labels)
    if reused is not None:
        probe.heads[task.spec.name].load_state_dict(model.heads[reused].state_dict())
    table = probe.encoder.task_embeddings()
    assert table is not None
    random_row = table[index].detach().clone()
    rows = [(name, table[i].detach().clone()) for name, i in model.task_index.items()]
    results = []
    for name, row in [*rows, ("random", random_row)]:
        with torch.no_grad():
            table[index] = row
        metric, score = _dev_score(probe, task, batch_size, pad_token_id, precision)
        results.append(
            {"embedding": name, "head": reused or "new", "metric": metric, "score": score}
        )
    return results


# the probe behind --init auto: the new task's head alone, fitted on this many training
# windows for this many steps, with each candidate embedding row
PROBE_EXAMPLES, PROBE_STEPS = 256, 30


def probe_scores(
    model: MultiTaskModel,
    task: TaskData,
    pad_token_id: int,
    opts: AdaptOptions,
    precision: str = "no",
) -> list[dict[str, Any]]:
    """Dev score of the new task's head fitted alone (encoder and row fixed) on a few
    hundred training examples, with each trained task's embedding row and a random one.

    Unlike the zero-shot score through an untrained head, which sits near chance by
    construction, this asks what a row gives the new task once a head can read it. The
    model is left unchanged: each candidate runs on a copy.
    """
    table = model.encoder.task_embeddings()
    if table is None:
        raise CamtlError("the probe compares task embeddings: this run's model has none")
    generator = torch.Generator().manual_seed(opts.seed)
    train = task.features["train"]
    keep = torch.randperm(len(train), generator=generator)[:PROBE_EXAMPLES].tolist()
    subset = TaskData(
        task.spec,
        task.labels,
        examples={"dev": task.examples["dev"]},
        features={"train": [train[i] for i in sorted(keep)], "dev": task.features["dev"]},
    )
    head_start: dict[str, torch.Tensor] | None = None
    candidates: list[tuple[str, torch.Tensor | None]] = [
        (name, table[i].detach().clone()) for name, i in model.task_index.items()
    ]
    results = []
    # "random": the row the table itself initialises (seeded alike for every run)
    for name, row in [*candidates, ("random", None)]:
        probe = copy.deepcopy(model)
        torch.manual_seed(opts.seed)
        probe.add_task(task.spec, task.labels, row)
        head = probe.heads[task.spec.name]
        if head_start is None:  # every candidate's head starts from the same weights
            head_start = copy.deepcopy(head.state_dict())
        head.load_state_dict(head_start)
        for param in probe.parameters():
            param.requires_grad_(False)
        params = list(head.parameters())
        for param in params:
            param.requires_grad_(True)
        _train(probe, [subset], params, PROBE_STEPS, opts, 1e-3, pad_token_id, precision)
        metric, score = _dev_score(probe, subset, opts.eval_batch_size, pad_token_id, precision)
        results.append({"embedding": name, "metric": metric, "score": score})
    return results


def initial_row(
    init: str, model: MultiTaskModel, ranking: list[dict[str, Any]] | None
) -> tuple[torch.Tensor | None, str]:
    """(row to start from, the init actually used); ``auto`` takes the trained task whose
    row scored best in ``ranking`` (the probe's scores)."""
    weight = model.encoder.task_embeddings()
    if weight is None:
        return None, f"none ({model.config.architecture} model: no task embedding)"
    table = weight.detach()
    if init == "auto":
        assert ranking is not None
        best = max(
            (r for r in ranking if r["embedding"] in model.task_index), key=lambda r: r["score"]
        )
        return table[model.task_index[best["embedding"]]].clone(), f"copy:{best['embedding']}"
    if init.startswith("copy:"):
        return table[model.task_index[init[5:]]].clone(), init
    if init == "xavier":
        row = torch.empty(1, table.shape[1])
        torch.nn.init.xavier_uniform_(row)
        return row[0], init
    return None, init


def _freeze_all_but_new(model: MultiTaskModel, name: str) -> list[torch.nn.Parameter]:
    """Only the new head and the new embedding row learn; returns the trainable tensors."""
    for param in model.parameters():
        param.requires_grad_(False)
    params = list(model.heads[name].parameters())
    for param in params:
        param.requires_grad_(True)
    weight = model.encoder.task_embeddings()
    if weight is not None:
        weight.requires_grad_(True)
        mask = torch.zeros(weight.shape[0], 1, device=weight.device)
        mask[-1] = 1.0
        weight.register_hook(lambda grad: grad * mask)
        params.append(weight)
    return params


def _train(
    model: MultiTaskModel,
    tasks: list[TaskData],
    params: list[torch.nn.Parameter],
    steps: int,
    opts: AdaptOptions,
    lr: float,
    pad_token_id: int,
    precision: str = "no",
) -> list[float]:
    """The trainer's step on uniformly mixed batches of ``tasks``, in one process, with
    equal task weights (the mean of the task losses present: the model's own loss). AdamW
    without weight decay, so parameters whose gradient is masked to zero do not move.
    Returns each step's loss."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sizes = [len(t.features["train"]) for t in tasks]
    parts = StepParts(
        model=model,
        balancer=build_balancer("equal", {}, [t.spec.name for t in tasks]),
        optimizer=optimizer,
        lr_scheduler=get_linear_schedule_with_warmup(optimizer, int(0.06 * steps), steps),
        batch_scheduler=BatchScheduler(
            build_sampler("uniform", {}, sizes, steps),
            sizes,
            min(opts.batch_size, sum(sizes)),
            "mixed",
            opts.seed,
        ),
        tasks=tasks,
        pad_token_id=pad_token_id,
        clip_parameters=params,
        max_grad_norm=1.0,
    )
    one_process = SingleProcess(precision, next(model.parameters()).device)
    model.train()
    losses = [train_step(parts, one_process, step)["loss"] for step in range(steps)]
    model.eval()
    return losses


def default_steps(examples: int, batch_size: int) -> int:
    return max(10, min(300, math.ceil(3 * examples / batch_size)))


def add_task(
    run_dir: Path,
    task_file: Path,
    output: Path,
    opts: AdaptOptions,
    overwrite: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Add the task of ``task_file`` to the model of ``run_dir``; write a new run to
    ``output`` (the source run is never modified)."""
    config, model, tokenizer = load_run(run_dir)
    precision = config.precision()  # the source run's
    check_init(opts.init, model)
    if opts.init != "random" and model.encoder.task_embeddings() is None:
        raise ConfigError(
            f"--init {opts.init}: the model of {run_dir} is {config.model.architecture} "
            "(no task embedding to initialise); use --init random"
        )
    task = load_new_task(task_file, model, tokenizer, opts.fraction)
    check_apart(run_dir, output, "--output")
    if opts.learning_rate is not None and not (
        opts.learning_rate > 0 and math.isfinite(opts.learning_rate)
    ):
        raise ConfigError(f"--lr {opts.learning_rate}: must be a positive number")
    # the run's own data, read before the output folder is made: a moved file leaves nothing
    own_tasks = (
        prepare_tasks(config.tasks, tokenizer, ("train",), labels=model.labels)
        if opts.joint
        else []
    )
    prepare_run_dir(output, resume=False, overwrite=overwrite)
    write_status(output, "running")  # a failed attempt can then be replaced (--overwrite)
    started = time.perf_counter()
    torch.manual_seed(opts.seed)
    zero_shot = (
        zero_shot_scores(
            model, task, tokenizer.pad_token_id, opts.eval_batch_size, opts.seed, precision
        )
        if opts.init == "auto"
        else None
    )
    probe = (
        probe_scores(model, task, tokenizer.pad_token_id, opts, precision)
        if opts.init == "auto"
        else None
    )
    row, init_used = initial_row(opts.init, model, probe)
    torch.manual_seed(opts.seed)
    model.add_task(task.spec, task.labels, row)
    source = init_used[5:] if init_used.startswith("copy:") else None
    if source and _head_fits(model, source, task.spec, task.labels):
        model.heads[task.spec.name].load_state_dict(model.heads[source].state_dict())
    n_train = len(task.features["train"])
    steps = opts.steps or default_steps(n_train, opts.batch_size)
    if opts.joint:  # the run's own trainable parameters (its freezing) and the new ones
        tasks = [*own_tasks, task]
        params = [p for p in model.parameters() if p.requires_grad]
        lr = config.training.learning_rate if opts.learning_rate is None else opts.learning_rate
    else:
        tasks = [task]
        params = _freeze_all_but_new(model, task.spec.name)
        lr = 1e-3 if opts.learning_rate is None else opts.learning_rate
    losses = _train(model, tasks, params, steps, opts, lr, tokenizer.pad_token_id, precision)
    wall = round(time.perf_counter() - started, 1)

    new_config = _extended_config(config, task.spec, output)
    save_config(new_config, output / CONFIG_FILE)
    model.save_pretrained(output, tokenizer)
    # a cross-fitted task keeps the record of what it trained on (camtl.data.folds)
    if opts.joint:
        write_trained_on(output, tasks)
    elif (run_dir / CROSS_FIT_FILE).is_file():
        shutil.copyfile(run_dir / CROSS_FIT_FILE, output / CROSS_FIT_FILE)
    info = {
        "encoder": config.model.encoder,
        "architecture": config.model.architecture,
        "source_run": str(run_dir),
        "task": task.spec.name,
        "init": init_used,
        "fraction": opts.fraction,
        "train_examples": n_train,
        "steps": steps,
        "learning_rate": lr,
        "joint": opts.joint,
        "final_train_loss": losses[-1],
        "probe": probe,  # what --init auto chose by
        "zero_shot": zero_shot,  # a diagnostic: through an untrained (or reused) head
        "wall_time_s": wall,
        "precision": precision,
        "parameters": model.parameter_counts(),
        "command": command,
    }
    for split in ("dev", "test"):
        if task.examples.get(split):
            results = evaluate_tasks(
                model,
                [task],
                split,
                opts.eval_batch_size,
                tokenizer.pad_token_id,
                precision=precision,
            )
            results.update(step=steps, select_by="last")
            write_report(output, results, [], info, name=report_name(split))
            print(
                f"\n{task.spec.name} {split} after adaptation ({init_used}, "
                f"{n_train} training examples, {steps} steps):"
            )
            print(format_table(results))
    atomic_write_text(output / TRANSFER_FILE, json.dumps(info, indent=2))
    write_model_card(output)
    write_status(output, "completed", step=steps, best_step=steps, wall_time_s=wall)
    return info


def _extended_config(config: RunConfig, spec: TaskSpec, output: Path) -> RunConfig:
    new = copy.deepcopy(config)
    new.output_dir = str(output)
    new.tasks = [*new.tasks, spec]
    return new


def zero_shot_report(
    run_dir: Path, task_file: Path, batch_size: int = 128, output_dir: Path | None = None
) -> list[dict]:
    """`camtl evaluate RUN --zero-shot TASK.yaml`: print the scores per row and save them in
    ``output_dir`` (default: ``run_dir``)."""
    check_report_folder(output_dir)
    check_finished_for_reports(run_dir, EVALUATE_ELSEWHERE, output_dir)
    config, model, tokenizer = load_run(run_dir)
    task = load_new_task(task_file, model, tokenizer, None, ("train", "dev"))
    results = zero_shot_scores(
        model,
        task,
        tokenizer.pad_token_id,
        batch_size,
        precision=config.precision(),
    )
    lines = [
        f"zero-shot dev {results[0]['metric']} of {task.spec.name} (head: {results[0]['head']})",
        "",
        "| embedding | score |",
        "|---|---:|",
    ]
    lines += [f"| {r['embedding']} | {r['score']:.2f} |" for r in results]
    text = "\n".join(lines)
    print(text)
    stem = f"zero_shot_{task.spec.name}"
    output_dir = output_dir or run_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / f"{stem}.json", json.dumps(results, indent=2))
    atomic_write_text(output_dir / f"{stem}.md", text + "\n")
    return results
