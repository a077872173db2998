"""Task samplers (registered by name) and the batch scheduler that uses them."""

from camtl.sampling import basic, mt_uncertainty  # noqa: F401  (register the samplers)
from camtl.sampling.base import TaskSampler, build_sampler, register_sampler, sampler_names
from camtl.sampling.schedule import BatchScheduler

__all__ = ["BatchScheduler", "TaskSampler", "build_sampler", "register_sampler", "sampler_names"]
