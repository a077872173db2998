"""Task definitions: TaskSpec, TaskType and the registry of built-in tasks."""

from camtl.tasks.registry import get_task, register_task, resolve_task, task_names
from camtl.tasks.spec import SPLITS, SourceSpec, TaskSpec, TaskType

__all__ = [
    "SPLITS",
    "SourceSpec",
    "TaskSpec",
    "TaskType",
    "get_task",
    "register_task",
    "resolve_task",
    "task_names",
]
