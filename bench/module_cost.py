"""What each CA-MTL module costs at inference: the conditional encoder with every module,
with one module switched off at a time, with none, and the bare encoder; interleaved,
median milliseconds per batch, in the default precision.

    python bench/module_cost.py --out results/module_cost.json [--single-task]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from step_time import DEFAULT, make_batch

VARIANTS = {
    "all": {},
    "no_attention": {"conditional_attention": False},
    "no_alignment": {"conditional_alignment": False},
    "no_layer_norm": {"conditional_layer_norm": False},
    "no_bottleneck": {"bottleneck": "none"},
    "none": {
        "conditional_attention": False,
        "conditional_alignment": False,
        "conditional_layer_norm": False,
        "bottleneck": "none",
    },
}


def build(encoder: str, **camtl: object) -> torch.nn.Module:
    from transformers import AutoModel

    from camtl.modeling.conditional_encoder import CamtlOptions, ConditionalEncoder
    from camtl.modeling.encoder import resolve_encoder_name

    hf = AutoModel.from_pretrained(resolve_encoder_name(encoder))
    return ConditionalEncoder(hf, 7, CamtlOptions(max_length=128, **camtl)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--single-task", action="store_true", help="one task per batch")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    from camtl.modeling.encoder import resolve_encoder_name
    from camtl.precision import autocast

    batch = make_batch(30522, 32, 128)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    task_ids = torch.zeros_like(batch["task_ids"]) if args.single_task else batch["task_ids"]
    models = {name: build(args.encoder, **cfg) for name, cfg in VARIANTS.items()}
    bare = AutoModel.from_pretrained(resolve_encoder_name(args.encoder)).eval()
    runs = {name: (lambda m=m: m(**inputs, task_ids=task_ids)) for name, m in models.items()}
    runs["bare_encoder"] = lambda: bare(**inputs)
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode(), autocast(DEFAULT):
        for run in runs.values():
            run()
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    ms = {name: round(1000 * statistics.median(t), 1) for name, t in times.items()}
    result = {
        "milliseconds_per_batch": ms,
        "module_cost_ms": {
            name: round(ms["all"] - ms[name], 1) for name in VARIANTS if name.startswith("no_")
        },
        "setup": {
            "precision": DEFAULT,
            "single_task": args.single_task,
            "batch": [32, 128],
            "tasks": 7,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
