"""Two CPU processes under torchrun (gloo): one schedule, disjoint shards, equal weights.

The worker (tests/ddp_worker.py) runs the real Trainer and reports, per rank, the global
batches it drew, the shard it took of each (and that the shard is what it trained on), the
learning rate after each step, hashes of its weights, and its writes in the run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from camtl.testing.runs import write_config, write_task_files

WORLD, MAX_STEPS, BATCH = 2, 6, 4
WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun_command() -> list[str]:
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    exe = Path(sys.executable).with_name("torchrun")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("torchrun")
    if found:
        return [found]
    pytest.skip("torchrun is not installed next to this Python nor on PATH")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(config: Path, out: Path) -> list[dict[str, Any]]:
    """Train ``config`` on WORLD gloo ranks; each rank's report."""
    command = torchrun_command()
    # Without a GPU, accelerate sets up multi-process training only when told to use the CPU
    # (it would otherwise run two independent single-process trainings).
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("CAMTL_KILL_AFTER_STEP", None)
    proc = subprocess.run(
        [
            *command,
            "--nnodes",
            "1",
            "--nproc_per_node",
            str(WORLD),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            str(WORKER),
            str(config),
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def ranks(
    tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path
) -> tuple[Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("ddp")
    write_task_files(root)
    # a checkpoint at steps 2 and 4 (every rank saves its RNG state), dev evaluations at 3, 6
    config = write_config(
        root,
        tiny_encoder_dir,
        max_steps=MAX_STEPS,
        batch_size=BATCH,
        eval_every=3,
        checkpoint_every=2,
        log_every=1,
    )
    return root / "run", run_ranks(config, root / "ranks")


def run_three_steps(tmp_path: Path, encoder_dir: Path, **training: Any) -> list[dict[str, Any]]:
    """Three steps of the small run on two ranks, with these training settings."""
    write_task_files(tmp_path)
    config = write_config(
        tmp_path, encoder_dir, max_steps=3, batch_size=BATCH, eval_every=3, log_every=1, **training
    )
    return run_ranks(config, tmp_path / "ranks")


@pytest.mark.slow
@pytest.mark.parametrize("balancer", ["famo", "pcgrad", "lookahead_dro", "score_dro"])
def test_gradient_and_loss_balancers_agree_across_ranks(
    balancer: str, tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    """FAMO's weights (from losses averaged over ranks), PCGrad's projection and
    Lookahead-DRO's weights and gradient memory (from task gradients averaged over ranks)
    and score DRO's weights (from the main process's dev scores, broadcast) come out the
    same on every rank."""
    options = {"reference_updates": 1} if balancer == "lookahead_dro" else {}
    reports = run_three_steps(
        tmp_path, tiny_encoder_dir, balancer={"name": balancer, "options": options}
    )
    assert len({r["final_hash"] for r in reports}) == 1
    assert len({r["balancer_hash"] for r in reports}) == 1
    if balancer in ("famo", "lookahead_dro", "score_dro"):
        weights = reports[0]["balancer_weights"]
        assert len(weights) == 4 and max(weights.values()) != min(weights.values())


@pytest.mark.slow
def test_sam_and_distillation_keep_the_ranks_identical(
    tmp_path: Path, tiny_encoder_dir: Path, two_task_run: Path
) -> None:
    """training.sam (its passes outside DDP, gradients averaged by hand in one order of
    tasks) and training.distillation (every rank reads the same teacher outputs) train,
    and every rank ends with the same weights."""
    teachers = {"pairs": str(two_task_run), "scores": str(two_task_run)}
    reports = run_three_steps(
        tmp_path,
        tiny_encoder_dir,
        sam={"rho": 0.05},
        distillation={"teachers": teachers, "tasks": ["pairs", "scores"]},
    )
    assert len({r["final_hash"] for r in reports}) == 1
    assert reports[0]["final_hash"] != reports[0]["initial_hash"]


@pytest.mark.slow
def test_mt_uncertainty_shards_its_scoring_across_ranks(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    """Each rank scores half of the candidates; the scores are summed over the ranks, so
    both still select the same global batches and end with the same weights."""
    reports = run_three_steps(
        tmp_path,
        tiny_encoder_dir,
        sampler={"name": "mt_uncertainty", "options": {"candidate_factor": None}},
    )
    assert reports[0]["global_batches"] == reports[1]["global_batches"]
    assert len({r["final_hash"] for r in reports}) == 1
    total = reports[0]["candidates_scored"]
    assert total == 3 * 4 * 2 * BATCH  # steps x tasks x global batch (Algorithm 2)
    assert [r["scored_here"] for r in reports] == [total // 2, total // 2]


@pytest.mark.slow
def test_two_processes_really_train_together(ranks: tuple[Path, list[dict]]) -> None:
    _, reports = ranks
    for rank, report in enumerate(reports):
        assert report["rank"] == rank
        assert report["world"] == WORLD
        assert report["distributed_type"].endswith("MULTI_CPU")
        assert report["steps"] == MAX_STEPS


@pytest.mark.slow
def test_ranks_draw_one_schedule_and_split_each_batch(ranks: tuple[Path, list[dict]]) -> None:
    _, reports = ranks
    batches = reports[0]["global_batches"]
    assert len(batches) == MAX_STEPS
    assert all(len(b) == BATCH * WORLD for b in batches)
    assert len({task for b in batches for task, _ in b}) > 1  # mixed-task batches
    for report in reports[1:]:
        assert report["global_batches"] == batches
    for step, batch in enumerate(batches):
        shards = [report["shards"][step] for report in reports]
        assert [len(s) for s in shards] == [BATCH] * WORLD
        # disjoint halves: every position of the global batch goes to exactly one rank
        merged: list[Any] = [None] * len(batch)
        for rank, shard in enumerate(shards):
            merged[rank::WORLD] = shard
        assert merged == batch
    for report in reports:  # each rank trained on the features of its own shard
        assert report["fed_is_shard"]


@pytest.mark.slow
def test_weights_identical_across_ranks(ranks: tuple[Path, list[dict]]) -> None:
    _, reports = ranks
    assert len({r["initial_hash"] for r in reports}) == 1
    assert len({r["final_hash"] for r in reports}) == 1
    assert reports[0]["final_hash"] != reports[0]["initial_hash"]


@pytest.mark.slow
def test_lr_schedule_steps_once_per_optimizer_step(ranks: tuple[Path, list[dict]]) -> None:
    """Same LR curve as one process: not advanced once per process per step."""
    from transformers import get_linear_schedule_with_warmup

    _, reports = ranks
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, MAX_STEPS)
    expected = []
    for _ in range(MAX_STEPS):
        optimizer.step()
        schedule.step()
        expected.append(schedule.get_last_lr()[0])
    for report in reports:
        assert report["lrs"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_run_finished_and_only_rank_zero_wrote_it(ranks: tuple[Path, list[dict]]) -> None:
    run, reports = ranks
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["step"] == MAX_STEPS
    assert not (run / "checkpoint").exists()
    rank0_files = {path for _, path in reports[0]["writes"]}
    # the watcher sees rank 0's writes, so an empty list for rank 1 means something
    assert {"config.yaml", "metrics.jsonl", "train_log.jsonl"} <= rank0_files
    assert any("status.json" in path for path in rank0_files)  # written atomically, via a temp
    # Rank 1's only business there: the checkpoint folder it saves its RNG state into.
    others = [
        w
        for r in reports[1:]
        for w in r["writes"]
        if not (w[1] == "checkpoint.tmp" or w[1].startswith("checkpoint.tmp/"))
    ]
    assert others == []
    # one record per evaluation / logged step, one TensorBoard event file
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics] == [3, 6]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, MAX_STEPS + 1))
    assert len(list((run / "tb").iterdir())) == 1
    report = json.loads((run / "report.json").read_text())
    assert report["run_info"]["processes"] == WORLD
    # examples drawn are counted over the global batches, not one rank's shards
    assert sum(report["run_info"]["examples_drawn"].values()) == MAX_STEPS * BATCH * WORLD
