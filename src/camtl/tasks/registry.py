"""The task registry: built-in catalogs register TaskSpecs by name; YAML refers to them.

A task entry in a run config is one of:
  - a registered name:                ``snli``
  - a name with overrides:            ``{name: snli, max_train_examples: 2000}``
  - a full inline definition:         ``{name: mine, type: classification, ...}``
  - a YAML file holding a definition: ``{file: tasks/mine.yaml}`` (overrides allowed beside it)
"""

from __future__ import annotations

import copy
import difflib
import importlib
from pathlib import Path
from typing import Any

from camtl.errors import ConfigError
from camtl.structured import from_dict, to_dict
from camtl.tasks.spec import TaskSpec, anchor_paths
from camtl.yamlio import read_yaml

_REGISTRY: dict[str, TaskSpec] = {}
_CATALOGS = ("camtl.tasks.offline", "camtl.tasks.glue", "camtl.tasks.benchmarks")
_loaded = False


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task to the registry (catalog modules call this at import)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"task {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_catalogs() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _CATALOGS:
            importlib.import_module(module)


def task_names() -> list[str]:
    _load_catalogs()
    return sorted(_REGISTRY)


def get_task(name: str, path: str = "tasks", where: str = "") -> TaskSpec:
    """A fresh copy of a registered task; unknown names fail with close matches."""
    _load_catalogs()
    if name not in _REGISTRY:
        prefix = f"{where}: " if where else ""
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"{prefix}key '{path}': unknown task {name!r}{hint}; "
            "'camtl data list' shows the known tasks"
        )
    return copy.deepcopy(_REGISTRY[name])


def resolve_task(ref: Any, path: str, where: str = "", base_dir: Path | None = None) -> TaskSpec:
    """Turn one YAML task entry into a validated TaskSpec."""
    if isinstance(ref, str):
        return get_task(ref, path, where)
    if not isinstance(ref, dict):
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}key '{path}': expected a task name or a mapping, got {ref!r}")
    entry = dict(ref)
    if "file" in entry:
        file = Path(str(entry.pop("file")))
        if base_dir is not None and not file.is_absolute():
            file = base_dir / file
        data = read_yaml(file)
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: expected a mapping with the task definition")
        spec = from_dict(TaskSpec, data, "", str(file))
        anchor_paths(spec, file.parent.absolute())  # the task file's own folder
        merged = to_dict(spec)
        merged.update(entry)
        return from_dict(TaskSpec, merged, path, where)
    if "type" not in entry and "name" in entry:
        base = to_dict(get_task(str(entry["name"]), f"{path}.name", where))
        _keep_source_shape(base, entry)
        base.update(entry)
        return from_dict(TaskSpec, base, path, where)
    return from_dict(TaskSpec, entry, path, where)


def _keep_source_shape(recipe: dict[str, Any], override: dict[str, Any]) -> None:
    """A new ``source`` replaces the recipe's whole, except its file layout and record
    filter: which records a task reads and how they are laid out belong to the task, not
    to where the user keeps the files."""
    new, old = override.get("source"), recipe.get("source", {})
    if not isinstance(new, dict):
        return
    kept = {k: old[k] for k in ("layout", "filter") if old.get(k) and k not in new}
    if kept:
        override["source"] = {**new, **kept}
