"""Integration: CA-MTL on the real all-mpnet-base-v2 encoder (MPNet: relative position bias,
BERT-base size) learns two real offline tasks in a few steps; every task beats its trivial
baseline on dev. Needs `camtl data fetch mpnet` (make test runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from camtl.cli import main
from camtl.data.assets import encoder_dir, encoder_ready
from camtl.data.offline import task_meta

pytestmark = pytest.mark.integration


@pytest.mark.skipif(
    not (
        encoder_ready(encoder_dir(alias="mpnet"))
        and task_meta("rt_polarity")
        and task_meta("vader")
    ),
    reason="mpnet or the offline tasks not fetched (`camtl data fetch rt_polarity vader mpnet`)",
)
def test_camtl_on_mpnet_learns_polarity_and_sentiment_scores(tmp_path: Path) -> None:
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"encoder": "mpnet", "architecture": "camtl", "camtl": {"max_length": 32}},
        "tasks": [
            {
                "name": "rt_polarity",
                "max_train_examples": 1500,
                "max_dev_examples": 150,
                "max_test_examples": 20,
                "max_length": 32,
            },
            {"name": "vader", "max_dev_examples": 150, "max_test_examples": 20, "max_length": 32},
        ],
        "training": {
            "max_steps": 120,
            "batch_size": 16,
            "learning_rate": 1.0e-4,
            "eval_every": 120,
            "log_every": 20,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    for name, entry in report["results"]["tasks"].items():
        metric = entry["primary_metric"]
        score, baseline = entry["scores"][metric], entry["baseline"][metric]
        print(name, score, baseline)
        assert score > baseline, (name, score, baseline)
