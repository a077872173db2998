"""ONNX export parity on a trained run: every task's test split through the export on
onnxruntime and through the PyTorch model in fp32 (the export's precision).

    python bench/onnx_parity.py RUN_DIR --out bench/results/onnx_parity.json
    python bench/onnx_parity.py RUN_DIR --quantize int8 --out bench/results/onnx_int8.json

Per task: how many test examples, the share whose label / tag sequence / answer span /
choice is the same, the largest probability or score difference, and the wall time of
both. The export is written to a temporary folder next to the output file.

With ``--quantize int8`` an int8 copy of the export (camtl export's quantisation, without
its gate) runs too: per task its primary score against the PyTorch fp32 model's (and the
delta), its agreement with PyTorch, its wall time; and over the whole split the time of the
int8 graph over the fp32 graph on the same batches (``int8_over_fp32_onnx``, a function a
load benchmark can import).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camtl.data.prepare import TaskData, prepare_tasks
from camtl.evaluation.decode import forward_features, readable_predictions, run_model
from camtl.evaluation.metrics import compute_metrics
from camtl.export import export_onnx, load_model
from camtl.modeling.model import MultiTaskModel
from camtl.quantize import quantize_export


def _numbers(prediction: dict) -> list[float]:
    values = prediction.get("probabilities", prediction.get("score"))
    if values is None:
        return []
    if isinstance(values, dict):
        return list(values.values())
    return list(values) if isinstance(values, list) else [values]


def _discrete(prediction: dict) -> dict:
    return {k: v for k, v in prediction.items() if k not in ("probabilities", "score")}


def quantized_copy(fp32_export: Path, target: Path) -> Path:
    """An int8 copy of an fp32 export folder at ``target`` (camtl export's quantisation,
    without its parity gate); ``load_model(target)`` runs it."""
    shutil.copytree(fp32_export, target)
    quantize_export(target)
    return target


def feature_batches(
    tasks: Sequence[TaskData], split: str, batch_size: int
) -> list[list[dict[str, Any]]]:
    """Every task's ``split`` features in batches of one task, length-sorted as evaluation
    batches them."""
    batches = []
    for task in tasks:
        features = sorted(task.features.get(split, []), key=lambda f: len(f["input_ids"]))
        batches += [features[i : i + batch_size] for i in range(0, len(features), batch_size)]
    return batches


def int8_over_fp32_onnx(
    fp32_model: Any,
    int8_model: Any,
    batches: Sequence[list[dict[str, Any]]],
    pad_token_id: int,
    rounds: int = 1,
) -> dict[str, float]:
    """Wall time of the int8 export over the fp32 export on the same batches, in one
    process: ``fp32_model`` and ``int8_model`` are ``load_model(export_folder)`` of each
    (see ``quantized_copy``), ``batches`` lists of features of any tasks (e.g.
    ``feature_batches``). Each batch runs on both, the order alternating from batch to
    batch so that a change in machine load falls on both; one untimed warm-up batch each.

    Returns ``fp32_onnx_s``, ``int8_onnx_s`` (seconds summed over ``rounds`` passes) and
    ``int8_over_fp32_onnx`` (their ratio: under 1 when int8 is faster)."""
    if not batches:
        raise ValueError("int8_over_fp32_onnx: no batches to time")
    models = {"fp32": fp32_model, "int8": int8_model}
    for model in models.values():
        forward_features(model, batches[0], pad_token_id)
    seconds = dict.fromkeys(models, 0.0)
    for step, batch in enumerate(list(batches) * rounds):
        for name in ("fp32", "int8") if step % 2 == 0 else ("int8", "fp32"):
            started = time.perf_counter()
            forward_features(models[name], batch, pad_token_id)
            seconds[name] += time.perf_counter() - started
    return {
        "fp32_onnx_s": seconds["fp32"],
        "int8_onnx_s": seconds["int8"],
        "int8_over_fp32_onnx": seconds["int8"] / seconds["fp32"],
    }


def _primary(task: TaskData, split: str, outputs: list[np.ndarray]) -> float:
    """The task's primary score from model outputs, as ``camtl evaluate`` computes it."""
    spec, examples = task.spec, task.examples[split]
    predictions = spec.kind.decode(spec, task.labels, examples, task.features[split], outputs)
    references = spec.kind.references(spec, task.labels, examples)
    return compute_metrics(spec, predictions, references)[spec.primary_metric]


def _agreement(a: list[dict], b: list[dict]) -> dict[str, float]:
    same = [_discrete(x) == _discrete(y) for x, y in zip(a, b)]
    gaps = [abs(p - q) for x, y in zip(a, b) for p, q in zip(_numbers(x), _numbers(y))]
    return {
        "same_prediction": round(float(np.mean(same)), 6),
        "max_probability_or_score_gap": float(max(gaps, default=0.0)),
    }


def _int8_row(task: TaskData, split: str, outputs: dict, seconds: dict, readable: dict) -> dict:
    fp32 = _primary(task, split, outputs["pytorch"])
    int8 = _primary(task, split, outputs["int8"])
    return {
        "metric": task.spec.primary_metric,
        "pytorch_fp32_score": fp32,
        "onnx_int8_score": int8,
        "delta": int8 - fp32,
        **_agreement(readable["pytorch"], readable["int8"]),
        "onnxruntime_int8_s": round(seconds["int8"], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="none",
        help="int8: also run an int8 copy of the export (scores, deltas, wall times)",
    )
    parser.add_argument(
        "--split", choices=("dev", "test"), default="test", help="the split every task runs"
    )
    args = parser.parse_args()
    from transformers import AutoTokenizer

    split = args.split
    with tempfile.TemporaryDirectory(dir=args.out.parent) as folder:
        started = time.perf_counter()
        export_onnx(args.run_dir, Path(folder) / "onnx")
        export_s = time.perf_counter() - started
        models = {
            "pytorch": MultiTaskModel.from_pretrained(args.run_dir).float().eval(),
            "onnx": load_model(Path(folder) / "onnx"),
        }
        if args.quantize == "int8":
            models["int8"] = load_model(quantized_copy(Path(folder) / "onnx", Path(folder) / "q"))
        tokenizer = AutoTokenizer.from_pretrained(args.run_dir)
        tasks = prepare_tasks(
            models["pytorch"].tasks,
            tokenizer,
            ("train", split),
            labels=models["pytorch"].labels,
            encode=(split,),
        )
        tasks = [task for task in tasks if task.examples.get(split)]
        rows = {}
        for task in tasks:
            spec, examples, features = task.spec, task.examples[split], task.features[split]
            outputs, readable, seconds = {}, {}, {}
            for name, model in models.items():
                started = time.perf_counter()
                outputs[name] = run_model(
                    model, features, spec.name, args.batch_size, tokenizer.pad_token_id
                )
                readable[name] = readable_predictions(
                    spec, task.labels, examples, features, outputs[name]
                )
                seconds[name] = time.perf_counter() - started
            rows[spec.name] = {
                "type": spec.type,
                "examples": len(examples),
                **_agreement(readable["pytorch"], readable["onnx"]),
                "pytorch_fp32_s": round(seconds["pytorch"], 2),
                "onnxruntime_s": round(seconds["onnx"], 2),
            }
            if "int8" in models:
                rows[spec.name]["int8"] = _int8_row(task, split, outputs, seconds, readable)
            print(spec.name, rows[spec.name], flush=True)
        timing = (
            int8_over_fp32_onnx(
                models["onnx"],
                models["int8"],
                feature_batches(tasks, split, args.batch_size),
                tokenizer.pad_token_id,
            )
            if "int8" in models
            else None
        )
    result = {
        "run_dir": str(args.run_dir),
        "split": split,
        "export_s": round(export_s, 1),
        "tasks": rows,
        "all_same": all(r["same_prediction"] == 1.0 for r in rows.values()),
        "max_gap": max((r["max_probability_or_score_gap"] for r in rows.values()), default=0.0),
        "command": "python " + " ".join(sys.argv),
    }
    if timing is not None:
        result["int8"] = {**timing, "deltas": {n: r["int8"]["delta"] for n, r in rows.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "tasks"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
