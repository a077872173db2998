"""Task files, run configs and tiny trained runs for the test suite (and examples): the
helpers several test modules share, so that no test module imports another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from camtl.cli import main
from camtl.tasks.kinds import get_kind, kind_names

WORDS = "the good bad movie film food dog cat john mary paris london very great awful".split()
REPEAT = 6  # each sample record this many times: enough rows for train, dev and a batch


def write_task_files(root: Path) -> None:
    """Four small seeded task files in ``root`` (60 records each): ``pairs.jsonl``
    (classification), ``scores.csv`` (regression), ``ner.conll`` (tagging), ``qa.jsonl``
    (span QA)."""
    import random

    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)

    def sentence(n: int = 6) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    with (root / "pairs.jsonl").open("w") as f:
        for _ in range(60):
            a, b = sentence(), sentence()
            label = "same" if ("good" in a) == ("good" in b) else "different"
            f.write(json.dumps({"premise": a, "hypothesis": b, "label": label}) + "\n")
    with (root / "scores.csv").open("w") as f:
        f.write("text,score\n")
        for _ in range(60):
            s = sentence()
            f.write(f"{s},{s.count('good') - s.count('bad')}\n")
    with (root / "ner.conll").open("w") as f:
        for _ in range(60):
            for word in sentence().split():
                tag = (
                    "B-PER"
                    if word in ("john", "mary")
                    else "B-LOC"
                    if word in ("paris", "london")
                    else "O"
                )
                f.write(f"{word}\t{tag}\n")
            f.write("\n")
    with (root / "qa.jsonl").open("w") as f:
        for i in range(60):
            context = sentence(8) + " john"
            start = context.index("john")
            f.write(
                json.dumps(
                    {
                        "id": str(i),
                        "question": "who is mentioned",
                        "context": context,
                        "answers": {"text": ["john"], "answer_start": [start]},
                    }
                )
                + "\n"
            )


def write_config(root: Path, encoder: Path, **training: object) -> Path:
    """``root/config.yaml``: the tasks of ``write_task_files`` on ``encoder``, trained into
    ``root/run``; ``training`` keys override the short defaults."""
    config = {
        "output_dir": str(root / "run"),
        "seed": 3,
        "model": {"encoder": str(encoder)},
        "tasks": [
            {
                "name": "pairs",
                "type": "classification",
                "text_columns": ["premise", "hypothesis"],
                "label_column": "label",
                "source": {"paths": {"train": "pairs.jsonl"}},
            },
            {
                "name": "scores",
                "type": "regression",
                "text_columns": ["text"],
                "label_column": "score",
                "source": {"paths": {"train": "scores.csv"}},
            },
            {
                "name": "ner",
                "type": "token_tagging",
                "text_columns": ["tokens"],
                "label_column": "tags",
                "source": {"paths": {"train": "ner.conll"}},
            },
            {
                "name": "qa",
                "type": "span_qa",
                "text_columns": ["question", "context"],
                "label_column": "answers",
                "max_length": 32,
                "doc_stride": 8,
                "source": {"paths": {"train": "qa.jsonl", "test": "qa.jsonl"}},
            },
        ],
        "training": {
            "max_steps": 6,
            "batch_size": 8,
            "eval_every": 3,
            "log_every": 2,
            "learning_rate": 1e-3,
            **training,
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_sample(kind_name: str, folder: Path) -> Path:
    """The kind's sample records, repeated, as a JSONL file."""
    path = folder / f"{kind_name}.jsonl"
    rows = get_kind(kind_name).sample().records * REPEAT
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def task_entry(kind_name: str, path: Path) -> dict:
    """A config's task entry reading the kind's sample records from ``path``."""
    sample = get_kind(kind_name).sample()
    return {
        "name": f"{kind_name}_task",
        "type": kind_name,
        "text_columns": sample.text_columns,
        "label_column": sample.label_column,
        "max_length": 48,
        "doc_stride": 16,
        "source": {"paths": {"train": str(path), "dev": str(path), "test": str(path)}},
    }


def train_kinds_run(
    root: Path,
    encoder: Path,
    kinds: list[str] | None = None,
    architecture: str = "camtl",
    max_length: int = 48,
    **training: Any,
) -> Path:
    """Train a tiny run with one task per kind in ``kinds`` (default: every registered kind;
    their sample records) in ``root/run_<architecture>``; ``training`` keys override the
    short defaults."""
    config = {
        "output_dir": str(root / f"run_{architecture}"),
        "seed": 4,
        "model": {
            "encoder": str(encoder),
            "architecture": architecture,
            "camtl": {"max_length": max_length},
        },
        "tasks": [task_entry(name, write_sample(name, root)) for name in kinds or kind_names()],
        "training": {
            "max_steps": 4,
            "batch_size": 8,
            "eval_every": 4,
            "log_every": 4,
            "learning_rate": 1e-3,
            **training,
        },
    }
    path = root / f"{architecture}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    return root / f"run_{architecture}"


def qa_example(question: str, context: str, answer: str, occurrence: int = 0) -> dict:
    """A span-QA example whose answer is the ``occurrence``-th place ``answer`` occurs in
    ``context`` (0: the first)."""
    start = -1
    for _ in range(occurrence + 1):
        start = context.index(answer, start + 1)
    return {
        "id": "q",
        "question": question,
        "context": context,
        "answers": [{"text": answer, "start": start}],
        "_file": "f",
        "_row": 1,
    }


def fake_run(root: Path, name: str, scores: dict[str, float], total: int, **info: object) -> Path:
    """A run directory holding only a report.json, as a finished run writes it."""
    from camtl.evaluation.metrics import aggregate

    run = root / name
    run.mkdir()
    tasks = {
        t: {"primary_metric": "accuracy", "scores": {"accuracy": s}} for t, s in scores.items()
    }
    report = {
        "results": {"tasks": tasks, "aggregate": aggregate(scores, lower_is_better=())},
        "run_info": {"parameters": {"total": total, "encoder": 100}, "wall_time_s": 10.0, **info},
    }
    (run / "report.json").write_text(json.dumps(report))
    return run


def camtl_train_process(*args: str, kill_after: int | None = None) -> subprocess.Popen[str]:
    """``camtl train ARGS`` in its own process, as a user runs it, offline, one thread (two
    runs go side by side on small machines); ``kill_after``: a hard exit (137, no cleanup)
    after that step (``CAMTL_KILL_AFTER_STEP``)."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("CAMTL_KILL_AFTER_STEP", None)
    if kill_after is not None:
        env["CAMTL_KILL_AFTER_STEP"] = str(kill_after)
    return subprocess.Popen(
        [sys.executable, "-m", "camtl.cli", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    """(exit code, stderr) of a process of ``camtl_train_process``."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err
