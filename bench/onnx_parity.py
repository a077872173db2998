"""ONNX export parity on a trained run: every task's test split through the export on
onnxruntime and through the PyTorch model in fp32 (the export's precision).

    python bench/onnx_parity.py RUN_DIR --out bench/results/onnx_parity.json

Per task: how many test examples, the share whose label / tag sequence / answer span /
choice is the same, the largest probability or score difference, and the wall time of
both. The export is written to a temporary folder next to the output file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from camtl.data.prepare import prepare_tasks
from camtl.evaluation.decode import readable_predictions, run_model
from camtl.export import export_onnx, load_model
from camtl.modeling.model import MultiTaskModel


def _numbers(prediction: dict) -> list[float]:
    values = prediction.get("probabilities", prediction.get("score"))
    if values is None:
        return []
    if isinstance(values, dict):
        return list(values.values())
    return list(values) if isinstance(values, list) else [values]


def _discrete(prediction: dict) -> dict:
    return {k: v for k, v in prediction.items() if k not in ("probabilities", "score")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(dir=args.out.parent) as folder:
        started = time.perf_counter()
        export_onnx(args.run_dir, Path(folder) / "onnx")
        export_s = time.perf_counter() - started
        torch_model = MultiTaskModel.from_pretrained(args.run_dir).float().eval()
        onnx_model = load_model(Path(folder) / "onnx")
        tokenizer = AutoTokenizer.from_pretrained(args.run_dir)
        tasks = prepare_tasks(
            torch_model.tasks,
            tokenizer,
            ("train", "test"),
            labels=torch_model.labels,
            encode=("test",),
        )
        rows = {}
        for task in tasks:
            if not task.examples.get("test"):
                continue
            spec, examples, features = task.spec, task.examples["test"], task.features["test"]
            predictions, seconds = [], []
            for model in (torch_model, onnx_model):
                started = time.perf_counter()
                outputs = run_model(
                    model, features, spec.name, args.batch_size, tokenizer.pad_token_id
                )
                predictions.append(
                    readable_predictions(spec, task.labels, examples, features, outputs)
                )
                seconds.append(time.perf_counter() - started)
            same = [_discrete(a) == _discrete(b) for a, b in zip(*predictions)]
            gaps = [
                abs(x - y) for a, b in zip(*predictions) for x, y in zip(_numbers(a), _numbers(b))
            ]
            rows[spec.name] = {
                "type": spec.type,
                "examples": len(examples),
                "same_prediction": round(float(np.mean(same)), 6),
                "max_probability_or_score_gap": float(max(gaps, default=0.0)),
                "pytorch_fp32_s": round(seconds[0], 2),
                "onnxruntime_s": round(seconds[1], 2),
            }
            print(spec.name, rows[spec.name], flush=True)
    result = {
        "run_dir": str(args.run_dir),
        "export_s": round(export_s, 1),
        "tasks": rows,
        "all_same": all(r["same_prediction"] == 1.0 for r in rows.values()),
        "max_gap": max((r["max_probability_or_score_gap"] for r in rows.values()), default=0.0),
        "command": "python " + " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "tasks"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
