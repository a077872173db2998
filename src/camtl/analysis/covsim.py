"""Covariance similarity between tasks (eq. 3.7 of the CA-MTL paper, after Wu et al. 2020).

For each task, X_i holds one row per example: the input of the first Transformer layer
(after conditional alignment on CA-MTL), averaged over the example's non-padding tokens.
The covariance X_i^T X_i is reduced to its best rank-r_i approximation U D U^T, r_i the
fewest eigenvalues holding ``energy`` (99%) of their sum, and with A_i = U D^(1/2):

  CovSim_ij = ||A_i^T A_j||_F / (||A_i||_F ||A_j||_F),   CovSim_i = mean_{j != i} CovSim_ij
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camtl.data.collate import collate_features
from camtl.data.prepare import TaskData, prepare_tasks
from camtl.errors import CamtlError
from camtl.evaluation.plots import plot_heatmap
from camtl.evaluation.runs import load_run
from camtl.fileio import atomic_write_text
from camtl.modeling.model import MultiTaskModel
from camtl.runfiles import COVSIM_FILE


def covariance_factor(x: np.ndarray, energy: float = 0.99) -> np.ndarray:
    """A = U_r D_r^(1/2) of the best rank-r approximation of x^T x (r: ``energy`` of the
    eigenvalue sum; the eigenvalues of x^T x are the covariance's singular values)."""
    eigvals, eigvecs = np.linalg.eigh(x.T @ x)
    order = np.argsort(eigvals)[::-1]
    eigvals, eigvecs = np.clip(eigvals[order], 0.0, None), eigvecs[:, order]
    total = eigvals.sum()
    if total <= 0:
        raise ValueError("covariance of all-zero inputs")
    rank = int(np.searchsorted(np.cumsum(eigvals) / total, energy - 1e-12) + 1)
    return eigvecs[:, :rank] * np.sqrt(eigvals[:rank])


def covsim_matrix(factors: list[np.ndarray]) -> np.ndarray:
    """CovSim_ij for every pair. The diagonal is the same formula (below 1 unless the
    covariance has rank 1); eq. 3.7 leaves it out of CovSim_i."""
    norms = [np.linalg.norm(a) for a in factors]
    n = len(factors)
    matrix = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            matrix[i, j] = np.linalg.norm(factors[i].T @ factors[j]) / (norms[i] * norms[j])
    return matrix


def task_covsim(matrix: np.ndarray) -> np.ndarray:
    """CovSim_i: the mean similarity of task i to every other task."""
    n = matrix.shape[0]
    return (matrix.sum(1) - np.diag(matrix)) / max(1, n - 1)


@torch.inference_mode()
def first_layer_inputs(
    model: MultiTaskModel,
    task: TaskData,
    split: str,
    max_examples: int,
    pad_token_id: int,
    batch_size: int = 64,
) -> np.ndarray:
    """[examples, d]: the first layer's input, mean over each example's real tokens."""
    captured: list[torch.Tensor] = []

    def grab(_module: Any, args: tuple, kwargs: dict) -> None:
        captured.append(args[0] if args else kwargs["hidden_states"])

    handle = model.encoder.first_layer().register_forward_pre_hook(grab, with_kwargs=True)
    rows = []
    try:
        model.eval()
        features = task.features[split][:max_examples]
        for start in range(0, len(features), batch_size):
            batch = collate_features(features[start : start + batch_size], pad_token_id)
            captured.clear()
            model.encode(
                batch["input_ids"],
                batch["attention_mask"],
                batch["token_type_ids"],
                batch["task_ids"],
            )
            mask = batch["attention_mask"].unsqueeze(-1).to(captured[0].dtype)
            rows.append(((captured[0] * mask).sum(1) / mask.sum(1)).float().numpy())
    finally:
        handle.remove()
    return np.concatenate(rows)


def analyze_covsim(
    run_dir: Path, split: str = "dev", max_examples: int = 500, energy: float = 0.99
) -> dict[str, Any]:
    """Write covsim.json, covsim.md and covsim.png into ``run_dir``; return the result."""
    from camtl.training.rundir import check_finished_for_reports

    check_finished_for_reports(run_dir, "analyse it once it finishes")
    _, model, tokenizer = load_run(run_dir)
    tasks = prepare_tasks(
        model.tasks, tokenizer, ("train", split), labels=model.labels, encode=(split,)
    )
    tasks = [t for t in tasks if t.features.get(split)]
    if len(tasks) < 2:
        raise CamtlError(f"{run_dir}: covariance similarity needs two tasks with a {split!r} split")
    factors = [
        covariance_factor(
            first_layer_inputs(model, t, split, max_examples, tokenizer.pad_token_id), energy
        )
        for t in tasks
    ]
    matrix = covsim_matrix(factors)
    names = [t.spec.name for t in tasks]
    per_task = task_covsim(matrix)
    result = {
        "split": split,
        "max_examples": max_examples,
        "energy": energy,
        "tasks": names,
        "ranks": [int(a.shape[1]) for a in factors],
        "matrix": matrix.round(4).tolist(),
        "covsim": {n: round(float(v), 4) for n, v in zip(names, per_task)},
        "mean_covsim": round(float(per_task.mean()), 4),
    }
    atomic_write_text(run_dir / COVSIM_FILE, json.dumps(result, indent=2))
    lines = ["| task | CovSim_i | rank |", "|---|---:|---:|"]
    lines += [f"| {n} | {result['covsim'][n]:.4f} | {r} |" for n, r in zip(names, result["ranks"])]
    lines.append(f"| mean | {result['mean_covsim']:.4f} | |")
    atomic_write_text(run_dir / "covsim.md", "\n".join(lines) + "\n")
    plot_heatmap(
        matrix.tolist(),
        names,
        f"covariance similarity ({run_dir.name}, {split})",
        run_dir / "covsim.png",
    )
    print("\n".join(lines))
    return result
