"""MT-Uncertainty's two modes side by side: which tasks each one trains on, step by step,
with one trained model held fixed (its uncertainties are what both modes rank).

    python experiments/mtu_shares.py RUN_DIR --steps 300 \\
        --out experiments/results/mtu_shares.json --plot-dir experiments/results/mtu_shares

For each mode (``exact``: the default 1.5 b candidates a step; ``amortized``: the evicting
cache; ``paper``: Algorithm 2's b candidates of every task, with ``--paper``) the sampler
picks ``--steps`` batches of 32 from the run's training data, scored by the run's model (no
training in between, so the uncertainties stay where the run left them). Writes each mode's
task shares per window of 20 steps and over the second half of the steps, the total
variation distance between the modes' second-half shares, each task's longest stretch
without an example, and one task_shares PNG per mode. What it does not show: how shares
move as training lowers a task's uncertainty (that needs a training run per mode).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODES = {
    "exact": {},
    "amortized": {"mode": "amortized"},
    "paper": {"candidate_factor": None},
}
WINDOW = 20


def load_run(run_dir: Path) -> tuple[Any, list[Any], Any]:
    from camtl.config import load_saved_config
    from camtl.data.prepare import prepare_tasks
    from camtl.modeling.encoder import load_encoder_and_tokenizer
    from camtl.modeling.model import MultiTaskModel

    config = load_saved_config(run_dir)
    _, tokenizer = load_encoder_and_tokenizer(config.model.encoder)
    tasks = prepare_tasks(config.tasks, tokenizer, ("train",))
    return MultiTaskModel.from_pretrained(run_dir, "cpu"), tasks, tokenizer


def simulate(
    mode: str, model: Any, tasks: list[Any], pad: int, steps: int, precision: str
) -> dict[str, Any]:
    from camtl.sampling import BatchScheduler, build_sampler
    from camtl.training.uncertainty import make_scorer

    sizes = [len(t.features["train"]) for t in tasks]
    sampler = build_sampler("mt_uncertainty", MODES[mode], sizes, steps)
    scorer = make_scorer(
        model, tasks, pad, "cpu", 128, 4, 12, lambda: sampler.scored, precision=precision
    )
    batch_scheduler = BatchScheduler(sampler, sizes, 32, "mixed", 12, scorer)
    counts = np.zeros((steps, len(tasks)))
    for step in range(steps):
        for task, _ in batch_scheduler.next_batch(step):
            counts[step, task] += 1
    names = [t.spec.name for t in tasks]
    windows = [
        {"step": end, "shares": dict(zip(names, counts[end - WINDOW : end].sum(0).tolist()))}
        for end in range(WINDOW, steps + 1, WINDOW)
    ]
    late = counts[steps // 2 :].sum(0)
    return {
        "second_half_shares": dict(zip(names, (late / late.sum()).round(4).tolist())),
        "windows": windows,
        "longest_unsampled_steps": dict(zip(names, batch_scheduler.longest_unsampled(steps))),
        "candidates_scored": sampler.scored,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot-dir", type=Path)
    parser.add_argument("--paper", action="store_true", help="also Algorithm 2 as written")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from camtl.evaluation.plots import plot_task_shares
    from camtl.precision import resolve_precision

    torch.manual_seed(0)
    model, tasks, tokenizer = load_run(args.run_dir)
    precision = resolve_precision(args.precision)
    modes = ["exact", "amortized", *(["paper"] if args.paper else [])]
    result: dict[str, Any] = {"modes": {}}
    for mode in modes:
        out = simulate(mode, model, tasks, tokenizer.pad_token_id, args.steps, precision)
        result["modes"][mode] = out
        print(mode, out["second_half_shares"], flush=True)
        if args.plot_dir:
            plot_task_shares(out["windows"], args.plot_dir / f"task_shares_{mode}.png")
    shares = {
        m: np.array(list(r["second_half_shares"].values())) for m, r in result["modes"].items()
    }
    result["total_variation"] = {
        f"{a}_vs_{b}": round(0.5 * float(np.abs(shares[a] - shares[b]).sum()), 4)
        for i, a in enumerate(modes)
        for b in modes[i + 1 :]
    }
    result["uniform_share"] = round(1 / len(tasks), 4)
    result["setup"] = {
        "run": args.run_dir.name,
        "steps": args.steps,
        "window": WINDOW,
        "precision": precision,
        "modes": {m: MODES[m] for m in modes},
    }
    result["command"] = "python " + " ".join(sys.argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("total variation:", result["total_variation"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
