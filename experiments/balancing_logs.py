"""What the samplers and balancers did, read from runs' train_log.jsonl
(docs/research/2026-sampling-balancing.md,
"Sampling and balancing at 1,200 steps"): each task's share of the examples drawn, the
mean task weights and how often one task held more than half of the weight, and FAMO's
share of the gradient per task (z_t / l_t over the sum, from the logged weights and
losses; median over the logged steps from step 200 on).

    python experiments/balancing_logs.py runs/balancing/*_s*/
    python experiments/balancing_logs.py --famo runs/balancing/uniform_famo_s*/
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

from camtl.fileio import read_jsonl


def summary(run_dir: Path, famo: bool) -> dict:
    rows = list(read_jsonl(run_dir / "train_log.jsonl"))
    drawn = rows[-1]["examples_drawn"]
    total = sum(drawn.values())
    names = list(rows[0]["task_weights"])
    majority = [max(r["task_weights"], key=r["task_weights"].get) for r in rows]
    held = [t for r, t in zip(rows, majority) if r["task_weights"][t] > 0.5]
    out = {
        "drawn_share": {t: round(n / total, 3) for t, n in drawn.items()},
        "mean_weight": {
            t: round(statistics.mean(r["task_weights"][t] for r in rows), 3) for t in names
        },
        "weight_range": [
            round(min(min(r["task_weights"].values()) for r in rows), 3),
            round(max(max(r["task_weights"].values()) for r in rows), 3),
        ],
        "steps_logged": len(rows),
        "steps_one_task_over_half": dict(Counter(held)),
    }
    if not famo:
        return out
    shares: dict[str, list[float]] = {}
    for r in rows:
        if r["step"] < 200:
            continue
        scale = {
            t: r["task_weights"][t] / (r[f"loss/{t}"] + 1e-8) for t in names if f"loss/{t}" in r
        }
        for t, v in scale.items():
            shares.setdefault(t, []).append(v / sum(scale.values()))
    out["famo_gradient_share_median"] = {
        t: round(statistics.median(v), 3) for t, v in shares.items()
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--famo", action="store_true", help="also FAMO's gradient shares")
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        print(run_dir.name)
        for key, value in summary(run_dir, args.famo).items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
