"""A name -> class registry filled by a decorator, for components chosen in the config.

Each registered class has a ``name`` and an ``Options`` dataclass; ``lookup`` validates the
user's options against it, so errors name the key path (``training.sampler.options.x``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from camtl.errors import ConfigError
from camtl.structured import from_dict

T = TypeVar("T")


@dataclasses.dataclass
class NoOptions:
    """Components without options."""


class Registry(Generic[T]):
    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind  # "sampler", "balancer": for messages
        self.key = key  # config key path of the choice, e.g. "training.sampler"
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            self._classes[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a test's stand-in component, once the test is done)."""
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type[T] | None:
        """The class registered as ``name``, or None."""
        return self._classes.get(name)

    def lookup(self, name: str, options: dict[str, Any], where: str = "") -> tuple[type[T], Any]:
        """(the class, its validated options); an unknown name lists the known ones."""
        if name not in self._classes:
            prefix = f"{where}: " if where else ""
            raise ConfigError(
                f"{prefix}key '{self.key}.name': unknown {self.kind} {name!r} "
                f"(known: {', '.join(self.names())})"
            )
        cls = self._classes[name]
        return cls, from_dict(cls.Options, options, f"{self.key}.options", where)  # type: ignore[attr-defined]


def check_options(
    options: Any,
    path: str,
    where: str,
    *,
    choices: dict[str, tuple[str, ...]] | None = None,
    positive_ints: tuple[str, ...] = (),
    positive: tuple[str, ...] = (),
    fractions: tuple[str, ...] = (),
) -> None:
    """Common checks of an Options dataclass: a value among ``choices``, a positive integer,
    a positive number, a fraction in [0, 1). The error names the key path."""
    for key, allowed in (choices or {}).items():
        if getattr(options, key) not in allowed:
            raise ConfigError.at(
                where,
                f"key '{path}.{key}': {getattr(options, key)!r} is not allowed "
                f"(allowed: {', '.join(map(repr, allowed))})",
            )
    for key in positive_ints:
        if getattr(options, key) < 1:
            raise ConfigError.at(where, f"key '{path}.{key}': must be a positive integer")
    for key in positive:
        if not getattr(options, key) > 0:
            raise ConfigError.at(where, f"key '{path}.{key}': must be > 0")
    for key in fractions:
        if not 0.0 <= getattr(options, key) < 1.0:
            raise ConfigError.at(where, f"key '{path}.{key}': must be in [0, 1)")
