"""Share of each task per logging window, several runs overlaid (one panel per task): does
any task starve? The paper saw QA tasks go unsampled for long stretches under MT-Uncertainty
and scored regression through a proxy task.

    python experiments/starvation_plot.py runs/sampling/1_uniform_equal runs/sampling/4_mtu_equal \
        runs/sampling/8_mtu_regression_proxy --out experiments/results/task_shares.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def window_shares(run: Path) -> tuple[list[int], dict[str, list[float]]]:
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    steps, shares, previous = [], {}, {}
    for record in log:
        drawn = record["examples_drawn"]
        new = {t: c - previous.get(t, 0) for t, c in drawn.items()}
        total = sum(new.values()) or 1
        steps.append(record["step"])
        for task, count in new.items():
            shares.setdefault(task, []).append(count / total)
        previous = drawn
    return steps, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = {run.name: window_shares(run) for run in args.runs}
    tasks = list(next(iter(data.values()))[1])
    cols = 4
    rows = math.ceil(len(tasks) / cols)
    fig = Figure(figsize=(4 * cols, 3 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(rows, cols, k + 1)
        for name, (steps, shares) in data.items():
            ax.plot(steps, shares[task], label=name, linewidth=1)
        ax.axhline(1 / len(tasks), color="grey", linestyle=":", linewidth=1)
        ax.set_title(task)
        ax.set_ylim(0, 1)
        ax.set_xlabel("step")
    fig.axes[0].set_ylabel("share of the window's examples")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
