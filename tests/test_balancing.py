"""Loss balancers: each formula on hand-made losses, and each one inside a real training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from camtl.balancing import BalanceContext, build_balancer
from camtl.errors import ConfigError

NAMES = ["a", "b", "c"]


def losses(**values: float) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}


def test_equal_is_the_mean_over_tasks_present() -> None:
    bal = build_balancer("equal", {}, NAMES)
    out = bal.combine(losses(a=1.0, c=3.0), BalanceContext())
    assert float(out.detach()) == pytest.approx(2.0)


def test_fixed_weights_normalise_over_present_tasks() -> None:
    bal = build_balancer("fixed", {"weights": {"a": 3.0}}, NAMES)
    out = bal.combine(losses(a=1.0, b=5.0), BalanceContext())
    assert float(out.detach()) == pytest.approx((3 * 1 + 1 * 5) / 4)
    with pytest.raises(ConfigError, match="weights.zz"):
        build_balancer("fixed", {"weights": {"zz": 1.0}}, NAMES)
    with pytest.raises(ConfigError, match="training.balancer.name"):
        build_balancer("nope", {}, NAMES)


def test_uncertainty_weighting_learns_log_variances() -> None:
    bal = build_balancer("uncertainty", {}, NAMES)
    out = bal.combine(losses(a=2.0, b=0.5), BalanceContext())
    assert float(out.detach()) == pytest.approx((0.5 * 2.0 + 0.5 * 0.5) / 2)  # s = 0 at start
    out.backward()
    # d/ds (0.5 e^-s L + 0.5 s) = 0.5 (1 - L): a high loss pushes s up (its weight down)
    assert bal.log_vars.grad[0] < 0 < bal.log_vars.grad[1]
    assert bal.log_vars.grad[2] == 0


def test_group_dro_moves_weight_to_the_worst_task() -> None:
    bal = build_balancer("group_dro", {"step_size": 0.5}, NAMES)
    for _ in range(5):
        bal.combine(losses(a=3.0, b=1.0, c=1.0), BalanceContext())
    q = bal.weights()
    assert q["a"] > q["b"] == pytest.approx(q["c"])
    assert sum(q.values()) == pytest.approx(1.0)
    state = bal.state_dict()
    again = build_balancer("group_dro", {"step_size": 0.5}, NAMES)
    again.load_state_dict(state)
    assert again.weights() == q


def test_lookahead_solver_prefers_the_task_that_would_stay_worst() -> None:
    bal = build_balancer(
        "lookahead_dro", {"temperature": 0.01, "iterations": 200, "floor": 0.1}, NAMES
    )
    task_losses = torch.tensor([2.0, 1.0], dtype=torch.float64)
    orthogonal = torch.eye(2, dtype=torch.float64)  # a step on one task leaves the other
    q = bal.solve(task_losses, orthogonal)
    assert q[0] > 0.9  # lowering the worst task (a) is what lowers the max
    assert q[1] >= 0.1 / 2 - 1e-12  # the floor: every task keeps floor / T
    # a soft maximum as wide as the loss gap weighs both tasks: weights nearer uniform
    soft = build_balancer("lookahead_dro", {"temperature": 100.0}, NAMES)
    q = soft.solve(task_losses, orthogonal)
    assert torch.allclose(q, torch.full_like(q, 0.5), atol=0.05)
    # the weights do not depend on the gradients' scale (eta follows |G|)
    assert torch.allclose(
        bal.solve(task_losses, 1e-6 * orthogonal), bal.solve(task_losses, orthogonal)
    )


def test_lookahead_sends_weight_where_it_lowers_the_worst_tasks() -> None:
    """Tasks a and c tie as worst; b's gradient helps both (it is their sum), so weight on
    b lowers both worst losses at once, while weight on a lowers a alone."""
    bal = build_balancer(
        "lookahead_dro", {"temperature": 0.01, "iterations": 300, "floor": 0.0}, NAMES
    )
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    q = bal.solve(torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64), g @ g.T)
    assert q[1] > q[0] and q[1] > q[2]
    assert q[0] == pytest.approx(float(q[2]), abs=1e-6)


def test_lookahead_does_not_mistake_gradient_noise_for_progress() -> None:
    """Task a's gradient flips sign every batch (zero on average, like a task at its
    noise floor); b's is small but steady. Both losses are the same. One batch's Gram
    matrix sees |g_a|^2 = 100 and gives a the weight; the two-batch estimate sees
    <g_a(t-1), g_a(t)> = -100 and gives it to b, whose loss a step can lower."""
    shared = torch.nn.Parameter(torch.zeros(2))
    weights = {}
    for gram in ("unbiased", "same_batch"):
        bal = build_balancer("lookahead_dro", {"gram": gram, "relative_losses": False}, ["a", "b"])
        for step in range(6):
            sign = 1.0 if step % 2 == 0 else -1.0
            task_losses = {
                "a": 1.0 + sign * 10.0 * shared[0],
                "b": 1.0 + 1.0 * shared[1],
            }
            bal.combine(task_losses, BalanceContext(step=step, shared_parameters=[shared]))
        weights[gram] = bal.weights()
    assert weights["unbiased"]["b"] > 0.8
    assert weights["same_batch"]["a"] > 0.8


def test_lookahead_state_round_trips_with_its_gradient_memory() -> None:
    shared = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    context = BalanceContext(shared_parameters=[shared])

    def step(bal: torch.nn.Module, k: int) -> None:
        context.step = k
        bal.combine({"a": (shared[0] * (k + 1)) ** 2, "b": shared.sum() * 3.0}, context)

    first = build_balancer("lookahead_dro", {"reference_updates": 2}, NAMES)
    for k in range(3):
        step(first, k)
    resumed = build_balancer("lookahead_dro", {"reference_updates": 2}, NAMES)
    resumed.load_state_dict(first.state_dict())
    for k in range(3, 6):
        step(first, k)
        step(resumed, k)
    assert resumed.weights() == first.weights()
    assert first.weights()["a"] != pytest.approx(1 / 3)  # the weights did move
    assert first.state_dict()["previous"].shape == (3, 2)


def test_lookahead_relative_losses_compare_progress_not_scale() -> None:
    shared = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    context = BalanceContext(learning_rate=0.1, shared_parameters=[shared])
    # orthogonal gradients with |g_t|^2 / l0_t equal: relative to its first loss, a step
    # helps each task alike, and only the losses decide
    scale_a, scale_b = 6.0**0.5, 0.6**0.5

    def task_losses(a: float, b: float) -> dict[str, torch.Tensor]:
        return {"a": scale_a * (shared[0] - 1) + a, "b": scale_b * (shared[1] - 1) + b}

    weights = {}
    for relative in (True, False):
        bal = build_balancer(
            "lookahead_dro",
            {
                "temperature": 0.01,
                "iterations": 200,
                "relative_losses": relative,
                "reference_updates": 1,
                "smoothing": 0.0,
            },
            NAMES,
        )
        bal.combine(task_losses(6.0, 0.6), context)  # first losses: the reference
        context.step = 1
        bal.combine(task_losses(3.0, 0.5), context)  # a halved, b barely moved
        context.step = 0
        weights[relative] = bal.weights()
        assert bal.state_dict()["initial"].tolist()[:2] == pytest.approx(
            [6.0, 0.6] if relative else [0.0, 0.0]
        )
    assert weights[True]["b"] > weights[True]["a"]  # b made the least progress
    assert weights[False]["a"] > weights[False]["b"]  # raw: a's loss is the largest


@pytest.mark.parametrize(
    "balancer",
    [
        {"name": "fixed", "options": {"weights": {"pairs": 2.0}}},
        {"name": "uncertainty"},
        {"name": "group_dro"},
        {"name": "lookahead_dro", "options": {"every": 2, "reference_updates": 1}},
        {"name": "famo"},
    ],
)
def test_balancers_train_end_to_end(tmp_path: Path, tiny_encoder_dir: Path, balancer: dict) -> None:
    from camtl.cli import main
    from camtl.testing.runs import write_config, write_task_files

    write_task_files(tmp_path)
    path = write_config(
        tmp_path, tiny_encoder_dir, max_steps=3, eval_every=3, log_every=1, balancer=balancer
    )
    assert main(["train", str(path)]) == 0
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    weights = log[-1]["task_weights"]
    assert set(weights) == {"pairs", "scores", "ner", "qa"}
    if balancer["name"] in ("group_dro", "lookahead_dro"):
        assert sum(weights.values()) == pytest.approx(1.0)
        assert log[0]["task_weights"] != log[-1]["task_weights"]
    # the run plots the weights over training when they moved (not for fixed weights)
    moved = any(r["task_weights"] != log[0]["task_weights"] for r in log)
    assert (tmp_path / "run" / "loss_weights.png").exists() == moved
    assert moved == (balancer["name"] != "fixed")
    # FAMO also logs what each task's gradient got (its weights act on log-losses)
    assert ("gradient_weights" in log[-1]) == (balancer["name"] == "famo")
    if balancer["name"] == "famo":
        assert sum(log[-1]["gradient_weights"].values()) == pytest.approx(1.0)


def test_stateful_weights_update_once_per_optimizer_step() -> None:
    bal = build_balancer("group_dro", {"step_size": 0.5}, NAMES)
    before = bal.weights()
    bal.combine(losses(a=3.0, b=1.0), BalanceContext(update=False))  # an early micro-batch
    assert bal.weights() == before
    bal.combine(losses(a=3.0, b=1.0), BalanceContext(update=True))
    assert bal.weights()["a"] > before["a"]


def test_lookahead_gradient_matrix_has_a_row_per_task_in_order() -> None:
    shared = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    bal = build_balancer("lookahead_dro", {}, NAMES)
    context = BalanceContext(shared_parameters=[shared])
    grads = bal._task_gradients({"c": shared.sum() * 2, "a": shared[0] ** 2}, context)
    assert grads.shape == (3, 2)  # same shape on every rank, whatever tasks it holds
    assert torch.equal(grads, torch.tensor([[2.0, 0.0], [0.0, 0.0], [2.0, 2.0]]))


def test_group_dro_relative_losses_follow_progress() -> None:
    raw = build_balancer("group_dro", {"step_size": 0.5}, NAMES)
    rel = build_balancer(
        "group_dro", {"step_size": 0.5, "relative_losses": True, "reference_updates": 1}, NAMES
    )
    for bal in (raw, rel):
        bal.combine(losses(a=6.0, b=0.6), BalanceContext())  # the reference losses
        for _ in range(4):
            bal.combine(losses(a=3.0, b=0.5), BalanceContext())  # a halved, b barely
    assert raw.weights()["a"] > raw.weights()["b"]
    assert rel.weights()["b"] > rel.weights()["a"]


@pytest.mark.parametrize("name", ["group_dro", "lookahead_dro"])
def test_reference_loss_is_a_mean_and_weights_wait_for_it(name: str) -> None:
    """Task a's first loss is a lucky 0.5 among losses near 1.5: as its only reference, a
    would look stuck (relative loss 3) for the whole run. The reference is the mean of the
    first ``reference_updates`` losses, and the weights stay uniform until every task has
    its reference."""
    shared = torch.nn.Parameter(torch.zeros(3))
    bal = build_balancer(name, {"relative_losses": True, "reference_updates": 4}, NAMES)
    for step, a in enumerate([0.5, 1.5, 2.0, 2.0]):
        task_losses = {
            "a": a + shared[0],
            "b": 1.0 + shared[1],
            "c": 1.0 + shared[2],
        }
        bal.combine(task_losses, BalanceContext(step=step, shared_parameters=[shared]))
        if step < 3:  # the fourth update completes the references and moves the weights
            assert bal.weights() == pytest.approx({n: 1 / 3 for n in NAMES})
    assert bal.weights() != pytest.approx({n: 1 / 3 for n in NAMES})
    state = bal.state_dict()
    assert state["initial"].tolist() == pytest.approx([1.5, 1.0, 1.0])
    assert state["reference_seen"].tolist() == [4, 4, 4]
    again = build_balancer(name, {"relative_losses": True, "reference_updates": 4}, NAMES)
    again.load_state_dict(state)
    assert again.state_dict()["reference_seen"].tolist() == [4, 4, 4]
    with pytest.raises(RuntimeError, match="reference_seen"):  # no fallback for a missing key
        again.load_state_dict({k: v for k, v in state.items() if k != "reference_seen"})


# ----------------------------------------------------------------------------- PCGrad, FAMO


def test_pcgrad_projects_conflicting_gradients_by_hand() -> None:
    """g1 = (1, 0), g2 = (-1, 1) conflict (g1.g2 = -1): g1' = g1 + g2/2 = (.5, .5),
    g2' = g2 + g1 = (0, 1); the shared parameter gets their mean (.25, .75)."""
    from camtl.balancing import BalanceContext, build_balancer

    w = torch.nn.Parameter(torch.zeros(2))
    a1, a2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    losses = {"one": (w * a1).sum() + 1.0, "two": (w * a2).sum() + 2.0}
    balancer = build_balancer("pcgrad", {}, ["one", "two"])
    loss = balancer.combine(losses, BalanceContext(shared_parameters=[w]))
    assert float(loss.detach()) == pytest.approx(1.5)  # the mean loss value
    loss.backward()
    assert torch.allclose(w.grad, torch.tensor([0.25, 0.75]))


def test_pcgrad_leaves_agreeing_gradients_alone() -> None:
    from camtl.balancing import BalanceContext, build_balancer

    w = torch.nn.Parameter(torch.zeros(2))
    losses = {
        "one": (w * torch.tensor([1.0, 0.0])).sum(),
        "two": (w * torch.tensor([1.0, 1.0])).sum(),
    }
    build_balancer("pcgrad", {}, ["one", "two"]).combine(
        losses, BalanceContext(shared_parameters=[w])
    ).backward()
    assert torch.allclose(w.grad, torch.tensor([1.0, 0.5]))  # plain mean


def test_famo_scales_each_task_gradient_by_its_weight_over_its_loss() -> None:
    """Equal weights, losses 1 and 4: c = 0.5/1 + 0.5/4 = 0.625, so d loss / d l_t =
    z_t / (c l_t) = (0.8, 0.2)."""
    from camtl.balancing import BalanceContext, build_balancer

    balancer = build_balancer("famo", {"epsilon": 1e-12}, ["a", "b"])
    losses = torch.tensor([1.0, 4.0], requires_grad=True)
    out = balancer.combine({"a": losses[0], "b": losses[1]}, BalanceContext())
    out.backward()
    assert torch.allclose(losses.grad, torch.tensor([0.8, 0.2]))
    # logged as its gradient weights: the weights z alone (0.5, 0.5) would hide this
    assert balancer.gradient_weights() == pytest.approx({"a": 0.8, "b": 0.2})
    assert balancer.weights() == pytest.approx({"a": 0.5, "b": 0.5})


def test_famo_moves_weight_from_the_task_that_improved_to_the_one_that_did_not() -> None:
    """Step 1 sees (1, 4), step 2 (0.5, 4): delta = (log 2, 0); the softmax Jacobian gives
    xi's gradient (+, -) and one Adam step moves each logit by the learning rate."""
    from camtl.balancing import BalanceContext, build_balancer

    balancer = build_balancer("famo", {"learning_rate": 0.1, "weight_decay": 0.0}, ["a", "b"])
    for a, b in ((1.0, 4.0), (0.5, 4.0)):
        balancer.combine({"a": torch.tensor(a), "b": torch.tensor(b)}, BalanceContext())
    assert balancer.logits.tolist() == pytest.approx([-0.1, 0.1], abs=1e-6)
    weights = balancer.weights()
    assert weights["b"] > 0.5 > weights["a"]
    state = balancer.state_dict()  # the Adam state travels in checkpoints
    assert {"logits", "previous", "adam_m", "adam_v", "adam_steps"} <= set(state)


@pytest.mark.parametrize(
    ("name", "options", "key"),
    [
        ("lookahead_dro", {"gram": "both"}, "gram"),
        ("lookahead_dro", {"floor": 1.0}, "floor"),
        ("lookahead_dro", {"temperature": 0}, "temperature"),
        ("group_dro", {"step_size": 0}, "step_size"),
        ("famo", {"learning_rate": -1}, "learning_rate"),
        ("famo", {"weight_decay": -0.1}, "weight_decay"),
        ("famo", {"epsilon": 0}, "epsilon"),
        ("score_dro", {"step_size": 0}, "step_size"),
        ("score_dro", {"floor": 1.0}, "floor"),
        ("score_dro", {"targets": {"a": 0}}, "targets.a"),
        ("score_dro", {"targets": {"z": 80.0}}, "targets.z"),
        ("score_dro", {"targets": "teacher"}, "targets"),
    ],
)
def test_bad_balancer_options_name_their_key(name: str, options: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"training.balancer.options.{key}"):
        build_balancer(name, options, NAMES)


def test_score_dro_moves_weight_to_the_task_furthest_below_its_target() -> None:
    """By hand: gaps 1 - s/c = (0.5, 0.0, 0.2) with c = 100; a <- 2 x gaps; q = 0.3 / 3
    + 0.7 softmax(a). Losses weigh by q until the next evaluation."""
    bal = build_balancer("score_dro", {"step_size": 2.0}, NAMES)
    assert bal.weights() == pytest.approx({n: 1 / 3 for n in NAMES})  # before any evaluation
    bal.observe_dev_scores({"a": 50.0, "b": 100.0, "c": 80.0})
    spread = torch.softmax(torch.tensor([1.0, 0.0, 0.4], dtype=torch.float64), dim=0)
    expected = 0.1 + 0.7 * spread
    assert list(bal.weights().values()) == pytest.approx(expected.tolist())
    loss = bal.combine(losses(a=1.0, b=2.0, c=3.0), BalanceContext())
    assert float(loss.detach()) == pytest.approx(
        float(expected @ torch.tensor([1.0, 2.0, 3.0]).double())
    )
    # a second evaluation adds to the first: a stays furthest below and gains more
    before = bal.weights()["a"]
    bal.observe_dev_scores({"a": 60.0, "b": 100.0, "c": 90.0})
    assert bal.weights()["a"] > before


def test_score_dro_targets_make_the_gap_relative() -> None:
    """With single-task scores as targets, a task at its target has no gap, however low
    its raw score: the weight goes to the task furthest below its own ceiling."""
    bal = build_balancer("score_dro", {"targets": {"a": 50.0, "c": 90.0}, "floor": 0.0}, NAMES)
    assert bal.gaps({"a": 50.0, "b": 95.0, "c": 45.0}).tolist() == pytest.approx([0.0, 0.05, 0.5])
    bal.observe_dev_scores({"a": 50.0, "b": 95.0, "c": 45.0})
    weights = bal.weights()
    assert weights["c"] > weights["b"] > weights["a"]


def test_score_dro_state_round_trips() -> None:
    bal = build_balancer("score_dro", {}, NAMES)
    bal.observe_dev_scores({"a": 20.0, "b": 70.0, "c": 90.0})
    again = build_balancer("score_dro", {}, NAMES)
    again.load_state_dict(bal.state_dict())
    assert again.weights() == bal.weights()
    assert list(bal.state_dict()) == ["advantage"]  # q is derived from it
    assert torch.equal(again.state_dict()["advantage"], bal.state_dict()["advantage"])
    # a checkpoint written when the state also held q and two unused buffers still loads
    legacy = dict(bal.state_dict(), q=torch.zeros(3), initial=torch.zeros(3))
    legacy["reference_seen"] = torch.zeros(3, dtype=torch.long)
    third = build_balancer("score_dro", {}, NAMES)
    third.load_state_dict(legacy)
    assert third.weights() == bal.weights()


def test_score_dro_follows_the_dev_scores_of_a_real_run(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    """The trainer hands each evaluation's primary scores to the balancer: the weights
    logged after the first evaluation are those computed from metrics.jsonl by hand."""
    from camtl.cli import main
    from camtl.testing.runs import write_config, write_task_files

    write_task_files(tmp_path)
    balancer = {"name": "score_dro", "options": {"step_size": 3.0}}
    path = write_config(
        tmp_path, tiny_encoder_dir, max_steps=2, eval_every=1, log_every=1, balancer=balancer
    )
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1
    assert log[0]["task_weights"] == pytest.approx({n: 0.25 for n in first["tasks"]})
    names = list(log[1]["task_weights"])
    gaps = torch.tensor([max(0.0, 1 - first["tasks"][n] / 100) for n in names])
    expected = 0.3 / 4 + 0.7 * torch.softmax(3.0 * gaps.double(), dim=0)
    assert list(log[1]["task_weights"].values()) == pytest.approx(expected.tolist())


def test_score_dro_refuses_a_lower_is_better_primary_metric(
    tmp_path: Path, tiny_encoder_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from camtl.cli import main
    from camtl.testing.runs import write_config, write_task_files

    write_task_files(tmp_path)
    path = write_config(tmp_path, tiny_encoder_dir, max_steps=1, balancer={"name": "score_dro"})
    config = yaml.safe_load(path.read_text())
    config["tasks"][1]["metrics"] = ["mse", "pearson"]
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) != 0
    err = capsys.readouterr().err
    assert "tasks[1].metrics" in err and "mse" in err
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


@pytest.mark.parametrize("name", ["equal", "pcgrad", "lookahead_dro", "score_dro"])
def test_the_trainer_gives_a_balancer_what_it_declares(name: str) -> None:
    """Shared parameters only to a balancer whose ``needs`` hold them, of the set its own
    options name; the dev-score check only for one that needs dev scores."""
    from camtl.balancing import Need
    from camtl.data.prepare import TaskData
    from camtl.tasks.spec import TaskSpec
    from camtl.training.setup import build_balance_context, check_balancer_needs

    options = {"parameters": "all_shared"} if name in ("pcgrad", "lookahead_dro") else {}
    balancer = build_balancer(name, options, NAMES)
    asked: list[str] = []

    class Model:
        def shared_parameters(self, which: str) -> list[torch.nn.Parameter]:
            asked.append(which)
            return [torch.nn.Parameter(torch.zeros(2))]

    context = build_balance_context(balancer, Model(), lambda t: t)  # type: ignore[arg-type]
    wants_shared = Need.SHARED_PARAMETERS in balancer.needs
    assert wants_shared == (name in ("pcgrad", "lookahead_dro"))
    assert asked == (["all_shared"] if wants_shared else [])
    assert len(context.shared_parameters) == int(wants_shared)
    spec = TaskSpec(name="a", type="regression", text_columns=["t"], label_column="y")
    spec.metrics = ["mse"]  # lower is better: dev scores cannot rank it
    tasks = [TaskData(spec, [])]
    if Need.DEV_SCORES in balancer.needs:
        with pytest.raises(ConfigError, match="balancer score_dro needs a primary metric"):
            check_balancer_needs(tasks, balancer)
    else:
        check_balancer_needs(tasks, balancer)
