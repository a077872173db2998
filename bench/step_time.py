"""Training-step time, inference throughput and peak memory of CA-MTL vs its baselines.

One run, one batch (MiniLM, batch 32 x 128 tokens, 7 tasks mixed), compared as ratios:
  camtl_over_frozen_mtl              CA-MTL step / plain multi-task step, bottom half frozen
  camtl_over_full_finetune           CA-MTL step / plain multi-task step, nothing frozen
  camtl_infer_over_encoder           CA-MTL inference throughput / bare encoder throughput
  camtl_peak_mem_over_full_finetune  peak RSS growth during training steps, CA-MTL / full

Step times are interleaved (A B C A B C ...) and summarised by the median, so a burst of
load on this noisy machine hits every configuration alike. Peak memory is measured in a
fresh subprocess per configuration (sampling RSS during the steps).

    python bench/step_time.py --out results/step_time.json [--encoder minilm] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

CONFIGS = {
    "full_finetune": {"architecture": "plain", "freeze_embeddings": False, "freeze_layers": 0},
    "frozen_mtl": {"architecture": "plain", "freeze_embeddings": True, "freeze_layers": None},
    "camtl": {"architecture": "camtl", "freeze_embeddings": None, "freeze_layers": None},
}
# --per-layer: also the paper's per-layer FiLM generators (same d-wide z). Off by default:
# a fourth model interleaved moved every ratio in our runs (docs/results.md).
PER_LAYER = {"camtl_per_layer": {**CONFIGS["camtl"], "generators": "per_layer"}}
NUM_TASKS = 7


def build(encoder: str, name: str) -> Any:
    from transformers import AutoModel

    from camtl.config import CamtlConfig, ModelConfig
    from camtl.modeling import MultiTaskModel
    from camtl.modeling.encoder import resolve_encoder_name
    from camtl.tasks.spec import SourceSpec, TaskSpec, TaskType

    spec = dict({**CONFIGS, **PER_LAYER}[name])
    generators = spec.pop("generators", "shared")
    hf = AutoModel.from_pretrained(resolve_encoder_name(encoder))
    if spec["freeze_layers"] is None:
        spec["freeze_layers"] = hf.config.num_hidden_layers // 2
    tasks = [TaskSpec(f"t{i}", TaskType.CLASSIFICATION, ["text"], "label", ["a", "b", "c"],
                      source=SourceSpec(kind="files", paths={"train": "-"}))
             for i in range(NUM_TASKS)]
    labels = {t.name: ["a", "b", "c"] for t in tasks}
    config = ModelConfig(encoder=encoder, camtl=CamtlConfig(max_length=128,
                                                            generators=generators), **spec)
    return MultiTaskModel(hf, tasks, labels, config), hf


def make_batch(vocab: int, batch: int, length: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
            "task_ids": torch.arange(batch) % NUM_TASKS,
            "cls_labels": torch.randint(0, 3, (batch,), generator=g)}


def train_step(model: Any, optimizer: torch.optim.Optimizer, batch: dict) -> float:
    start = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def optimizer_for(model: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)


def time_steps(encoder: str, steps: int, batch: dict, names: list[str]) -> dict[str, float]:
    built = {name: build(encoder, name)[0].train() for name in names}
    optims = {name: optimizer_for(m) for name, m in built.items()}
    for name in names:  # warm-up: allocator, optimizer state, kernels
        for _ in range(2):
            train_step(built[name], optims[name], batch)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(steps):
        for name in names:
            times[name].append(train_step(built[name], optims[name], batch))
    return {name: statistics.median(t) for name, t in times.items()}


@torch.inference_mode()
def time_inference(encoder: str, rounds: int, batch: dict) -> dict[str, float]:
    model, _ = build(encoder, "camtl")
    _, bare = build(encoder, "full_finetune")
    model.eval()
    bare.eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def run_camtl() -> None:
        model.encode(**inputs, task_ids=batch["task_ids"])

    def run_bare() -> None:
        bare(**inputs)

    runs = {"camtl": run_camtl, "encoder": run_bare}
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    n = batch["input_ids"].shape[0]
    return {name: n / statistics.median(t) for name, t in times.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_child(encoder: str, name: str, steps: int, batch_size: int,
                      length: int) -> None:
    """Run in a fresh process: peak RSS growth over the training steps, printed as JSON."""
    model, _ = build(encoder, name)
    model.train()
    batch = make_batch(model.encoder.config.vocab_size, batch_size, length)
    optimizer = optimizer_for(model)
    before = _rss_bytes()
    peak = before
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, _rss_bytes())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    for _ in range(steps):
        train_step(model, optimizer, batch)
    running = False
    thread.join()
    print(json.dumps({"peak_growth_bytes": peak - before}))


def peak_memory(encoder: str, name: str, batch_size: int, length: int) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--encoder", encoder,
         "--batch-size", str(batch_size), "--length", str(length)],
        check=True, capture_output=True, text=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_growth_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where the JSON results go")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--per-layer", action="store_true", help="also time per-layer "
                        "generators: camtl_shared_over_per_layer_generators")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.child:
        peak_memory_child(args.encoder, args.child, 3, args.batch_size, args.length)
        return
    if args.out is None:
        parser.error("--out is required")
    torch.manual_seed(0)
    model, _ = build(args.encoder, "camtl")
    batch = make_batch(model.encoder.config.vocab_size, args.batch_size, args.length)
    del model
    step = time_steps(args.encoder, args.steps, batch,
                      [*CONFIGS, *(PER_LAYER if args.per_layer else {})])
    infer = time_inference(args.encoder, args.steps, batch)
    memory = {name: peak_memory(args.encoder, name, args.batch_size, args.length)
              for name in ("full_finetune", "camtl")}
    result = {
        "camtl_over_frozen_mtl": step["camtl"] / step["frozen_mtl"],
        "camtl_over_full_finetune": step["camtl"] / step["full_finetune"],
        "camtl_infer_over_encoder": infer["camtl"] / infer["encoder"],
        "camtl_peak_mem_over_full_finetune": memory["camtl"] / memory["full_finetune"],
        **({"camtl_shared_over_per_layer_generators": step["camtl"] / step["camtl_per_layer"]}
           if args.per_layer else {}),
        "step_seconds_median": step,
        "inference_examples_per_second": infer,
        "peak_rss_growth_bytes": memory,
        "setup": {"encoder": args.encoder, "batch_size": args.batch_size,
                  "length": args.length, "tasks": NUM_TASKS, "steps": args.steps,
                  "threads": torch.get_num_threads(), "torch": torch.__version__},
        "targets": {"camtl_over_frozen_mtl": "<= 1.35", "camtl_over_full_finetune": "<= 0.95",
                    "camtl_infer_over_encoder": ">= 0.90",
                    "camtl_peak_mem_over_full_finetune": "<= 1.0"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: round(v, 3) for k, v in result.items() if isinstance(v, float)},
                     indent=2))


if __name__ == "__main__":
    main()
