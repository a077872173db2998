"""Frozen layers' weights cast to the autocast dtype once, not at every forward pass.

Under autocast every ``nn.Linear`` casts its fp32 weight to bf16 at each call; autocast
caches the cast within a pass only for weights that require a gradient, so a frozen
layer's weights are cast anew at every call of every step. ``cache_frozen_casts`` turns the
frozen ``nn.Linear`` modules of a model into ``CastCachedLinear``: they keep the low-precision
copy and reuse it while the weight is unchanged. The copy is what autocast would have made
(the same rounding), so results are bit-identical; the fp32 parameters stay the module's
own, so ``state_dict`` and saved files are unchanged. Outside autocast, or once a weight
requires a gradient again, the module is a plain ``nn.Linear``.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


class CastCachedLinear(nn.Linear):
    """An ``nn.Linear`` whose frozen weight and bias are cast to the autocast dtype once."""

    _cast_cache: dict[str, tuple[tuple[int, int, torch.dtype], torch.Tensor]]

    def _cast(
        self, name: str, tensor: torch.Tensor | None, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """``tensor`` in ``dtype``: the cached copy while the tensor is unchanged (same
        storage, no in-place write since: loading weights bumps the version counter)."""
        if tensor is None or tensor.requires_grad:
            return tensor  # autocast casts (and caches) a trained tensor itself
        key = (tensor.data_ptr(), tensor._version, dtype)
        cached = self._cast_cache.get(name)
        if cached is None or cached[0] != key:
            # a normal tensor even when first cast under inference_mode (evaluation), so
            # that training passes may save it for backward
            with torch.inference_mode(False), torch.no_grad():
                cached = (key, tensor.to(dtype))
            self._cast_cache[name] = cached
        return cached[1]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        dtype = _autocast_dtype(input.device.type)
        if dtype is None or self.weight.requires_grad:
            return super().forward(input)
        weight = cast(torch.Tensor, self._cast("weight", self.weight, dtype))  # never None
        return F.linear(input, weight, self._cast("bias", self.bias, dtype))


def cache_frozen_casts(model: nn.Module) -> int:
    """Make every frozen ``nn.Linear`` of ``model`` a ``CastCachedLinear`` (in place: the
    same module objects, parameters and names); returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and not module.weight.requires_grad:
            module.__class__ = CastCachedLinear
            cast(CastCachedLinear, module)._cast_cache = {}
            count += 1
    return count


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients, and every ``nn.Linear``'s low-precision copy kept: what
    ``predict`` and ``serve`` run. Bit-identical outputs; in bf16 about a quarter more
    inputs a second on a CPU, as the casts no longer repeat at every pass."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    cache_frozen_casts(model)
    return model


def uncache_frozen_casts(model: nn.Module) -> None:
    """Undo ``cache_frozen_casts``: plain ``nn.Linear`` modules again, copies dropped."""
    for module in model.modules():
        if type(module) is CastCachedLinear:
            module.__class__ = nn.Linear  # type: ignore[assignment]  # back to its own class
            del module._cast_cache


def use_frozen_cast_cache(setting: bool | None, precision: str) -> bool:
    """``training.cast_frozen_once``: None (the default) means on for bf16 runs."""
    return precision == "bf16" if setting is None else setting
