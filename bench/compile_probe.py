"""Does torch.compile pay for itself on this machine? CA-MTL training and inference.

Times, in one process and the default precision: eager steps; the first compiled call
(compilation included); compiled steps after it; over batches of varying length as mixed
batches under dynamic padding have (``--lengths``), since each new shape can recompile.
Writes the break-even point: how many steps the compiled model needs before its compile
time is paid back (None when a compiled step is not faster).

    python bench/compile_probe.py --out results/compile_probe.json [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from step_time import DEFAULT, build, make_batch, optimizer_for, train_step


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def probe(
    encoder: str, steps: int, lengths: list[int], batch_size: int, mode: str
) -> dict[str, Any]:
    batches = [make_batch(30000, batch_size, n) for n in lengths]
    result: dict[str, Any] = {}
    for kind in ("train", "infer"):
        eager_model = build(encoder, "camtl")[0]
        compiled_model = build(encoder, "camtl")[0]
        runners = {}
        for label, m in (
            ("eager", eager_model),
            ("compiled", torch.compile(compiled_model, dynamic=True, mode=mode)),
        ):
            if kind == "train":
                m.train()
                opt = optimizer_for(m)
                runners[label] = lambda b, m=m, opt=opt: train_step(m, opt, b)
            else:
                m.eval()

                def infer(b: dict, m: Any = m) -> float:
                    with torch.inference_mode():
                        return timed(lambda: m(**b))

                runners[label] = infer
        first = {label: sum(run(b) for b in batches) for label, run in runners.items()}
        times: dict[str, list[float]] = {label: [] for label in runners}
        for i in range(steps):
            for label, run in runners.items():
                times[label].append(run(batches[i % len(batches)]))
        median = {label: statistics.median(t) for label, t in times.items()}
        saved = median["eager"] - median["compiled"]
        overhead = first["compiled"] - first["eager"]
        result[kind] = {
            "eager_step_s": median["eager"],
            "compiled_step_s": median["compiled"],
            "compiled_over_eager": median["compiled"] / median["eager"],
            "first_calls_s": first,
            "compile_overhead_s": overhead,
            "break_even_steps": round(overhead / saved) if saved > 0 else None,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lengths", default="64,48,57", help="batch lengths, cycled")
    parser.add_argument("--mode", default="default")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lengths = [int(n) for n in args.lengths.split(",")]
    result = {
        "precision": DEFAULT,
        "torch": torch.__version__,
        "lengths": lengths,
        "threads": torch.get_num_threads(),
        "mode": args.mode,
        **probe(args.encoder, args.steps, lengths, args.batch_size, args.mode),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
