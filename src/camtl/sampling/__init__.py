"""Task samplers (registered by name) and the batch scheduler that uses them."""

from camtl.sampling import basic  # noqa: F401  (registers the built-in samplers)
from camtl.sampling.base import TaskSampler, build_sampler, register_sampler, sampler_names
from camtl.sampling.schedule import BatchScheduler

__all__ = ["BatchScheduler", "TaskSampler", "build_sampler", "register_sampler",
           "sampler_names"]
