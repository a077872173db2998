"""Task definitions: TaskSpec and the registry of built-in tasks (the task kinds a spec's
``type`` names are camtl.tasks.kinds' registry)."""

from camtl.tasks.registry import get_task, register_task, resolve_task, task_names
from camtl.tasks.spec import SPLITS, SourceSpec, TaskSpec

__all__ = [
    "SPLITS",
    "SourceSpec",
    "TaskSpec",
    "get_task",
    "register_task",
    "resolve_task",
    "task_names",
]
