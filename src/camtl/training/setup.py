"""Building what a training run needs: data and model, optimizer, LR and batch schedulers,
accelerator."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from camtl.balancing import BalanceContext, LossBalancer, Need
from camtl.config import RunConfig, TrainingConfig
from camtl.data.prepare import TaskData, prepare_tasks
from camtl.distillation.config import DistillationConfig
from camtl.distillation.distiller import KEY as DISTILLATION_KEY
from camtl.distillation.teachers import teacher_dev_scores
from camtl.errors import ConfigError
from camtl.modeling.encoder import load_encoder_and_tokenizer
from camtl.modeling.families import check_task_lengths
from camtl.modeling.model import MultiTaskModel
from camtl.sampling import BatchScheduler, TaskSampler
from camtl.training.uncertainty import make_scorer


def build_model_and_data(config: RunConfig) -> tuple[list[TaskData], MultiTaskModel, Any]:
    """Every task read, validated and tokenized, and the model built over them."""
    encoder, tokenizer = load_encoder_and_tokenizer(config.model.encoder)
    check_task_lengths(encoder.config, config.tasks, config.model.encoder)  # before the data
    tasks = prepare_tasks(config.tasks, tokenizer, ("train", "dev", "test"))
    # the model's label maps hold the labels in use (inferred ones too); the specs, and
    # with them the run's config.yaml, keep what the config said
    labels = {t.spec.name: t.labels for t in tasks}
    model = MultiTaskModel(encoder, [t.spec for t in tasks], labels, config.model)
    config.model = model.config  # with the freezing it applied, for the run's config.yaml
    return tasks, model, tokenizer


def build_accelerator(config: RunConfig, precision: str) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    if int(os.environ.get("WORLD_SIZE", "1")) == 1 and hasattr(AcceleratorState, "_reset_state"):
        # accelerate keeps one global state per process; a library user training twice in
        # one process (ablations, notebooks, tests) may change mixed precision in between.
        AcceleratorState._reset_state(reset_partial_state=True)
    # Heads of tasks absent from a batch get no gradient: DDP must expect unused parameters.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # split_batches: one optimizer step is one GLOBAL batch (BatchScheduler shards it), so the
    # LR schedule must advance once per step; otherwise accelerate steps it once per process.
    try:
        # cpu=True without a GPU: under torchrun the ranks then form a gloo group (without it,
        # accelerate on a CPU-only machine runs each rank alone, racing on one run dir).
        return Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision=precision,
            kwargs_handlers=[ddp],
            dataloader_config=DataLoaderConfiguration(split_batches=True),
        )
    except ValueError as exc:
        raise ConfigError(f"key 'training.mixed_precision': {exc}") from None


def build_optimizer(model: MultiTaskModel, config: RunConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm weights; frozen parameters left out;
    its kernel by ``training.optimizer_impl``."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.training.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    flags = optimizer_flags(config.training.optimizer_impl, decay + no_decay)
    return torch.optim.AdamW(
        groups, lr=config.training.learning_rate, fused=flags["fused"], foreach=flags["foreach"]
    )


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig) -> Any:
    """Linear warmup over ``warmup_ratio`` of the steps, then linear decay to 0."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps
    )


def build_batch_scheduler(
    config: RunConfig,
    sampler: TaskSampler,
    model: MultiTaskModel,
    tasks: list[TaskData],
    pad_token_id: int,
    accelerator: Any,
    precision: str,
    proxies: dict[int, int],
) -> BatchScheduler:
    """What picks each step's global batch (``batch_size`` per process): ``sampler``'s
    tasks and examples, with MT-Uncertainty's scorer over ``model`` when it asks for one
    (each process scores its share of the candidates)."""
    cfg = config.training
    scoring = sampler.scoring_request()
    scorer = None
    if scoring is not None:
        scorer = make_scorer(
            model,
            tasks,
            pad_token_id,
            accelerator.device,
            cfg.eval_batch_size,
            scoring.mc_samples,
            config.seed,
            lambda: sampler.candidates_scored() or 0,
            proxies,
            precision,
            shard=(accelerator.process_index, accelerator.num_processes),
            reduce_sum=lambda t: accelerator.reduce(t.contiguous(), reduction="sum"),
        )
    return BatchScheduler(
        sampler,
        [len(t.features["train"]) for t in tasks],
        cfg.batch_size * accelerator.num_processes,
        cfg.batch_mode,
        config.seed,
        scorer,
    )


def fused_adamw_supported(params: Sequence[torch.Tensor]) -> bool:
    """Whether torch has a fused AdamW kernel for every one of ``params`` (floating point,
    on a device with the kernel: CPU and CUDA among them since torch 2.4)."""
    from torch.optim import optimizer

    devices = getattr(optimizer, "_get_fused_kernels_supported_devices", lambda: ["cuda"])()
    return all(p.is_floating_point() and p.device.type in devices for p in params)


def optimizer_flags(impl: str, params: Sequence[torch.Tensor]) -> dict[str, bool | None]:
    """AdamW's ``fused`` and ``foreach`` for ``training.optimizer_impl``: ``auto`` is fused
    where supported, else torch's own choice (``torch_default``: both None)."""
    if impl == "auto":
        impl = "fused" if fused_adamw_supported(params) else "torch_default"
    if impl == "fused":
        if not fused_adamw_supported(params):
            devices = sorted({p.device.type for p in params})
            raise ConfigError(
                "key 'training.optimizer_impl': torch has no fused AdamW for these "
                f"parameters (on {', '.join(devices)}); use auto or foreach"
            )
        return {"fused": True, "foreach": None}
    if impl == "foreach":
        return {"fused": None, "foreach": True}
    return {"fused": None, "foreach": None}


def apply_optimizer_flags(optimizer: torch.optim.Optimizer, flags: dict[str, bool | None]) -> None:
    """Set the kernel flags again after a checkpoint was loaded: ``load_state_dict`` takes
    them from the saved param groups, and the configured kernel must win. The state (moments,
    step counts) is the same for every kernel, so it carries over exactly; only the fused
    kernel wants each step count on its parameter's device."""
    for group in optimizer.param_groups:
        group.update(flags)
        if not flags.get("fused"):
            continue
        for param in group["params"]:
            state = optimizer.state.get(param)
            if state and "step" in state:
                state["step"] = state["step"].to(dtype=torch.float32, device=param.device)


def check_balancer_needs(tasks: list[TaskData], balancer: LossBalancer) -> None:
    """Refuse, before the run starts, a run that cannot give the balancer what it declared
    it needs (``LossBalancer.needs``): dev scores are taken highest as best, so every
    task's primary metric must be higher-is-better (not mse)."""
    from camtl.tasks.kinds import higher_is_better

    if Need.DEV_SCORES not in balancer.needs:
        return
    for index, task in enumerate(tasks):
        if not higher_is_better(task.spec.primary_metric):
            raise ConfigError(
                f"key 'tasks[{index}].metrics': balancer {balancer.name} needs a primary "
                f"metric where higher is better; task {task.spec.name} has "
                f"{task.spec.primary_metric} first (list another metric first)"
            )


def give_teacher_scores(
    balancer: LossBalancer, distillation: DistillationConfig | None, tasks: list[TaskData]
) -> None:
    """Hand a balancer that asks for them (score DRO's ``targets: teachers``) the teachers'
    dev scores, before training; refused when the run has no teachers."""
    if not balancer.wants_teacher_scores():
        return
    if distillation is None:
        raise ConfigError(
            f"key 'training.balancer.options.targets': balancer {balancer.name} takes "
            "'teachers' as the teachers' dev scores, and this run has no "
            "training.distillation (name the targets per task, or add the teachers)"
        )
    balancer.use_teacher_scores(teacher_dev_scores(distillation, tasks, DISTILLATION_KEY))


def build_balance_context(
    balancer: LossBalancer,
    model: MultiTaskModel,
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor],
) -> BalanceContext:
    """The context the balancer's ``combine`` gets at every step: what it declared it
    needs (``LossBalancer.needs``) and the reduction over ranks."""
    shared = (
        model.shared_parameters(balancer.shared_parameter_set())
        if Need.SHARED_PARAMETERS in balancer.needs
        else []
    )
    return BalanceContext(shared_parameters=shared, all_reduce_mean=all_reduce_mean)
