"""Where a CA-MTL training step spends its time: torch.profiler over a few steps of the
step_time benchmark's batch, in the default precision; the top operators by self time.

``--setup`` picks the speed options (bench/step_time.py): ``default`` (what `camtl train`
does), ``new`` and ``before`` (the two sides of camtl_step_over_before), so that one
profile of each gives a before/after table of the top operators.

    python bench/profile_step.py [--model camtl|full_finetune] [--setup default|new|before]
        [--steps 3]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict

from step_time import DEFAULT, SETUPS, make_batch, prepare, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="camtl", choices=["camtl", "camtl_unfrozen", "full_finetune"]
    )
    parser.add_argument("--setup", default="default", choices=list(SETUPS))
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from torch.profiler import ProfilerActivity, profile

    model, optimizer = prepare(args.encoder, args.model, SETUPS[args.setup], DEFAULT)
    batch = make_batch(model.encoder.config.vocab_size, args.batch_size, args.length)
    for _ in range(2):  # warm-up
        train_step(model, optimizer, batch, DEFAULT)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            train_step(model, optimizer, batch, DEFAULT)
    print(f"precision: {DEFAULT}; setup {args.setup}: {asdict(SETUPS[args.setup])}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
