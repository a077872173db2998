"""What `training.sam`'s perturbation does at the start of a run
(docs/research/2026-sampling-balancing.md, "Flat regions per task"): for each task, on its
first 32 training windows with dropout off, the gradient g at the initial weights w,
e = rho g / ||g||, the loss at w + e in fp32 and under bf16 autocast (does the perturbation
survive bf16?), and the cosine between the gradient at w + e (the one SAM applies) and g
(the plain one). With ``--weights RUN_DIR``, at that run's saved weights instead of the
initial ones (each run directory one entry of the output).

    python experiments/sam_perturbation.py experiments/configs/balancing/suite.yaml \\
        --weights runs/balancing_2026/uniform_equal_s12 runs/balancing_2026/uniform_equal_sam_s12 \\
        --out experiments/results/sam_perturbation.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from camtl.config import load_config
from camtl.data.collate import collate_features
from camtl.training.setup import build_model_and_data


def _flat(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.float().reshape(-1) for g in grads])


def _gradient(loss: Callable[[], torch.Tensor], params: list[torch.nn.Parameter]) -> torch.Tensor:
    found = torch.autograd.grad(loss(), params, allow_unused=True)
    return _flat([torch.zeros_like(p) if g is None else g for p, g in zip(params, found)])


def _shift(params: list[torch.nn.Parameter], direction: torch.Tensor, scale: float) -> None:
    offset = 0
    with torch.no_grad():
        for p in params:
            p.add_(direction[offset : offset + p.numel()].view_as(p), alpha=scale)
            offset += p.numel()


def task_probe(model: torch.nn.Module, batch: dict, task: str, rhos: list[float]) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]

    def loss() -> torch.Tensor:
        return model(**batch).task_losses[task]

    def loss_bf16() -> float:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return float(loss())

    g = _gradient(loss, params)
    norm = float(g.norm())
    sizes = [p.numel() for p in params]
    shares = [float(part.pow(2).sum()) / norm**2 for part in torch.split(g, sizes)]
    top = sorted(zip(shares, names), reverse=True)[:5]
    with torch.no_grad():
        base, base_bf16 = float(loss()), loss_bf16()
    out: dict = {
        "loss": round(base, 4),
        "grad_norm": round(norm, 4),
        "largest_grad_shares": {name: round(share, 3) for share, name in top},
    }
    for rho in rhos:
        _shift(params, g, rho / norm)
        with torch.no_grad():
            rise, rise_bf16 = float(loss()) - base, loss_bf16() - base_bf16
        at_shift = _gradient(loss, params)
        _shift(params, g, -rho / norm)
        out[f"rho_{rho:g}"] = {
            "loss_rise_fp32": round(rise, 5),
            "loss_rise_bf16": round(rise_bf16, 5),
            "cosine_sam_grad_vs_plain": round(float(torch.cosine_similarity(at_shift, g, 0)), 4),
            "norm_sam_grad_over_plain": round(float(at_shift.norm()) / norm, 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--rho", type=float, nargs="+", default=[0.05, 0.01])
    parser.add_argument("--weights", type=Path, nargs="*", default=[], metavar="RUN_DIR")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(12)
    config = load_config(args.config)
    tasks, model, tokenizer = build_model_and_data(config)
    # eval mode: no dropout of any kind (CA-MTL drops attention probabilities functionally,
    # not through nn.Dropout), so every pass computes one function; gradients flow as usual
    model.eval()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    result: dict = {"config": args.config, "windows": 32, "at": {}}
    for source in ["initial", *map(str, args.weights)]:
        weights = initial if source == "initial" else load_file(Path(source) / "model.safetensors")
        model.load_state_dict(weights)
        probes = result["at"][source] = {}
        for task in tasks:
            name = task.spec.name
            batch = collate_features(task.features["train"][:32], tokenizer.pad_token_id)
            probes[name] = task_probe(model, batch, name, args.rho)
            print(
                source,
                name,
                json.dumps({k: v for k, v in probes[name].items() if k != "largest_grad_shares"}),
            )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
