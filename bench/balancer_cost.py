"""Cost of each loss balancer: an optimizer step against equal weights, in one run.

MiniLM with CA-MTL (bottom half frozen), batch 32 of the seven offline tasks mixed (uniform
sampling), one model per balancer, steps interleaved and summarised by the median. Writes
``<balancer>_over_equal`` for fixed, uncertainty, group_dro and lookahead_dro (task gradients
on the top layer, every step: the most expensive setting).

    python bench/balancer_cost.py --out results/balancer_cost.json [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from sampler_cost import Runner as SamplerRunner  # bench/ is on sys.path (script folder)
from sampler_cost import load_tasks

BALANCERS = {
    "equal": {},
    "fixed": {"weights": {"snli": 2.0}},
    "uncertainty": {},
    "group_dro": {},
    "lookahead_dro": {"every": 1, "parameters": "top_layer"},
}


class Runner:
    def __init__(self, name: str, tasks: list[Any], tokenizer: Any, batch: int) -> None:
        from camtl.balancing import BalanceContext, build_balancer
        from camtl.model_config import ModelConfig
        from camtl.modeling import MultiTaskModel
        from camtl.modeling.conditional_encoder import CamtlOptions
        from camtl.sampling import BatchScheduler, build_sampler

        torch.manual_seed(0)
        config = ModelConfig(  # the paper's freezing, as the recorded runs were timed
            encoder="minilm",
            architecture="camtl",
            freeze_embeddings=True,
            freeze_layers=3,
            options={"camtl": CamtlOptions(max_length=64)},
        )
        self.model, _ = MultiTaskModel.from_encoder(
            config, [t.spec for t in tasks], {t.spec.name: t.labels for t in tasks}
        )
        self.model.train()
        self.balancer = build_balancer(name, BALANCERS[name], [t.spec.name for t in tasks])
        params = [p for p in self.model.parameters() if p.requires_grad]
        params += list(self.balancer.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=1e-5)
        self.context = BalanceContext(
            learning_rate=1e-5, shared_parameters=self.model.shared_parameters("top_layer")
        )
        sizes = [len(t.features["train"]) for t in tasks]
        # every runner draws the same batches: same sampler, same seed
        self.batch_scheduler = BatchScheduler(
            build_sampler("uniform", {}, sizes, 1000), sizes, batch, "mixed", 12
        )
        self.tasks = tasks
        self.pad = tokenizer.pad_token_id
        self.step_index = 0

    step = SamplerRunner.step  # the same timed step; only the loss differs

    def loss(self, out: Any) -> torch.Tensor:
        self.context.step = self.step_index
        return self.balancer.combine(out.task_losses, self.context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tasks, tokenizer = load_tasks(2000, 64)
    runners = {name: Runner(name, tasks, tokenizer, args.batch_size) for name in BALANCERS}
    for runner in runners.values():
        runner.step()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.steps):
        for name, runner in runners.items():
            times[name].append(runner.step())
    median = {name: statistics.median(t) for name, t in times.items()}
    result: dict[str, Any] = {
        f"{name}_over_equal": median[name] / median["equal"]
        for name in BALANCERS
        if name != "equal"
    }
    result["step_seconds_median"] = median
    result["setup"] = {
        "batch_size": args.batch_size,
        "steps": args.steps,
        "lookahead": BALANCERS["lookahead_dro"],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "setup"}, indent=2))


if __name__ == "__main__":
    main()
