"""A name -> class registry filled by a decorator, for components chosen in the config.

Each registered class has a ``name`` and an ``Options`` dataclass; ``lookup`` validates the
user's options against it, so errors name the key path (``training.sampler.options.x``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from camtl import validation
from camtl.structured import from_dict
from camtl.validation import config_key, invalid, require

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
            raise invalid(
                config_key(f"{self.key}.name", prefix),
                f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})",
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
    prefix = f"{where}: " if where else ""
    for key, allowed in (choices or {}).items():
        value = getattr(options, key)
        require(
            value in allowed,
            config_key(f"{path}.{key}", prefix),
            f"{value!r} is not allowed (allowed: {', '.join(map(repr, allowed))})",
        )
    for key in positive_ints:
        validation.positive(config_key(f"{path}.{key}", prefix), getattr(options, key))
    for key in positive:
        require(getattr(options, key) > 0, config_key(f"{path}.{key}", prefix), "must be > 0")
    for key in fractions:
        value = getattr(options, key)
        require(0.0 <= value < 1.0, config_key(f"{path}.{key}", prefix), "must be in [0, 1)")
