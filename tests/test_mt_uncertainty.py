"""MT-Uncertainty sampling (Algorithm 2) and annealed sampling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from camtl.sampling import BatchScheduler, build_sampler
from camtl.sampling.mt_uncertainty import uncertainty_scores

SIZES = [50, 40, 30]


def test_annealed_goes_from_proportional_to_nearly_uniform() -> None:
    sampler = build_sampler("annealed", {"epochs": 5}, [1000, 10], total_steps=100)
    assert sampler.alpha(0) == 1.0
    assert np.allclose(sampler.probabilities(0), [1000 / 1010, 10 / 1010])
    assert sampler.alpha(99) == pytest.approx(0.2)
    late = sampler.probabilities(99)
    assert late[1] > 10 / 1010 and np.allclose(
        late, np.array([1000, 10]) ** 0.2 / (np.array([1000, 10]) ** 0.2).sum()
    )


def test_score_forms() -> None:
    normalized = np.array([0.9, 0.1, 0.5, 0.5])
    raw = normalized * np.log([2, 2, 5, 5])
    tasks = np.array([0, 0, 1, 1])
    authors = uncertainty_scores(normalized, raw, tasks, "authors")
    # task means 0.5 and 0.5 -> no reweighting between them here
    assert np.allclose(authors, normalized)
    tasks_skewed = np.array([0, 0, 1, 1])
    normalized2 = np.array([0.2, 0.2, 0.8, 0.6])
    authors2 = uncertainty_scores(normalized2, normalized2, tasks_skewed, "authors")
    assert np.allclose(authors2, normalized2 * np.array([0.2, 0.2, 0.7, 0.7]) / 0.7)
    paper = uncertainty_scores(normalized, raw, tasks, "paper")
    assert np.argsort(paper).tolist() == np.argsort(normalized).tolist()


class FakeScorer:
    """Uncertainty = a fixed value per (task, index), so selections are predictable."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        values = np.array([((t * 37 + i * 11) % 100) / 100 for t, i in candidates])
        return values, values


def scheduler(**options) -> tuple[BatchScheduler, FakeScorer]:
    sampler = build_sampler("mt_uncertainty", options, SIZES, total_steps=100)
    scorer = FakeScorer()
    return BatchScheduler(sampler, SIZES, 8, "mixed", seed=1, scorer=scorer), scorer


def test_exact_mode_keeps_the_top_b_and_returns_the_rest() -> None:
    sched, scorer = scheduler(candidate_factor=None)  # Algorithm 2 as written
    seen: list[list[tuple[int, int]]] = []
    original = sched.scorer

    def recording(candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        seen.append(list(candidates))
        return original(candidates)

    sched.scorer = recording
    batch = sched.next_batch(0)
    candidates = seen[0]
    assert len(candidates) == 3 * 8 and len(batch) == 8  # b from each task, keep b
    norm, raw = original(candidates)
    scores = uncertainty_scores(norm, raw, np.array([t for t, _ in candidates]), "authors")
    expected = sorted(candidates[k] for k in np.argsort(-scores, kind="stable")[:8])
    assert batch == expected
    returned = sorted((t, i) for t, r in enumerate(sched.returned) for i in r)
    assert returned == sorted(set(candidates) - set(batch))
    # the returned candidates are the first ones offered again at the next step
    sched.next_batch(1)
    offered = set(seen[1])
    assert set(returned) <= offered
    assert sum(sched.drawn) == 16


def test_exact_mode_spreads_its_candidate_budget_by_the_task_priors() -> None:
    sched, _ = scheduler(candidate_factor=1.5)
    offered: list[list[tuple[int, int]]] = []

    def task_two_uncertain(candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        offered.append(list(candidates))
        values = np.array([0.9 if t == 2 else 0.1 for t, _ in candidates])
        return values, values

    sched.scorer = task_two_uncertain
    sched.next_batch(0)
    assert len(offered[0]) == 12  # 1.5 x b, tasks alike before anything is scored
    assert [sum(t == k for t, _ in offered[0]) for k in range(3)] == [4, 4, 4]
    sched.next_batch(1)
    per_task = [sum(t == k for t, _ in offered[1]) for k in range(3)]
    assert per_task == [1, 1, 10]  # priors 0.1 : 0.1 : 0.9 of 12, at least one each


def constant_scorer(values: list[float]) -> Any:
    """Every candidate of task t is exactly values[t] uncertain."""

    def score(candidates: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        out = np.array([values[t] for t, _ in candidates])
        return out, out

    return score


def shares(sched: BatchScheduler, steps: int, start: int = 0) -> np.ndarray:
    counts = np.zeros(3)
    for step in range(start, start + steps):
        for task, _ in sched.next_batch(step):
            counts[task] += 1
    return counts / counts.sum()


@pytest.mark.parametrize("mode", ["exact", "amortized"])
def test_long_run_task_shares_follow_uncertainty(mode: str) -> None:
    sched, _ = scheduler(mode=mode, pool_factor=2)
    sched.scorer = constant_scorer([0.1, 0.2, 0.9])
    shares(sched, 20)  # past the first fill of the cache
    late = shares(sched, 60, start=20)
    # a cache that trains on everything it holds gives every task 1/3 in the long run
    assert late[2] > 0.6 and late[0] <= late[1] < late[2]


def test_amortized_mode_scores_a_fraction_per_step_and_evicts() -> None:
    options = {"mode": "amortized", "pool_factor": 2, "refresh_fraction": 0.5}
    big = [1000, 1000, 1000]  # no pool starts a second pass within these steps
    scorer = FakeScorer()
    sched = BatchScheduler(
        build_sampler("mt_uncertainty", options, big, 100), big, 8, seed=1, scorer=scorer
    )
    batches = [sched.next_batch(s) for s in range(6)]
    cache_size = 2 * 3 * 8
    # the whole first fill once, then b/2 a step
    assert sched.sampler.scored == cache_size + 8 + 5 * 4
    assert scorer.calls == 6
    flat = [c for b in batches for c in b]
    assert len(flat) == len(set(flat)) == 6 * 8  # trained examples leave the cache
    assert len(sched.sampler.cache) == cache_size  # the least uncertain were evicted
    assert not {(e[0], e[1]) for e in sched.sampler.cache} & set(flat)


@pytest.mark.parametrize("mode", ["exact", "amortized"])
def test_no_task_starves_beyond_the_stated_fraction(mode: str) -> None:
    def run(**options: float) -> BatchScheduler:
        sampler = build_sampler("mt_uncertainty", {"mode": mode, **options}, SIZES, 100)
        sched = BatchScheduler(sampler, SIZES, 8, "mixed", 1, constant_scorer([0.5, 0.0, 0.5]))
        shares(sched, 100)
        return sched

    bounded = run(max_unsampled_fraction=0.05, min_share=0.0)
    assert max(bounded.longest_unsampled(100)) <= 5  # 5% of 100 steps
    unbounded = run(max_unsampled_fraction=0.0, min_share=0.0)
    assert unbounded.longest_unsampled(100)[1] > 50  # without the guarantee it starves


@pytest.mark.parametrize("mode", ["exact", "amortized"])
def test_every_task_keeps_its_share_floor(mode: str) -> None:
    def task_one_share(min_share: float) -> float:
        sampler = build_sampler(
            "mt_uncertainty",
            {"mode": mode, "min_share": min_share, "max_unsampled_fraction": 0.0},
            SIZES,
            90,
        )
        sched = BatchScheduler(sampler, SIZES, 12, "mixed", 1, constant_scorer([0.5, 0.0, 0.9]))
        return float(shares(sched, 90)[1])

    # the floor is min_share x the uniform share 1/3, met over the run to within one example
    assert task_one_share(0.5) >= 0.5 / 3 - 1 / (12 * 90)
    assert task_one_share(0.25) >= 0.25 / 3 - 1 / (12 * 90)
    assert task_one_share(0.25) < 0.5 / 3  # no more than the floor: the rest follows U
    assert task_one_share(0.0) < 0.02  # without it the certain task gets next to nothing


def test_longest_unsampled_stretch_counts_the_open_one() -> None:
    sampler = build_sampler("uniform", {}, [5, 5], 10)
    sched = BatchScheduler(sampler, [5, 5], 4, "single_task", seed=3)
    tasks = [sched.next_batch(step)[0][0] for step in range(10)]
    for task in (0, 1):
        stretches, run = [], 0
        for t in tasks:
            run = run + 1 if t != task else 0
            stretches.append(run)
        assert sched.longest_unsampled(10)[task] == max(stretches)


@pytest.mark.parametrize("mode", ["exact", "amortized"])
def test_mt_uncertainty_resumes_exactly(mode: str) -> None:
    a, _ = scheduler(mode=mode, pool_factor=2, max_unsampled_fraction=0.05)
    for s in range(3):
        a.next_batch(s)
    state = json.loads(json.dumps(a.state_dict()))
    expected = [a.next_batch(s) for s in range(3, 12)]
    b, _ = scheduler(mode=mode, pool_factor=2, max_unsampled_fraction=0.05)
    b.load_state_dict(state)
    assert [b.next_batch(s) for s in range(3, 12)] == expected
    assert b.longest_unsampled(12) == a.longest_unsampled(12)


def test_real_scorer_on_every_task_type(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from camtl.cli import main
    from camtl.testing.runs import write_config, write_task_files

    write_task_files(tmp_path)
    path = write_config(
        tmp_path,
        tiny_encoder_dir,
        max_steps=3,
        eval_every=3,
        log_every=1,
        sampler={
            "name": "mt_uncertainty",
            "options": {"mc_samples": 3, "candidate_factor": None},
        },
    )
    config = yaml.safe_load(path.read_text())
    config["model"]["architecture"] = "camtl"
    config["model"]["camtl"] = {"max_length": 32}
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    info = json.loads((run / "report.json").read_text())["run_info"]
    assert info["candidates_scored"] == 3 * 4 * 8  # steps x tasks x batch
    assert set(info["longest_unsampled_steps"]) == set(info["examples_drawn"])
    assert set(info["longest_unsampled_steps"]) == set(info["examples_drawn"])
    assert sum(info["examples_drawn"].values()) == 3 * 8
    assert (run / "task_shares.png").exists()


def tiny_model_and_tasks(encoder_dir: Path, name: str) -> tuple[Any, list[Any], Any]:
    """(untrained tiny model, the four test tasks' training data, tokenizer)."""
    from transformers import AutoTokenizer

    from camtl.config import load_config
    from camtl.data.prepare import prepare_tasks
    from camtl.model_config import ModelConfig
    from camtl.modeling import MultiTaskModel
    from camtl.testing.runs import write_config, write_task_files

    root = encoder_dir.parent / name
    write_task_files(root)
    config = load_config(write_config(root, encoder_dir))
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    tasks = prepare_tasks(config.tasks, tokenizer, ("train",))
    model, _ = MultiTaskModel.from_encoder(
        ModelConfig(encoder=str(encoder_dir)),
        [t.spec for t in tasks],
        {t.spec.name: t.labels for t in tasks},
    )
    return model, tasks, tokenizer


def test_scorer_values_are_normalised(tiny_encoder_dir: Path) -> None:
    from camtl.training.uncertainty import make_scorer

    model, tasks, tokenizer = tiny_model_and_tasks(tiny_encoder_dir, "scorer")
    scored = [0]
    scorer = make_scorer(model, tasks, tokenizer.pad_token_id, "cpu", 16, 4, 12, lambda: scored[0])
    candidates = [(t, i) for t in range(4) for i in range(5)]
    norm, raw = scorer(candidates)
    assert norm.shape == (20,) and np.all(norm >= 0) and np.all(norm <= 1.0 + 1e-6)
    again, _ = scorer(candidates)
    assert np.allclose(norm, again)  # same generator seed -> same MC-dropout masks
    assert model.training  # the scorer restores the mode it found


def test_regression_proxy_scores_with_the_proxy_head(tiny_encoder_dir: Path) -> None:
    """The paper's work-around: a regression task's candidates get a classification
    task's normalised entropy; unknown names and non-classification proxies are refused."""
    from camtl.data.collate import collate_features
    from camtl.errors import ConfigError
    from camtl.training.uncertainty import make_scorer, resolve_proxies

    model, tasks, tokenizer = tiny_model_and_tasks(tiny_encoder_dir, "proxy")
    assert resolve_proxies(tasks, {"scores": "pairs"}) == {1: 0}
    with pytest.raises(ConfigError, match=r"proxies\.scores'.*'nope' is not a task"):
        resolve_proxies(tasks, {"scores": "nope"})
    with pytest.raises(
        ConfigError,
        match="must be another task of a kind whose head can score other tasks .classification",
    ):
        resolve_proxies(tasks, {"scores": "ner"})
    candidates = [(1, i) for i in range(6)]
    plain = make_scorer(model, tasks, tokenizer.pad_token_id, "cpu", 16, 4, 12, lambda: 0)
    proxied = make_scorer(model, tasks, tokenizer.pad_token_id, "cpu", 16, 4, 12, lambda: 0, {1: 0})
    norm, raw = proxied(candidates)
    feats = [tasks[1].features["train"][i] for _, i in candidates]
    batch = collate_features(feats, tokenizer.pad_token_id)
    model.eval()
    with torch.inference_mode():
        hidden = model.encode(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["task_ids"]
        )
        logp = torch.log_softmax(model.heads["pairs"](hidden, batch["attention_mask"]), -1)
    entropy = -(logp.exp() * logp).sum(-1).numpy()
    assert np.allclose(raw, entropy, atol=1e-5)
    assert np.allclose(norm, entropy / np.log(2), atol=1e-5)
    assert not np.allclose(plain(candidates)[0], norm)  # MC dropout scores differ


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"max_unsampled_fraction": 1.5}, "max_unsampled_fraction"),
        ({"min_share": -0.1}, "min_share"),
        ({"candidate_factor": 0.5}, "candidate_factor"),
        ({"turnover": 0.0}, "turnover"),
        ({"mode": "lazy"}, "mode"),
    ],
)
def test_bad_options_name_their_key(options: dict, key: str) -> None:
    from camtl.errors import ConfigError

    with pytest.raises(ConfigError, match=f"training.sampler.options.{key}"):
        build_sampler("mt_uncertainty", options, SIZES, 100)
