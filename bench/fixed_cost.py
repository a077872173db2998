"""The fixed cost of a training command: the whole command's wall time minus its training
steps, i.e. imports, loading and tokenising data, building the model, evaluations,
checkpoints and the final reports.

Runs ``camtl train CONFIG`` for a few steps in a child process, ``--runs`` times, and
reads the training-step seconds from the run's metrics.jsonl (``train_s``: evaluations and
checkpoints excluded). ``--src`` runs another checkout's code (for before/after tables);
``--cold`` empties the tokenized-feature cache before each run.

    python bench/fixed_cost.py --out results/fixed_cost.json [--config configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(config: str, steps: int, src: Path | None, cold: bool, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        if cold:
            env = {**env, "CAMTL_FEATURE_CACHE_DIR": str(Path(tmp) / "features")}
        command = [
            sys.executable,
            "-m",
            "camtl.cli",
            "train",
            config,
            "--output-dir",
            str(out),
            "--set",
            f"training.max_steps={steps}",
            "--set",
            f"training.eval_every={steps}",
        ]
        start = time.perf_counter()
        subprocess.run(
            command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        whole = time.perf_counter() - start
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        report = json.loads((out / "report.json").read_text())
    train = metrics[-1]["train_s"]
    return {
        "whole_s": round(whole, 2),
        "train_steps_s": train,
        "fixed_s": round(whole - train, 2),
        "precision": report["run_info"].get("precision", "no"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--src", type=Path, help="a checkout whose src/ to run")
    parser.add_argument("--cold", action="store_true", help="no feature cache hits")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.src:
        env["PYTHONPATH"] = str((args.src / "src").resolve())
    runs = [one_run(args.config, args.steps, args.src, args.cold, env) for _ in range(args.runs)]
    result = {
        "config": args.config,
        "steps": args.steps,
        "src": str(args.src or "."),
        "cold_feature_cache": args.cold,
        "runs": runs,
        **{
            f"median_{k}": statistics.median(r[k] for r in runs)
            for k in ("whole_s", "train_steps_s", "fixed_s")
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
