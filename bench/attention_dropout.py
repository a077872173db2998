"""What attention-probability dropout costs a training step today: the step with
``model.attention_dropout`` at the pretrained 0.1 over the same step at 0, everything else
as `camtl train` runs it (bench/step_time.py's NEW setup: eager attention on CPU, hidden
dropout 0.1 with ``model.dropout_masks: auto``, fused AdamW, frozen weights cast once).

  camtl_attention_dropout_over_none   CA-MTL with the paper's freezing (bottom half); its
                                      layers draw the probabilities' masks as
                                      model.dropout_masks says (16 random bits on CPU)
  plain_attention_dropout_over_none   a plain encoder fully fine-tuned (the single-task
                                      baseline's model); Hugging Face's attention function
                                      draws them with torch's F.dropout

The four steps are interleaved and summarised by their medians (step_time.interleaved's
rule), on step_time's batch (MiniLM, 32 x 128 tokens, 7 tasks mixed) and at a shorter one
(32 x 64, the length of most offline tasks): the mask is [batch, heads, L, L], so its share
grows with L.

    python bench/attention_dropout.py --out bench/results/attention_dropout.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from step_time import DEFAULT, NEW, make_batch, prepare, time_steps

WITH_DROPOUT = replace(NEW, model={**NEW.model, "attention_dropout": 0.1})
MODELS = {"camtl": "camtl", "plain": "full_finetune"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 64])
    args = parser.parse_args()

    torch.manual_seed(0)
    vocab = prepare(args.encoder, "camtl")[0].encoder.config.vocab_size
    result: dict[str, object] = {}
    medians: dict[str, dict[str, float]] = {}
    for length in args.lengths:
        batch = make_batch(vocab, args.batch_size, length)
        runs = {
            f"{kind}_{label}": (name, DEFAULT, setup)
            for kind, name in MODELS.items()
            for label, setup in (("none", NEW), ("dropout", WITH_DROPOUT))
        }
        step = time_steps(args.encoder, args.steps, batch, runs)
        medians[f"length_{length}"] = step
        for kind in MODELS:
            key = f"{kind}_attention_dropout_over_none"
            suffix = "" if length == args.lengths[0] else f"_length_{length}"
            result[key + suffix] = step[f"{kind}_dropout"] / step[f"{kind}_none"]
    result.update(
        {
            "step_seconds_median": medians,
            "setup": {
                "precision": DEFAULT,
                "encoder": args.encoder,
                "batch_size": args.batch_size,
                "lengths": args.lengths,
                "steps": args.steps,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "none": asdict(NEW),
                "dropout": asdict(WITH_DROPOUT),
            },
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps({k: round(v, 3) for k, v in result.items() if isinstance(v, float)}, indent=2))


if __name__ == "__main__":
    main()
