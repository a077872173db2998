"""Two runs' dev curves side by side (docs/results.md, the unfrozen CA-MTL run): each
run's best step and per-task dev scores there, and the difference of the dev means at
the steps both evaluated. Reads metrics.jsonl only, so it works on an unfinished run.

    python bench/curve_diff.py runs/converged/camtl_s12 runs/converged/camtl_unfrozen_s12
"""

from __future__ import annotations

import argparse
from pathlib import Path

from camtl.fileio import read_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", type=Path)
    parser.add_argument("other", type=Path)
    args = parser.parse_args()
    base = read_jsonl(args.base / "metrics.jsonl")
    other = read_jsonl(args.other / "metrics.jsonl")
    best_base = max(base, key=lambda r: r["mean"])
    best_other = max(other, key=lambda r: r["mean"])
    print(
        f"best: base step {best_base['step']} mean {best_base['mean']:.2f}; "
        f"other step {best_other['step']} mean {best_other['mean']:.2f}"
    )
    for task, score in best_base["tasks"].items():
        change = best_other["tasks"][task] - score
        print(f"  {task}: base {score:.2f} other {best_other['tasks'][task]:.2f} ({change:+.2f})")
    base_mean = {r["step"]: r["mean"] for r in base}
    diffs = [r["mean"] - base_mean[r["step"]] for r in other if r["step"] in base_mean]
    within = sum(abs(d) <= 1.0 for d in diffs)
    print(
        f"matched steps: {len(diffs)}, other - base from {min(diffs):+.2f} to "
        f"{max(diffs):+.2f}, within one point at {within}"
    )


if __name__ == "__main__":
    main()
