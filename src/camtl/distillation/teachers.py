"""Teachers: find each task's teacher run, refuse one that cannot teach it (at config time,
one line naming the task), and compute its outputs on the student's training windows once.

The teacher runs on the student's own windows (the same input ids), so its outputs line up
with the student's features one to one; a teacher trained on other windows (max_length,
doc_stride), other labels or another tokenizer would be teaching another task, and is
refused. Outputs are cached under the feature cache's folder, keyed by the teacher's
weights, its task and the windows, so a rerun, a resume or another seed reads them back.

Cross-fitted teachers (``camtl baseline single-task --folds k``: a task's folder holding
``fold_0`` ... ``fold_<k-1>``, run i trained without fold i of train) teach each window
from the run that held its example out (camtl.data.folds), so the student learns from
predictions on text the teacher never trained on rather than from a teacher that has
learned its training labels by heart.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from camtl.data import feature_cache
from camtl.data.collate import collate_features
from camtl.data.folds import FOLD_RUNS, SCHEME, digest_fold, example_digest
from camtl.data.prepare import TaskData
from camtl.distillation.config import DistillationConfig
from camtl.errors import ConfigError
from camtl.evaluation.report import report_name
from camtl.fileio import atomic_target
from camtl.precision import autocast
from camtl.runfiles import CROSS_FIT_FILE, MODEL_FILE, WEIGHTS_FILE
from camtl.structured import from_dict
from camtl.tasks.spec import CrossFit

if TYPE_CHECKING:
    from camtl.tasks.kinds import TaskKind

log = logging.getLogger("camtl")
FORMAT = 1  # of a cached entry; part of its key


@dataclass
class Teacher:
    """A finished run that teaches ``task`` (its task of that name); a cross-fitted one
    (``cross_fit`` set) teaches only the windows of the fold it held out."""

    task: str
    run_dir: Path
    cross_fit: CrossFit | None = None


def teacher_runs(config: DistillationConfig, task_names: list[str], key: str) -> list[Teacher]:
    """Each distilled task's teacher run, or its k cross-fitted runs, in task order; a
    missing one is one line naming the task."""
    wanted = list(dict.fromkeys(config.tasks or task_names))  # a task named twice: once
    for name in wanted:
        if name not in task_names:
            raise ConfigError(f"key '{key}.tasks': {name!r} is not a task of this run")
    teachers = []
    for name in wanted:
        if isinstance(config.teachers, dict):
            if name not in config.teachers:
                raise ConfigError(f"key '{key}.teachers': no teacher for task {name!r}")
            run = Path(config.teachers[name])
        else:
            run = Path(config.teachers) / name
        has_folds = any((fold / MODEL_FILE).is_file() for fold in run.glob(FOLD_RUNS))
        if (run / MODEL_FILE).is_file() and has_folds:
            raise ConfigError(
                f"key '{key}.teachers': task {name!r}: {run} holds a run and fold_<i> runs "
                "of cross-fitted teachers; keep them in separate folders (--output-root)"
            )
        if (run / MODEL_FILE).is_file():
            teachers.append(Teacher(name, run))
        elif has_folds:
            teachers.extend(_cross_fitted(name, run, key))
        else:
            raise ConfigError(
                f"key '{key}.teachers': task {name!r}: no finished camtl run at {run} "
                f"({MODEL_FILE} missing; `camtl baseline single-task` writes one per task, "
                "with --folds a folder of fold_<i> runs)"
            )
    return teachers


def _cross_fitted(task: str, folder: Path, key: str) -> list[Teacher]:
    """The fold runs in ``folder``: every fold of one k held out by exactly one run."""
    where = f"key '{key}.teachers': task {task!r}"
    teachers, splits = [], []
    for run in sorted(folder.glob(FOLD_RUNS)):
        if not (run / MODEL_FILE).is_file():
            raise ConfigError(f"{where}: {run} is not a finished camtl run ({MODEL_FILE} missing)")
        try:
            meta = json.loads((run / MODEL_FILE).read_text(encoding="utf-8"))
            spec = next((t for t in meta["tasks"] if t.get("name") == task), None)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ConfigError(
                f"{where}: {run / MODEL_FILE} is unreadable ({type(error).__name__}: {error})"
            ) from error
        if spec is None or not spec.get("cross_fit"):
            raise ConfigError(
                f"{where}: {run} holds no fold out of the task (not a run of "
                "`camtl baseline single-task --folds`)"
            )
        splits.append(from_dict(CrossFit, spec["cross_fit"], "cross_fit", str(run / MODEL_FILE)))
        teachers.append(Teacher(task, run, splits[-1]))
    folds = {split.folds for split in splits}
    if len(folds) != 1:
        raise ConfigError(f"{where}: the runs in {folder} split train into {sorted(folds)} folds")
    k = folds.pop()
    held_out = sorted(split.held_out for split in splits)
    if held_out != list(range(k)):
        missing = sorted(set(range(k)) - set(held_out))
        detail = f"no run holds out fold(s) {missing}" if missing else "a fold is held out twice"
        raise ConfigError(f"{where}: {folder} has {len(teachers)} runs of {k} folds; {detail}")
    return teachers


def teacher_dev_scores(
    config: DistillationConfig, tasks: list[TaskData], key: str
) -> dict[str, float]:
    """Each distilled task's teacher's primary dev score, from the teacher run's report.json
    (what score DRO aims at under ``targets: teachers``; the mean of cross-fitted runs'). A
    teacher without a dev score for the task, or one whose primary metric is not the
    student's, is one line naming the task."""
    primary = {t.spec.name: t.spec.primary_metric for t in tasks}
    fold_scores: dict[str, list[float]] = {}
    for teacher in teacher_runs(config, list(primary), key):
        report = teacher.run_dir / f"{report_name('dev')}.json"
        where = f"key '{key}.teachers': task {teacher.task!r}"
        try:
            entry = json.loads(report.read_text(encoding="utf-8"))["results"]["tasks"][teacher.task]
            metric, score = entry["primary_metric"], float(entry["scores"][entry["primary_metric"]])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"{where}: no dev score in {report} "
                f"({type(error).__name__}: {error}); score DRO's targets: teachers reads it"
            ) from error
        if metric != primary[teacher.task]:
            raise ConfigError(
                f"{where}: the teacher's primary dev metric is {metric}, the task's here is "
                f"{primary[teacher.task]}; score DRO's targets: teachers needs the same metric"
            )
        if not score > 0:
            raise ConfigError(
                f"{where}: the teacher's dev {metric} is {score:g}; score DRO's targets: "
                "teachers needs a positive score (name the targets per task instead)"
            )
        fold_scores.setdefault(teacher.task, []).append(score)
    # cross-fitted teachers: their mean (each saw all but one fold of train)
    return {task: sum(scores) / len(scores) for task, scores in fold_scores.items()}


def check_teacher(teacher: Teacher, task: TaskData, tokenizer: Any, key: str) -> int:
    """The index of the teacher's task of the student's name; refused when its kind,
    labels, windows or tokenizer differ from the student's."""
    from camtl.modeling.encoder import load_saved_tokenizer
    from camtl.modeling.model import MultiTaskModel, read_saved_meta

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"key '{key}.teachers': task {teacher.task!r}: {reason}")

    meta_path = teacher.run_dir / MODEL_FILE
    _, specs, labels = MultiTaskModel.describe_saved(read_saved_meta(meta_path), str(meta_path))
    by_name = {s.name: s for s in specs}
    spec = by_name.get(teacher.task)
    if spec is None:
        raise refuse(f"the run {teacher.run_dir} has no such task (it has: {', '.join(by_name)})")
    mine = task.spec
    if spec.type != mine.type:
        raise refuse(f"the teacher's task is {spec.type!r}, the student's {mine.type!r}")
    if labels.get(spec.name, []) != list(task.labels):
        raise refuse(
            f"the teacher's labels {labels.get(spec.name)} differ from the student's {task.labels}"
        )
    for window in ("max_length", "doc_stride"):
        theirs, ours = getattr(spec, window, None), getattr(mine, window, None)
        if theirs != ours:
            raise refuse(f"the teacher's {window} is {theirs}, the student's {ours}")
    theirs_tok = feature_cache.tokenizer_fingerprint(load_saved_tokenizer(teacher.run_dir))
    if theirs_tok is None or theirs_tok != feature_cache.tokenizer_fingerprint(tokenizer):
        raise refuse(f"the teacher's tokenizer ({teacher.run_dir}) differs from the student's")
    return [s.name for s in specs].index(teacher.task)


def load_teacher(teacher: Teacher) -> Any:
    from camtl.modeling.model import MultiTaskModel

    # building a model draws initial weights: the student's random stream stays untouched
    with torch.random.fork_rng(devices=[]):
        return MultiTaskModel.from_pretrained(teacher.run_dir)


def _cache_key(teacher: Teacher, task: TaskData, windows: list[int], precision: str) -> str:
    """Everything the outputs come from: the teacher's weights, every input the model reads
    of each window (a multiple-choice window's choice_ids too), the precision it runs in and
    the code of the model and its heads."""
    header = f"camtl-teacher-outputs:{FORMAT}:{teacher.task}:{precision}:{_model_code_hash()}"
    digest = hashlib.sha256(header.encode())
    with open(teacher.run_dir / WEIGHTS_FILE, "rb") as weights:
        for chunk in iter(lambda: weights.read(1 << 20), b""):
            digest.update(chunk)
    inputs = ["input_ids", "token_type_ids"]
    inputs += [f.name for f in task.spec.kind.batch_fields if f.role == "input"]
    for window in windows:
        feature = task.features["train"][window]
        digest.update(json.dumps([feature.get(name) for name in inputs]).encode())
    return digest.hexdigest()


@functools.cache
def _model_code_hash() -> str:
    """sha256 of the modules a teacher's outputs are computed by (the model, the encoder
    kinds and families, every task kind's head): a change there changes the outputs."""
    from camtl import modeling
    from camtl.tasks import kinds

    digest = hashlib.sha256()
    for folder in (Path(modeling.__file__).parent, Path(kinds.__file__).parent):
        for module in sorted(folder.rglob("*.py")):
            digest.update(module.read_bytes())
    return digest.hexdigest()


@dataclass
class Inference:
    """How a teacher runs over the student's windows: with the student's tokenizer (its
    padding), precision, batch size and device."""

    tokenizer: Any
    precision: str
    batch_size: int
    device: torch.device


def task_teacher_outputs(
    teachers: list[Teacher], task: TaskData, inference: Inference, key: str
) -> list[torch.Tensor]:
    """The task's teacher logits for each of the student's training windows: its one
    teacher's, or each window's from the cross-fitted run that held its example out."""
    windows = task.features["train"]
    if len(teachers) == 1 and teachers[0].cross_fit is None:
        return teacher_outputs(teachers[0], task, list(range(len(windows))), inference, key)
    kind, examples = task.spec.kind, task.examples["train"]
    by_example: dict[int, str] = {}  # span QA: several windows per example
    digests = [
        by_example.setdefault(i, example_digest(kind, examples[i]))
        for i in (w["example_index"] for w in windows)
    ]
    student = set(by_example.values())
    outputs: list[torch.Tensor | None] = [None] * len(windows)
    for teacher in teachers:
        assert teacher.cross_fit is not None  # teacher_runs gives a task one plain teacher
        fold = teacher.cross_fit
        _check_same_split(teacher, kind, student, key)
        mine = [w for w, d in enumerate(digests) if digest_fold(d, fold.folds) == fold.held_out]
        values = teacher_outputs(teacher, task, mine, inference, key)
        for window, value in zip(mine, values, strict=True):
            outputs[window] = value
    if any(o is None for o in outputs):  # the runs' held-out folds cover every fold
        raise RuntimeError(f"task {task.spec.name}: a training window has no teacher output")
    return [o for o in outputs if o is not None]


def _check_same_split(teacher: Teacher, kind: TaskKind, student: set[str], key: str) -> None:
    """A cross-fitted run must have folded train as this camtl does (the same digests of the
    same fields), or the fold it held out is not the fold it is asked about; few of the
    student's examples among those it trained on means other data (a warning: a student
    may train on more data than its teachers did)."""
    where = f"key '{key}.teachers': task {teacher.task!r}"
    path = teacher.run_dir / CROSS_FIT_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))[teacher.task]
        made = (record["scheme"], record["fold_fields"], record["folds"], record["held_out"])
        trained_on = set(record["trained_on"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{where}: {path} is missing or unreadable ({type(error).__name__}: {error}); "
            "it says how the run split train and what it trained on"
        ) from error
    fold = teacher.cross_fit
    assert fold is not None
    ours = (SCHEME, list(kind.fold_fields or ()), fold.folds, fold.held_out)
    if list(made) != list(ours):
        raise ConfigError(
            f"{where}: {teacher.run_dir} split train by (scheme, fields, folds, held out) "
            f"{tuple(made)}, this camtl and the run's model by {ours}; its held-out fold is "
            "not the one it would be asked about (train the cross-fitted runs again)"
        )
    expected = {d for d in student if digest_fold(d, fold.folds) != fold.held_out}
    found = len(expected & trained_on)
    if expected and found < len(expected) / 2:
        log.warning(
            "task %s: %s trained on %d of the %d examples of this run's folds it should have "
            "seen: its data differ from this run's",
            teacher.task,
            teacher.run_dir,
            found,
            len(expected),
        )


def teacher_outputs(
    teacher: Teacher, task: TaskData, windows: list[int], inference: Inference, key: str
) -> list[torch.Tensor]:
    """The teacher's logits for the student's training windows ``windows`` (indices; fp32,
    each at its window's own length for token-level heads), from the cache when computed
    before."""
    index = check_teacher(teacher, task, inference.tokenizer, key)
    if not windows:
        return []
    entry = _cache_key(teacher, task, windows, inference.precision)
    path = feature_cache.features_dir() / "teachers" / f"{entry}.pt"
    if feature_cache.enabled() and path.is_file():
        try:
            outputs = torch.load(path, weights_only=True)
            if isinstance(outputs, list) and len(outputs) == len(windows):
                return outputs
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("teacher cache entry %s unreadable (%s); computing again", path, exc)
    outputs = compute_outputs(
        load_teacher(teacher),
        index,
        task,
        windows,
        inference.tokenizer,
        inference.precision,
        inference.batch_size,
        inference.device,
    )
    if feature_cache.enabled():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_target(path) as tmp:
                torch.save(outputs, tmp)
        except OSError as exc:  # a read-only or full cache only costs the next run its time
            log.warning("could not write the teacher cache entry %s: %s", path, exc)
    return outputs


@torch.no_grad()
def compute_outputs(
    model: Any,
    index: int,
    task: TaskData,
    windows: list[int],
    tokenizer: Any,
    precision: str,
    batch_size: int,
    device: torch.device,
) -> list[torch.Tensor]:
    """One forward pass of the teacher over the training windows ``windows``, batched by
    length; their outputs in that order."""
    model.to(device).eval()
    features = [task.features["train"][w] for w in windows]
    name = model.tasks[index].name
    head = model.heads[name]
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    outputs: list[torch.Tensor | None] = [None] * len(features)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate_features([features[i] for i in chunk], tokenizer.pad_token_id)
        batch["task_ids"] = torch.full_like(batch["task_ids"], index)
        inputs = {k: v.to(device) for k, v in batch.items() if not _is_label(k)}
        with autocast(precision, device):
            logits = model(**inputs).logits[name].float().cpu()
        for row, i in enumerate(chunk):
            value = logits[row]
            if head.token_level:
                value = value[: len(features[i]["input_ids"])]
            outputs[i] = value.clone()
    return [o for o in outputs if o is not None]


def _is_label(key: str) -> bool:
    from camtl.data.collate import label_keys

    return key in label_keys()
