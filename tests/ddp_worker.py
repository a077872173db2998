"""One rank of the distributed test (tests/test_distributed.py), launched by torchrun.

    torchrun --nproc_per_node 2 tests/ddp_worker.py CONFIG.yaml OUT_DIR

Trains ``CONFIG`` with the real Trainer and writes ``OUT_DIR/rank{N}.json``: the global
batches this rank drew, the shard of each that it took and whether the shard is what it
actually trained on, the learning rate after each step, hashes of its parameters before
and after training, and every Python-level write it made inside the run directory.
Observation only: the training code paths are the library's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

import camtl.training.step as step_module
import camtl.training.trainer as trainer_module
import camtl.training.uncertainty as uncertainty_module
from camtl.config import load_config
from camtl.sampling import BatchScheduler

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def watch_writes(run_dir: Path, writes: list[list[str]]) -> None:
    """Record file creations, writes, renames and deletions under ``run_dir`` (audit hook)."""
    root = os.path.realpath(run_dir)

    def inside(path: Any) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        try:
            full = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        return os.path.relpath(full, root) if full.startswith(root) else None

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (
                any(c in mode for c in "wax+")
                if isinstance(mode, str)
                else bool((flags or 0) & WRITE_FLAGS)
            )
            paths = [path] if writing else []
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            paths = [args[0]]
        elif event == "os.rename":  # os.rename and os.replace
            paths = [args[0], args[1]]
        else:
            return
        for path in paths:
            rel = inside(path)
            if rel is not None:
                writes.append([event, rel])

    sys.addaudithook(hook)


def main() -> None:
    config_path, out_dir = sys.argv[1], Path(sys.argv[2])
    config = load_config(config_path)
    record: dict[str, Any] = {
        "global_batches": [],
        "shards": [],
        "fed": [],
        "lrs": [],
        "writes": [],
        "scored_here": 0,  # MT-Uncertainty candidates this rank encoded itself
    }

    next_batch, shard = BatchScheduler.next_batch, BatchScheduler.shard

    def recording_next_batch(self: BatchScheduler, step: int) -> list[tuple[int, int]]:
        batch = next_batch(self, step)
        record["global_batches"].append([list(p) for p in batch])
        return batch

    def recording_shard(
        batch: list[tuple[int, int]], rank: int, world_size: int
    ) -> list[tuple[int, int]]:
        mine = shard(batch, rank, world_size)
        record["shards"].append([list(p) for p in mine])
        return mine

    collate = step_module.collate_features

    def recording_collate(features: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
        record["fed"].append([list(map(int, f["input_ids"])) for f in features])
        return collate(features, pad_token_id)

    scoring_collate = uncertainty_module.collate_features

    def counting_collate(features: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
        record["scored_here"] += len(features)
        return scoring_collate(features, pad_token_id)

    uncertainty_module.collate_features = counting_collate
    BatchScheduler.next_batch = recording_next_batch
    BatchScheduler.shard = staticmethod(recording_shard)
    step_module.collate_features = recording_collate

    train_step = trainer_module.train_step

    def recording_train_step(
        parts: step_module.StepParts, accelerator: Any, step: int
    ) -> dict[str, float]:
        logs = train_step(parts, accelerator, step)
        record["lrs"].append(parts.lr_scheduler.get_last_lr()[0])
        return logs

    trainer_module.train_step = recording_train_step

    watch_writes(Path(config.output_dir), record["writes"])
    trainer = trainer_module.Trainer(config, command="ddp_worker")
    initial = weights_hash(trainer.model)
    trainer.fit()
    model = trainer.accelerator.unwrap_model(trainer.ddp_model)
    # What each rank trained on must be the features of the shard it took.
    expected_fed = [
        [list(map(int, trainer.tasks[t].features["train"][i]["input_ids"])) for t, i in mine]
        for mine in record["shards"]
    ]
    record.update(
        rank=trainer.accelerator.process_index,
        world=trainer.accelerator.num_processes,
        distributed_type=str(trainer.accelerator.distributed_type),
        device=str(trainer.accelerator.device),
        initial_hash=initial,
        final_hash=weights_hash(model),
        balancer_hash=weights_hash(trainer.balancer),
        balancer_weights=trainer.balancer.weights(),
        candidates_scored=trainer.sampler.candidates_scored(),
        fed_is_shard=record.pop("fed") == expected_fed,
        steps=trainer.progress.step,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"rank{record['rank']}.json").write_text(json.dumps(record), encoding="utf-8")


if __name__ == "__main__":
    main()
