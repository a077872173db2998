"""Samplers and the batch scheduler: probabilities, seeding, exact resume, DDP sharding."""

from __future__ import annotations

import numpy as np
import pytest

from camtl.errors import ConfigError
from camtl.sampling import BatchScheduler, build_sampler

SIZES = [1000, 100, 10]


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("uniform", {}, [1 / 3, 1 / 3, 1 / 3]),
        ("proportional", {}, [1000 / 1110, 100 / 1110, 10 / 1110]),
        ("temperature", {"temperature": 1.0}, [1000 / 1110, 100 / 1110, 10 / 1110]),
        ("temperature", {"temperature": 2.0}, list(np.sqrt(SIZES) / np.sqrt(SIZES).sum())),
    ],
)
def test_probabilities(name: str, options: dict, expected: list[float]) -> None:
    sampler = build_sampler(name, options, SIZES, total_steps=10)
    assert np.allclose(sampler.probabilities(0), expected)


def test_unknown_sampler_and_bad_option_name_the_key() -> None:
    with pytest.raises(ConfigError, match="training.sampler.name"):
        build_sampler("nope", {}, SIZES, 10)
    with pytest.raises(ConfigError, match="training.sampler.options.temp"):
        build_sampler("temperature", {"temp": 2}, SIZES, 10)
    with pytest.raises(ConfigError, match="temperature"):
        build_sampler("temperature", {"temperature": 0}, SIZES, 10)


def _scheduler(seed: int = 3, mode: str = "mixed") -> BatchScheduler:
    return BatchScheduler(build_sampler("uniform", {}, SIZES, 100), SIZES, 16, mode, seed)


def test_mixed_batches_follow_probabilities_and_cover_pools() -> None:
    sched = _scheduler()
    drawn = [t for step in range(300) for t, _ in sched.next_batch(step)]
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(shares, 1 / 3, atol=0.03)
    # the small task's pool was passed over many times, each pass a permutation
    assert sched.passes[2] > 10


def test_pool_passes_are_permutations() -> None:
    sched = BatchScheduler(build_sampler("proportional", {}, [7], 10), [7], 7, "mixed", 0)
    for step in range(5):
        assert sorted(i for _, i in sched.next_batch(step)) == list(range(7))


def test_single_task_mode_gives_one_task_per_batch() -> None:
    sched = _scheduler(mode="single_task")
    for step in range(50):
        assert len({t for t, _ in sched.next_batch(step)}) == 1


def test_same_seed_same_schedule_and_exact_resume() -> None:
    a, b = _scheduler(), _scheduler()
    assert [a.next_batch(s) for s in range(20)] == [b.next_batch(s) for s in range(20)]
    state = a.state_dict()
    expected = [a.next_batch(s) for s in range(20, 40)]
    c = _scheduler(seed=99)
    c.load_state_dict(state)
    assert [c.next_batch(s) for s in range(20, 40)] == expected


def test_shards_partition_the_global_batch() -> None:
    batch = _scheduler().next_batch(0)
    shards = [BatchScheduler.shard(batch, r, 2) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(batch)
    assert len(shards[0]) == len(shards[1]) == 8
