"""How much a distilled run's teachers say beyond the gold labels: for each task, the
teachers' outputs on the student's training windows (read from the teacher cache, or
computed as `camtl train` would) against the gold labels of those windows.

Per task kind: classification and token tagging (labelled tokens only): the share of
windows (tokens) where the teacher's top class is the gold one, the teacher's mean top
probability and the mean probability it gives the gold class, at temperatures 1, 2 and 4
and the run's own (``--temperatures``); span QA: the share of windows whose top start and
end are the gold ones, and their mean top probability; regression: the teacher's Pearson r
with the gold scores. A teacher that reproduces its training labels at probability ~1 adds
little to them.

    python experiments/teacher_targets.py runs/converged_2026/camtl_distill_s12/config.yaml \\
        --out experiments/results/teacher_targets.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from camtl.config import load_config
from camtl.data.prepare import prepare_tasks
from camtl.distillation.distiller import build_distiller
from camtl.modeling.encoder import load_encoder_and_tokenizer


def _class_stats(
    logits: torch.Tensor, gold: torch.Tensor, temperatures: tuple[float, ...]
) -> dict[str, float]:
    """Rows of ``logits`` (n x C) against ``gold`` (n,), the probabilities at each
    temperature (keys ``..._t2`` for T = 2)."""
    out: dict[str, float] = {"count": int(gold.numel())}
    out["top_is_gold"] = float((logits.argmax(-1) == gold).float().mean())
    for t in temperatures:
        probs = (logits / t).softmax(-1)
        out[f"mean_top_prob_t{t:g}"] = float(probs.max(-1).values.mean())
        out[f"mean_gold_prob_t{t:g}"] = float(probs.gather(-1, gold[:, None]).mean())
    return out


def task_stats(
    kind: str,
    outputs: list[torch.Tensor],
    features: list[dict[str, Any]],
    temperatures: tuple[float, ...] = (1.0,),
) -> dict[str, Any]:
    if kind == "classification":
        gold = torch.tensor([f["cls_labels"] for f in features])
        keep = gold >= 0
        return _class_stats(torch.stack(outputs)[keep], gold[keep], temperatures)
    if kind == "token_tagging":
        logits = torch.cat(outputs)
        gold = torch.cat(
            [torch.tensor(f["tag_labels"][: len(o)]) for f, o in zip(features, outputs)]
        )
        keep = gold >= 0
        return _class_stats(logits[keep], gold[keep], temperatures)
    if kind == "span_qa":
        hits, tops = [], []
        for f, o in zip(features, outputs):
            probs = o.float().softmax(0)  # over the window's tokens, start and end columns
            tops.append(float(probs.max(0).values.mean()))
            hits.append(
                int(probs[:, 0].argmax()) == f["start_positions"]
                and int(probs[:, 1].argmax()) == f["end_positions"]
            )
        return {
            "count": len(features),
            "top_is_gold": statistics.fmean(hits),
            "mean_top_prob_t1": statistics.fmean(tops),
        }
    if kind == "regression":
        pred = torch.stack(outputs).float().flatten()
        gold = torch.tensor([f["reg_labels"] for f in features], dtype=torch.float)
        pearson = torch.corrcoef(torch.stack([pred, gold]))[0, 1]
        return {"count": len(features), "pearson_with_gold": float(pearson)}
    return {"count": len(features), "note": f"kind {kind!r} not summarised"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a distilled run's config (its config.yaml)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[1.0, 2.0, 4.0],
        help="the temperatures to report probabilities at (the run's own is added)",
    )
    args = parser.parse_args()
    config = load_config(args.config)
    distillation = config.training.distillation
    if distillation is None:
        print(f"{args.config}: no training.distillation", file=sys.stderr)
        return 2
    torch.set_num_threads(config.training.num_threads or torch.get_num_threads())
    _, tokenizer = load_encoder_and_tokenizer(config.model.encoder)
    tasks = prepare_tasks(config.tasks, tokenizer, ("train",))
    distiller = build_distiller(
        distillation, tasks, tokenizer, "auto", 128, config.training.max_steps, torch.device("cpu")
    )
    temperatures = tuple(sorted({*args.temperatures, distillation.temperature}))
    result: dict[str, Any] = {"config": str(args.config), "temperature": distillation.temperature}
    result["tasks"] = {
        tasks[i].spec.name: {
            "kind": tasks[i].spec.type,
            **task_stats(tasks[i].spec.type, outputs, tasks[i].features["train"], temperatures),
        }
        for i, outputs in distiller.outputs.items()
    }
    result["command"] = "python " + " ".join(sys.argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, stats in result["tasks"].items():
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
