"""A controlled synthetic setting for worst-case-aware balancing (Lookahead-DRO's abstract
names one; its body is not available, so this is our construction).

    python experiments/dro_synthetic.py --out experiments/results/dro_synthetic.json [--seeds 5]
    python experiments/dro_synthetic.py --out sweep.json --methods lookahead_dro \
        --lookahead-options '{"temperature": 0.3}'      # one point of the defaults' sweep

Five binary tasks on 16-dimensional Gaussian inputs (4,000 training examples each) share
one small trunk (16 -> 6 tanh units) with a linear head each:
  shared_a, shared_b, shared_c  nearly the same labelling direction: they help each other
  noisy                         the shared direction too, but 40% of its training labels
                                flipped: a loss no weighting can remove (scored on clean
                                labels, where it does well once learned)
  hard                          a direction orthogonal to the shared one, along which the
                                inputs vary 0.3 as much: its gradients are small, so under
                                equal weights it is left behind within the budget
Each step trains on a batch of 32 from every task; the balancer combines the five losses
and plain SGD steps the whole model for 600 steps. Scores are clean-label test accuracies
(2,000 per task). Per method and seed: the mean and worst accuracy, and ``tasks_trained``,
the tasks whose average weight over the run stayed at least a quarter of the uniform
weight (1/20). Methods: equal, group_dro (raw losses, as Sagawa et al.), lookahead_dro
(our method, its defaults), famo; and as diagnostics group DRO on relative losses,
Lookahead-DRO with a one-batch Gram matrix (the failure case its default avoids), PCGrad.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from camtl.balancing import BalanceContext, build_balancer

TASKS = ["shared_a", "shared_b", "shared_c", "noisy", "hard"]
METHODS = {
    "equal": ("equal", {}),
    "group_dro": ("group_dro", {"step_size": 0.01}),
    "lookahead_dro": ("lookahead_dro", {}),
    "famo": ("famo", {}),
    "group_dro_relative": ("group_dro", {"step_size": 0.01, "relative_losses": True}),
    "lookahead_dro_same_batch": ("lookahead_dro", {"gram": "same_batch"}),
    "pcgrad": ("pcgrad", {}),
}
DIM, WIDTH, STEPS, BATCH, LR = 16, 6, 600, 32, 0.1
N_TRAIN, NOISE, HARD_SCALE = 4000, 0.4, 0.3
FLOOR = 0.25 / len(TASKS)


def make_data(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(DIM, generator=g)
    directions = {
        name: base + 0.3 * torch.randn(DIM, generator=g)
        for name in ("shared_a", "shared_b", "shared_c")
    }
    directions["noisy"] = base + 0.3 * torch.randn(DIM, generator=g)  # shares the structure
    # the hard task's direction: orthogonal to the shared one, so the trunk must give it
    # units of its own; its inputs vary little along it, so its gradients are small
    own = torch.randn(DIM, generator=g)
    own = own - (own @ base) / (base @ base) * base
    directions["hard"] = own / own.norm()

    def inputs(name: str, n: int) -> torch.Tensor:
        x = torch.randn(n, DIM, generator=g)
        if name == "hard":
            u = directions["hard"]
            x = x - (1 - HARD_SCALE) * (x @ u)[:, None] * u[None, :]
        return x

    def labels(name: str, x: torch.Tensor) -> torch.Tensor:
        return (x @ directions[name] > 0).long()

    data = {}
    for name in TASKS:
        x_train = inputs(name, N_TRAIN)
        y_train = labels(name, x_train)
        if name == "noisy":
            flip = torch.rand(N_TRAIN, generator=g) < NOISE
            y_train = torch.where(flip, 1 - y_train, y_train)
        x_test = inputs(name, 2000)
        data[name] = {"x": x_train, "y": y_train, "x_test": x_test, "y_test": labels(name, x_test)}
    return data


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(DIM, WIDTH), nn.Tanh())
        self.heads = nn.ModuleDict({name: nn.Linear(WIDTH, 2) for name in TASKS})

    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.heads[name](self.trunk(x))


def run(method: str, seed: int) -> dict[str, object]:
    data = make_data(seed)
    torch.manual_seed(seed)
    model = Model()
    name, options = METHODS[method]
    balancer = build_balancer(name, options, TASKS)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    context = BalanceContext(learning_rate=LR, shared_parameters=list(model.trunk.parameters()))
    g = torch.Generator().manual_seed(seed + 1)
    weight_sums = dict.fromkeys(TASKS, 0.0)
    for step in range(STEPS):
        losses = {}
        for task in TASKS:
            idx = torch.randint(len(data[task]["y"]), (BATCH,), generator=g)
            logits = model(task, data[task]["x"][idx])
            losses[task] = F.cross_entropy(logits, data[task]["y"][idx])
        context.step = step
        loss = balancer.combine(losses, context)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        weights = balancer.weights() or {t: 1 / len(TASKS) for t in TASKS}
        for task in TASKS:
            weight_sums[task] += weights[task] / STEPS
    with torch.no_grad():
        accuracy = {
            task: 100.0 * float((model(task, d["x_test"]).argmax(-1) == d["y_test"]).float().mean())
            for task, d in data.items()
        }
    return {
        "accuracy": accuracy,
        "mean": statistics.fmean(accuracy.values()),
        "worst": min(accuracy.values()),
        "worst_task": min(accuracy, key=accuracy.__getitem__),
        "mean_weight": weight_sums,
        "tasks_trained": sum(w >= FLOOR for w in weight_sums.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (held-out: 5)"
    )
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--lookahead-options", type=json.loads, default={}, help="JSON, over the defaults"
    )
    args = parser.parse_args()
    METHODS["lookahead_dro"] = ("lookahead_dro", args.lookahead_options)
    torch.set_num_threads(1)
    started = time.perf_counter()
    result: dict[str, object] = {
        "setting": {
            "tasks": TASKS,
            "steps": STEPS,
            "batch_per_task": BATCH,
            "lr": LR,
            "trunk_width": WIDTH,
            "train_examples": N_TRAIN,
            "label_noise": NOISE,
            "hard_input_scale": HARD_SCALE,
            "methods": {k: {"balancer": n, "options": o} for k, (n, o) in METHODS.items()},
            "weight_floor": FLOOR,
            "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
        },
    }
    for method in args.methods:
        runs = [run(method, seed) for seed in range(args.first_seed, args.first_seed + args.seeds)]
        summary = {
            key: round(statistics.fmean(float(r[key]) for r in runs), 2)  # type: ignore[arg-type]
            for key in ("mean", "worst", "tasks_trained")
        }
        summary["worst_sd"] = round(statistics.pstdev(float(r["worst"]) for r in runs), 2)  # type: ignore[arg-type]
        summary["per_task"] = {
            task: round(statistics.fmean(r["accuracy"][task] for r in runs), 2)  # type: ignore[index]
            for task in TASKS
        }
        summary["mean_weight"] = {
            task: round(statistics.fmean(r["mean_weight"][task] for r in runs), 3)  # type: ignore[index]
            for task in TASKS
        }
        summary["runs"] = runs
        result[method] = summary
        print(method, {k: v for k, v in summary.items() if k != "runs"}, flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["command"] = "python " + " ".join(sys.argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
