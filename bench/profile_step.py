"""Where a CA-MTL training step spends its time: torch.profiler over a few steps of the
step_time benchmark's batch, in the default precision; the top operators by self time.

    python bench/profile_step.py [--model camtl|full_finetune] [--steps 3]
"""

from __future__ import annotations

import argparse
import os

from step_time import DEFAULT, build, make_batch, optimizer_for, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="camtl", choices=["camtl", "full_finetune"])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from torch.profiler import ProfilerActivity, profile

    model = build(args.encoder, args.model)[0].train()
    batch = make_batch(model.encoder.config.vocab_size, 32, 128)
    optimizer = optimizer_for(model)
    for _ in range(2):  # warm-up
        train_step(model, optimizer, batch, DEFAULT)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            train_step(model, optimizer, batch, DEFAULT)
    print(f"precision: {DEFAULT}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
