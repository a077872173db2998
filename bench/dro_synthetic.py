"""A controlled synthetic setting for worst-case-aware balancing (Lookahead-DRO's abstract
names one; its body is not available, so this is our construction).

    python bench/dro_synthetic.py --out bench/results/dro_synthetic.json [--seeds 5]

Five binary tasks on 16-dimensional Gaussian inputs share one small trunk (16 -> 6 tanh
units) with a linear head each:
  shared_a, shared_b, shared_c  large tasks with nearly the same labelling direction
  noisy                         the shared direction too, but 40% of its training labels
                                flipped: a high loss no weight can remove; scored on
                                clean labels
  small_hard                    64 training examples, a direction orthogonal to the
                                shared one (needs trunk units of its own)
Each step trains on a batch of 32 from every task; the balancer combines the five losses
and plain SGD steps the whole model. Scores are clean-label test accuracies (2,000 per
task). Per method and seed: the mean and worst accuracy, and ``tasks_trained``, the tasks
whose average weight over the run stayed at least a quarter of the uniform weight (1/20).
Methods: equal, group_dro (raw losses, as Sagawa et al.), lookahead_dro (our
reconstruction, its defaults), famo.
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

TASKS = ["shared_a", "shared_b", "shared_c", "noisy", "small_hard"]
METHODS = {
    "equal": ("equal", {}),
    "group_dro": ("group_dro", {"step_size": 0.01}),
    "lookahead_dro": ("lookahead_dro", {}),
    "famo": ("famo", {}),
}
DIM, WIDTH, STEPS, BATCH, LR = 16, 6, 600, 32, 0.1
SMALL = 64  # training examples of small_hard
FLOOR = 0.25 / len(TASKS)


def make_data(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(DIM, generator=g)
    directions = {
        name: base + 0.3 * torch.randn(DIM, generator=g)
        for name in ("shared_a", "shared_b", "shared_c")
    }
    directions["noisy"] = base + 0.3 * torch.randn(DIM, generator=g)  # shares the structure
    # the small task's direction: orthogonal to the shared one, so the trunk must give it
    # units of its own
    own = torch.randn(DIM, generator=g)
    own = own - (own @ base) / (base @ base) * base
    directions["small_hard"] = own

    def labels(name: str, x: torch.Tensor) -> torch.Tensor:
        return (x @ directions[name] > 0).long()

    data = {}
    for name in TASKS:
        n_train = SMALL if name == "small_hard" else 4000
        x_train = torch.randn(n_train, DIM, generator=g)
        y_train = labels(name, x_train)
        if name == "noisy":
            flip = torch.rand(n_train, generator=g) < 0.4
            y_train = torch.where(flip, 1 - y_train, y_train)
        x_test = torch.randn(2000, DIM, generator=g)
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
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    result: dict[str, object] = {
        "setting": {
            "tasks": TASKS,
            "steps": STEPS,
            "batch_per_task": BATCH,
            "lr": LR,
            "trunk_width": WIDTH,
            "weight_floor": FLOOR,
            "seeds": args.seeds,
        },
    }
    for method in METHODS:
        runs = [run(method, seed) for seed in range(args.seeds)]
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
