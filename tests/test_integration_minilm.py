"""Integration: the real all-MiniLM-L6-v2 encoder learns real offline tasks.

Needs `camtl data fetch` (make test runs it). A short run on two small tasks must beat
each task's trivial baseline on dev: a test that learning happens, not a benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camtl.data.assets import encoder_dir, encoder_ready
from camtl.data.offline import task_meta

pytestmark = pytest.mark.integration


# the model and two offline tasks both tests train (inputs cut to 48 tokens to stay short)
MODEL = {"encoder": "minilm", "freeze_embeddings": True, "freeze_layers": 3}
OFFLINE_PAIR = [
    {
        "name": "rt_polarity",
        "max_train_examples": 2000,
        "max_dev_examples": 300,
        "max_test_examples": 50,
        "max_length": 48,
    },
    {"name": "wnut16", "max_dev_examples": 230, "max_test_examples": 50, "max_length": 48},
]


def train_and_score(config: dict, tmp_path: Path) -> dict[str, tuple[float, float]]:
    """Train ``config``; each task's dev (score, trivial baseline) on its primary metric."""
    import yaml

    from camtl.cli import main

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    results = json.loads((Path(config["output_dir"]) / "report.json").read_text())["results"]
    return {
        name: (entry["scores"][entry["primary_metric"]], entry["baseline"][entry["primary_metric"]])
        for name, entry in results["tasks"].items()
    }


def assert_every_task_beats_its_baseline(scores: dict[str, tuple[float, float]]) -> None:
    print(scores)
    for name, (score, baseline) in scores.items():
        assert score > baseline, (name, scores)


def _fetched(*tasks: str) -> bool:
    return encoder_ready(encoder_dir()) and all(task_meta(t) for t in tasks)


@pytest.mark.skipif(
    not _fetched("rt_polarity", "wnut16"),
    reason="offline assets not fetched (run `camtl data fetch`)",
)
def test_minilm_learns_polarity_and_ner(tmp_path: Path) -> None:
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": MODEL,
        "tasks": OFFLINE_PAIR,
        "training": {
            "max_steps": 80,
            "batch_size": 16,
            "learning_rate": 2.0e-4,
            "eval_every": 80,
            "log_every": 20,
        },
    }
    assert_every_task_beats_its_baseline(train_and_score(config, tmp_path))


def _read(name: str, split: str) -> list[dict]:
    from camtl.data.offline import task_split_path

    lines = task_split_path(name, split).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _bbc_topics(split: str, limit: int, seed: int) -> list[dict]:
    """Multi-label from BBC News: the leads of one or two articles, labelled with the set
    of their topics (one or two labels)."""
    import random

    rng = random.Random(seed)
    records = _read("bbc_topic", split)
    rows = []
    for _ in range(limit):
        picked = rng.sample(records, rng.choice((1, 2)))
        text = " ".join(" ".join(r["text"].split()[:24]) for r in picked)
        rows.append({"text": text, "topics": sorted({r["label"] for r in picked})})
    return rows


def _snli_choice(split: str, limit: int, seed: int) -> list[dict]:
    """Multiple choice from SNLI: of two hypotheses of one premise, which one it entails
    (the other is its contradiction); the right one's position is drawn at random."""
    import random

    rng = random.Random(seed)
    by_premise: dict[str, dict[str, str]] = {}
    for record in _read("snli", split):
        by_premise.setdefault(record["text"], {}).setdefault(record["label"], record["text_pair"])
    rows = []
    for premise, hypotheses in by_premise.items():
        if "entailment" in hypotheses and "contradiction" in hypotheses:
            choices = [hypotheses["entailment"], hypotheses["contradiction"]]
            right = rng.randrange(2)
            if right:
                choices.reverse()
            rows.append(
                {"premise": premise, "first": choices[0], "second": choices[1], "label": right}
            )
        if len(rows) == limit:
            break
    return rows


@pytest.mark.skipif(
    not _fetched("rt_polarity", "wnut16", "snli", "bbc_topic"),
    reason="offline assets not fetched (run `camtl data fetch`)",
)
def test_new_kinds_learn_in_one_run_with_the_offline_suite(tmp_path: Path) -> None:
    """Multi-label and multiple-choice tasks (files this test writes from real offline data)
    train in one run with two offline tasks; every task beats its trivial baseline."""

    files = {
        "topics": (_bbc_topics("train", 1500, 1), _bbc_topics("dev", 200, 2)),
        "choice": (_snli_choice("train", 2000, 1), _snli_choice("dev", 300, 2)),
    }
    paths = {}
    for name, (train, dev) in files.items():
        for split, rows in (("train", train), ("dev", dev)):
            path = tmp_path / f"{name}_{split}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            paths[(name, split)] = str(path)
    config = {
        "output_dir": str(tmp_path / "run"),
        "seed": 12,
        "model": MODEL,
        "tasks": [
            *OFFLINE_PAIR,
            {
                "name": "bbc_topics",
                "type": "multi_label",
                "text_columns": ["text"],
                "label_column": "topics",
                "max_length": 64,
                "source": {"paths": {s: paths[("topics", s)] for s in ("train", "dev")}},
            },
            {
                "name": "snli_choice",
                "type": "multiple_choice",
                "text_columns": ["premise", "first", "second"],
                "label_column": "label",
                "max_length": 64,
                "source": {"paths": {s: paths[("choice", s)] for s in ("train", "dev")}},
            },
        ],
        "training": {
            "max_steps": 240,
            "batch_size": 16,
            "learning_rate": 2.0e-4,
            "eval_every": 240,
            "log_every": 40,
            "sampler": {"name": "uniform"},
        },
    }
    assert_every_task_beats_its_baseline(train_and_score(config, tmp_path))
