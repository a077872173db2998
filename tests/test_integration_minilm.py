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


def _fetched(*tasks: str) -> bool:
    return encoder_ready(encoder_dir()) and all(task_meta(t) for t in tasks)


@pytest.mark.skipif(
    not _fetched("rt_polarity", "wnut16"),
    reason="offline assets not fetched (run `camtl data fetch`)",
)
def test_minilm_learns_polarity_and_ner(tmp_path: Path) -> None:
    import yaml

    from camtl.cli import main

    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"encoder": "minilm", "freeze_embeddings": True, "freeze_layers": 3},
        "tasks": [
            {
                "name": "rt_polarity",
                "max_train_examples": 2000,
                "max_dev_examples": 300,
                "max_test_examples": 50,
                "max_length": 48,
            },
            {"name": "wnut16", "max_dev_examples": 230, "max_test_examples": 50, "max_length": 48},
        ],
        "training": {
            "max_steps": 80,
            "batch_size": 16,
            "learning_rate": 2.0e-4,
            "eval_every": 80,
            "log_every": 20,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    results = json.loads((tmp_path / "run" / "report.json").read_text())["results"]
    for name, entry in results["tasks"].items():
        metric = entry["primary_metric"]
        assert entry["scores"][metric] > entry["baseline"][metric], name
