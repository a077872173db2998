"""Training-step time, inference throughput and peak memory of CA-MTL vs its baselines,
and what bf16 autocast buys.

One run, one batch (MiniLM, batch 32 x 128 tokens, 7 tasks mixed), compared as ratios; the
first four in the default precision (``auto``: bf16 where the CPU has bf16 instructions):
  camtl_over_frozen_mtl              CA-MTL step / plain multi-task step, both with the paper's
                                     freezing (embeddings and bottom half)
  camtl_over_full_finetune           that CA-MTL step / plain multi-task step, nothing frozen
  camtl_unfrozen_over_full_finetune  CA-MTL step with nothing frozen (the default since issue
                                     38) / plain step, nothing frozen; a pair of its own; no
                                     target (camtl_unfrozen_peak_mem_over_full_finetune alike)
  camtl_infer_over_encoder           CA-MTL inference throughput / bare encoder throughput
  (camtl_infer_over_encoder_single_task: the same with one task per batch, as evaluation
   and prediction run; no target)
  camtl_peak_mem_over_full_finetune  peak RSS growth during training steps, CA-MTL / full
  bf16_over_fp32_train_step          CA-MTL training step, bf16 autocast / fp32
  bf16_over_fp32_infer               CA-MTL inference time of the batch, bf16 / fp32
  train_flops_over_peak              FLOP/s achieved by the CA-MTL training step in the
                                     faster precision / bf16 matmul peak of this machine
  camtl_step_over_before             CA-MTL bf16 training step with the speed options
                                     (NEW: attention auto, i.e. eager when training on CPU;
                                     attention dropout 0, hidden dropout 0.1 with 16-bit
                                     masks on CPU; fused AdamW; frozen weights cast once) /
                                     the same step as it ran before them (BEFORE: sdpa
                                     attention, dropout 0.1 everywhere with torch's masks,
                                     torch's default AdamW kernel, on CPU a loop over
                                     parameters; casts at every call); target <= 0.55
  bits_masks_over_torch_masks        the NEW step / the same step with torch's dropout masks
                                     (model.dropout_masks: bernoulli); no target
  distill_step_over_plain            CA-MTL training step whose task losses mix in a teacher's
                                     cached outputs (training.distillation, gold weight 0.5)
                                     / the same step without teachers; target <= 1.10
  sam_step_over_plain                CA-MTL training step under training.sam (each task's
                                     gradient at its own perturbation, rho 0.05) / the plain
                                     step, both through camtl's step function; no target

Every configuration otherwise trains as `camtl train` does by default (model.attention auto,
training.optimizer_impl auto, training.cast_frozen_once on for bf16; attention dropout the
pretrained value since issue 38; bench/results/step_time_attention0.json is the run before
that change, with 0, and bench/attention_dropout.py measures what it adds to a step).

FLOP count of a training step: counted by torch.utils.flop_counter.FlopCounterMode over one
forward and backward pass (matmuls, linear layers, attention's two batched products; each
multiply-add is 2 FLOPs). For MiniLM (d = 384, 6 layers, FFN 1536) on B x L = 32 x 128
tokens that is, per layer, forward 2 * BL * (4 d^2 + 2 d * 1536) = 14.5 GFLOP of projections
plus 4 * B * L^2 * d = 0.8 GFLOP of attention, 92 GFLOP for the six layers; backward needs
input gradients through every layer (the conditional modules sit in the frozen bottom half
too) and weight gradients in the trained top half only, so a step is about 2.5x the
forward: the counter gives 237 GFLOP.
The peak is the median throughput of a 2048 x 2048 bf16 matmul, measured in the same run.

Step times are interleaved (A B C A B C ...) and summarised by the median, so a burst of
load on this noisy machine hits every configuration alike; the precision comparison is a
second interleaved pair (CA-MTL fp32 / bf16), and NEW / BEFORE a third, kept apart so the
first three ratios are timed as before. Peak memory is measured in a fresh subprocess per
configuration (sampling RSS during the steps).

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from camtl.precision import autocast, resolve_precision

CONFIGS = {
    "full_finetune": {"architecture": "plain", "freeze_embeddings": False, "freeze_layers": 0},
    "frozen_mtl": {"architecture": "plain", "freeze_embeddings": True, "freeze_layers": None},
    # the paper's freezing (the embeddings and the bottom half), CA-MTL's default until issue 38:
    # the configuration the first targets were set for
    "camtl": {"architecture": "camtl", "freeze_embeddings": True, "freeze_layers": None},
}
# CA-MTL's default since issue 38, nothing frozen: timed as its own pair against full
# fine-tuning (a fourth model in the first interleave would move the first ratios)
UNFROZEN = {
    "camtl_unfrozen": {"architecture": "camtl", "freeze_embeddings": False, "freeze_layers": 0}
}
# --per-layer: also the paper's per-layer FiLM generators (same d-wide z). Off by default:
# a fourth model interleaved moved every ratio in our runs (docs/research/2026-speed.md).
PER_LAYER = {"camtl_per_layer": {**CONFIGS["camtl"], "generators": "per_layer"}}
NUM_TASKS = 7
DEFAULT = resolve_precision("auto")


@dataclass(frozen=True)
class Setup:
    """The speed options of a timed model: model options (camtl.model_config.ModelConfig),
    the AdamW kernel (training.optimizer_impl) and training.cast_frozen_once."""

    model: dict[str, Any] = field(default_factory=dict)
    optimizer_impl: str = "auto"
    cast_frozen_once: bool | None = None


DEFAULTS = Setup()  # what `camtl train` does
NEW = Setup(
    {"attention": "auto", "attention_dropout": 0.0, "hidden_dropout": 0.1, "dropout_masks": "auto"},
    "auto",
    True,
)
BEFORE = Setup(
    {
        "attention": "sdpa",
        "attention_dropout": 0.1,
        "hidden_dropout": 0.1,
        "dropout_masks": "bernoulli",
    },
    "torch_default",
    False,
)
NEW_TORCH_MASKS = replace(NEW, model={**NEW.model, "dropout_masks": "bernoulli"})
SETUPS = {"default": DEFAULTS, "new": NEW, "before": BEFORE, "new_torch_masks": NEW_TORCH_MASKS}


def build(encoder: str, name: str, options: dict[str, Any] | None = None) -> Any:
    from transformers import AutoModel

    from camtl.model_config import ModelConfig
    from camtl.modeling import MultiTaskModel
    from camtl.modeling.conditional_encoder import CamtlOptions
    from camtl.modeling.encoder import resolve_encoder_name
    from camtl.tasks.spec import SourceSpec, TaskSpec

    spec = dict({**CONFIGS, **PER_LAYER, **UNFROZEN}[name])
    generators = spec.pop("generators", "shared")
    hf = AutoModel.from_pretrained(resolve_encoder_name(encoder))
    if spec["freeze_layers"] is None:
        spec["freeze_layers"] = hf.config.num_hidden_layers // 2
    tasks = [
        TaskSpec(
            f"t{i}",
            "classification",
            ["text"],
            "label",
            ["a", "b", "c"],
            source=SourceSpec(kind="files", paths={"train": "-"}),
        )
        for i in range(NUM_TASKS)
    ]
    labels = {t.name: ["a", "b", "c"] for t in tasks}
    config = ModelConfig(
        encoder=encoder,
        options={"camtl": CamtlOptions(max_length=128, generators=generators)},
        **spec,
        **(options or {}),
    )
    return MultiTaskModel(hf, tasks, labels, config), hf


def prepare(
    encoder: str, name: str, setup: Setup = DEFAULTS, precision: str = DEFAULT
) -> tuple[Any, torch.optim.Optimizer]:
    """A model in training mode and its optimizer, as ``setup`` says."""
    from camtl.modeling.frozen_cast import cache_frozen_casts, use_frozen_cast_cache

    model = build(encoder, name, setup.model)[0].train()
    if use_frozen_cast_cache(setup.cast_frozen_once, precision):
        cache_frozen_casts(model)
    return model, optimizer_for(model, setup.optimizer_impl)


def make_batch(vocab: int, batch: int, length: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, length), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "task_ids": torch.arange(batch) % NUM_TASKS,
        "cls_labels": torch.randint(0, 3, (batch,), generator=g),
    }


def train_step(
    model: Any, optimizer: torch.optim.Optimizer, batch: dict, precision: str = DEFAULT
) -> float:
    start = time.perf_counter()
    with autocast(precision):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def optimizer_for(model: Any, impl: str = "auto") -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, its kernel as training.optimizer_impl says."""
    from camtl.training.setup import optimizer_flags

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-5, **optimizer_flags(impl, params))


def time_steps(
    encoder: str, steps: int, batch: dict, runs: dict[str, tuple[str, str, Setup]]
) -> dict[str, float]:
    """Median step time of each run: label -> (configuration, precision, setup),
    interleaved."""
    built = {
        label: prepare(encoder, name, setup, precision)
        for label, (name, precision, setup) in runs.items()
    }
    for label, (_, precision, _) in runs.items():  # warm-up: allocator, optimizer state
        for _ in range(2):
            train_step(*built[label], batch, precision)
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(steps):
        for label, (_, precision, _) in runs.items():
            times[label].append(train_step(*built[label], batch, precision))
    return {label: statistics.median(t) for label, t in times.items()}


def interleaved(step: Any, labels: list[str], steps: int) -> dict[str, float]:
    """Median seconds of ``step(label)`` for each label: two warm-up calls each, then the
    labels in turn ``steps`` times, so load on the machine hits them alike."""
    for label in labels:
        for _ in range(2):
            step(label)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(steps):
        for label in labels:
            times[label].append(step(label))
    return {label: statistics.median(t) for label, t in times.items()}


def time_distillation(encoder: str, steps: int, batch: dict) -> dict[str, float]:
    """Median step time of the half-frozen CA-MTL step with and without teachers, interleaved.
    The teachers' outputs are what a cache holds (one tensor per training window, here made
    up: timing does not depend on their values)."""
    from camtl.distillation import DistillationConfig
    from camtl.distillation.distiller import Distiller

    rows = len(batch["task_ids"])
    pairs = [(int(t), r) for r, t in enumerate(batch["task_ids"])]
    g = torch.Generator().manual_seed(1)
    outputs = {t: [torch.randn(3, generator=g) for _ in range(rows)] for t in range(NUM_TASKS)}
    config = DistillationConfig(teachers="-", schedule="constant", start_gold_weight=0.5)
    distiller = Distiller(config, outputs, max_steps=steps)
    built = {label: prepare(encoder, "camtl") for label in ("distilled", "plain")}

    def step(label: str) -> float:
        model, optimizer = built[label]
        start = time.perf_counter()
        with autocast(DEFAULT):
            out = model(**batch)
            losses = (
                distiller.task_losses(model, out, batch, pairs, 0)
                if label == "distilled"
                else out.task_losses
            )
            loss = torch.stack(list(losses.values())).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    medians = interleaved(step, list(built), steps)
    return {f"camtl_{label}": value for label, value in medians.items()}


def time_sam(encoder: str, steps: int, batch: dict) -> dict[str, float]:
    """Median step time of camtl's step function with and without training.sam, on the
    same batch (the batch scheduler replaced by this fixed batch), interleaved."""
    from camtl.balancing import build_balancer
    from camtl.config import SamConfig
    from camtl.training import step as step_module

    pairs = [(int(t), r) for r, t in enumerate(batch["task_ids"])]
    step_module.micro_batch = lambda *a: (dict(batch), pairs)  # type: ignore[assignment]

    class ConstantLR:
        def get_last_lr(self) -> list[float]:
            return [1e-5]

        def step(self) -> None:
            pass

    built = {}
    for label, sam in (("sam", SamConfig(rho=0.05)), ("plain", None)):
        model, optimizer = prepare(encoder, "camtl")
        built[label] = step_module.StepParts(
            model=model,
            balancer=build_balancer("equal", {}, [t.name for t in model.tasks]),
            optimizer=optimizer,
            lr_scheduler=ConstantLR(),
            batch_scheduler=None,  # type: ignore[arg-type]
            tasks=[],
            pad_token_id=0,
            clip_parameters=[p for p in model.parameters() if p.requires_grad],
            max_grad_norm=1.0,
            sam=sam,
        )
    accelerator = step_module.SingleProcess(DEFAULT, torch.device("cpu"))

    def step(label: str) -> float:
        start = time.perf_counter()
        step_module.train_step(built[label], accelerator, 0)
        return time.perf_counter() - start

    medians = interleaved(step, list(built), steps)
    return {f"camtl_step_fn_{label}": value for label, value in medians.items()}


def step_flops(encoder: str, batch: dict) -> int:
    """FLOPs of one CA-MTL training step (forward + backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(encoder, "camtl")[0].train()
    counter = FlopCounterMode(display=False)
    with counter:
        model(**batch).loss.backward()
    return int(counter.get_total_flops())


def matmul_peak(size: int = 2048, rounds: int = 10) -> float:
    """bf16 matmul FLOP/s: the machine's peak for the precision we train in."""
    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    a @ b
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


@torch.inference_mode()
def time_inference(encoder: str, rounds: int, batch: dict) -> dict[str, float]:
    """Examples/s of CA-MTL and the bare encoder in the default precision, CA-MTL in fp32
    and bf16, interleaved."""
    model, _ = build(encoder, "camtl")
    _, bare = build(encoder, "full_finetune")
    model.eval()
    bare.eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def camtl_in(precision: str, task_ids: torch.Tensor = batch["task_ids"]) -> Any:
        def run() -> None:
            with autocast(precision):
                model.encode(**inputs, task_ids=task_ids)

        return run

    def run_bare() -> None:
        with autocast(DEFAULT):
            bare(**inputs)

    runs = {
        "camtl": camtl_in(DEFAULT),
        "encoder": run_bare,
        "camtl_fp32": camtl_in("no"),
        "camtl_bf16": camtl_in("bf16"),
        # one task per batch, as evaluation and prediction run
        "camtl_single_task": camtl_in(DEFAULT, torch.zeros_like(batch["task_ids"])),
    }
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


def peak_memory_child(encoder: str, name: str, steps: int, batch_size: int, length: int) -> None:
    """Run in a fresh process: peak RSS growth over the training steps, printed as JSON."""
    model, optimizer = prepare(encoder, name)
    batch = make_batch(model.encoder.config.vocab_size, batch_size, length)
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
        [
            sys.executable,
            __file__,
            "--child",
            name,
            "--encoder",
            encoder,
            "--batch-size",
            str(batch_size),
            "--length",
            str(length),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_growth_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where the JSON results go")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument(
        "--per-layer",
        action="store_true",
        help="also time per-layer generators: camtl_shared_over_per_layer_generators",
    )
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
    step = time_steps(
        args.encoder,
        args.steps,
        batch,
        {
            name: (name, DEFAULT, DEFAULTS)
            for name in [*CONFIGS, *(PER_LAYER if args.per_layer else {})]
        },
    )
    step.update(
        time_steps(
            args.encoder,
            args.steps,
            batch,
            {"camtl_fp32": ("camtl", "no", DEFAULTS), "camtl_bf16": ("camtl", "bf16", DEFAULTS)},
        )
    )
    step.update(
        time_steps(
            args.encoder,
            args.steps,
            batch,
            {
                "camtl_new": ("camtl", "bf16", NEW),
                "camtl_before": ("camtl", "bf16", BEFORE),
                "camtl_new_torch_masks": ("camtl", "bf16", NEW_TORCH_MASKS),
            },
        )
    )
    step.update(
        time_steps(
            args.encoder,
            args.steps,
            batch,
            {
                "full_finetune_pair": ("full_finetune", DEFAULT, DEFAULTS),
                "camtl_unfrozen": ("camtl_unfrozen", DEFAULT, DEFAULTS),
            },
        )
    )
    step.update(time_distillation(args.encoder, args.steps, batch))
    step.update(time_sam(args.encoder, args.steps, batch))
    infer = time_inference(args.encoder, args.steps, batch)
    flops = step_flops(args.encoder, batch)
    peak = matmul_peak()
    memory = {
        name: peak_memory(args.encoder, name, args.batch_size, args.length)
        for name in ("full_finetune", "camtl", "camtl_unfrozen")
    }
    result = {
        "camtl_over_frozen_mtl": step["camtl"] / step["frozen_mtl"],
        "camtl_over_full_finetune": step["camtl"] / step["full_finetune"],
        "camtl_infer_over_encoder": infer["camtl"] / infer["encoder"],
        "camtl_infer_over_encoder_single_task": infer["camtl_single_task"] / infer["encoder"],
        "camtl_peak_mem_over_full_finetune": memory["camtl"] / memory["full_finetune"],
        "camtl_unfrozen_over_full_finetune": step["camtl_unfrozen"] / step["full_finetune_pair"],
        "camtl_unfrozen_peak_mem_over_full_finetune": (
            memory["camtl_unfrozen"] / memory["full_finetune"]
        ),
        "bf16_over_fp32_train_step": step["camtl_bf16"] / step["camtl_fp32"],
        "bf16_over_fp32_infer": infer["camtl_fp32"] / infer["camtl_bf16"],
        "train_flops_over_peak": flops / min(step["camtl_bf16"], step["camtl_fp32"]) / peak,
        "camtl_step_over_before": step["camtl_new"] / step["camtl_before"],
        "bits_masks_over_torch_masks": step["camtl_new"] / step["camtl_new_torch_masks"],
        "distill_step_over_plain": step["camtl_distilled"] / step["camtl_plain"],
        "sam_step_over_plain": step["camtl_step_fn_sam"] / step["camtl_step_fn_plain"],
        **(
            {"camtl_shared_over_per_layer_generators": step["camtl"] / step["camtl_per_layer"]}
            if args.per_layer
            else {}
        ),
        "step_seconds_median": step,
        "inference_examples_per_second": infer,
        "peak_rss_growth_bytes": memory,
        "train_step_flops": flops,
        "bf16_matmul_peak_flops_per_s": peak,
        "setup": {
            "precision": DEFAULT,
            "encoder": args.encoder,
            "batch_size": args.batch_size,
            "length": args.length,
            "tasks": NUM_TASKS,
            "steps": args.steps,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "camtl_step_over_before": {"new": asdict(NEW), "before": asdict(BEFORE)},
            "bits_masks_over_torch_masks": {"torch_masks": asdict(NEW_TORCH_MASKS)},
        },
        "targets": {
            "camtl_over_frozen_mtl": "<= 1.35",
            "camtl_over_full_finetune": "<= 0.95",
            "camtl_infer_over_encoder": ">= 0.90",
            "camtl_peak_mem_over_full_finetune": "<= 1.0",
            "bf16_over_fp32_train_step": "<= 0.70",
            "bf16_over_fp32_infer": "<= 0.60",
            "train_flops_over_peak": ">= 0.30",
            "camtl_step_over_before": "<= 0.55",
            "distill_step_over_plain": "<= 1.10",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: round(v, 3) for k, v in result.items() if isinstance(v, float)}, indent=2))


if __name__ == "__main__":
    main()
