"""Where dropout's random masks come from (``model.dropout_masks``).

torch's dropout on CPU draws one float per element for its Bernoulli mask; once attention
dropout was off, those masks were the largest operator of a CPU training step
(docs/research/2026-speed.md). ``bits`` draws 16 random bits per element instead, two
elements from each 32-bit draw of torch's generator, and keeps an element when its bits
are at or above ``round(p * 65536)``: the same Bernoulli mask, with p rounded to a multiple
of 1/65536 (0.1 becomes 0.100006) and the kept values scaled by 1 / (1 - that p), so the
output's expectation is still the input. Written here because torch offers no cheaper CPU
mask; it changes the random stream, so ``bernoulli`` (torch's own dropout) restores the
runs made before it bit for bit. ``auto``: ``bits`` on CPU, torch's elsewhere (CUDA's
fused dropout kernel is already cheap).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

DropoutMasks = Literal["auto", "bernoulli", "bits"]
_BITS = 16
_LEVELS = 1 << _BITS


def bits_threshold(p: float) -> int:
    """The number of the 2**16 bit patterns that drop an element (p rounded; a p within
    1/131072 of 1 keeps one pattern, as dropout below 1 keeps some elements)."""
    return min(round(p * _LEVELS), _LEVELS - 1)


def bits_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout of ``x`` with probability ``p`` (rounded to a multiple of 1/65536), its mask
    from 16 random bits an element (always on: the caller checks the mode)."""
    dropped = bits_threshold(p)
    if dropped == 0:
        return x
    n = x.numel()
    # the full int32 range: random_() alone leaves the top bit at 0
    words = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device)
    words.random_(-(1 << 31), 1 << 31)
    bits = words.view(torch.int16)[:n].view(x.shape)
    scale = _LEVELS / (_LEVELS - dropped)
    keep = (bits >= dropped - _LEVELS // 2).to(x.dtype).mul_(scale)
    return x * keep


def uses_bits(setting: DropoutMasks, device: torch.device) -> bool:
    """Whether a pass on ``device`` draws its masks from bits (the rule of ``auto``)."""
    if setting == "bits":
        return True
    if setting == "bernoulli":
        return False
    return device.type == "cpu"


def dropout(x: torch.Tensor, p: float, masks: DropoutMasks) -> torch.Tensor:
    """Training-mode dropout of ``x``, its mask drawn as ``masks`` says (for modules that
    drop functionally: CA-MTL's attention probabilities)."""
    if p == 0:
        return x
    if uses_bits(masks, x.device):
        return bits_dropout(x, p)
    return F.dropout(x, p, training=True)


class DrawsDropoutMasks:
    """A module that draws dropout masks itself rather than through an ``nn.Dropout``
    child; ``set_dropout_masks`` sets its ``dropout_masks`` as it replaces the modules."""

    dropout_masks: DropoutMasks = "auto"


class MaskedDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from ``model.dropout_masks`` (no state of its own,
    so it loads and saves as the module it replaces)."""

    def __init__(self, p: float, inplace: bool, masks: DropoutMasks) -> None:
        super().__init__(p, inplace)
        self.masks: DropoutMasks = masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if uses_bits(self.masks, x.device):
            return bits_dropout(x, self.p)
        return F.dropout(x, self.p, True, self.inplace)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, masks={self.masks}"


def set_dropout_masks(model: nn.Module, masks: DropoutMasks) -> None:
    """Make every ``nn.Dropout`` under ``model``, and every module that draws its own
    masks, draw them as ``masks`` says (``bernoulli`` leaves torch's own modules in place).
    Hugging Face's attention functions drop the probabilities with ``F.dropout`` and keep
    torch's masks: a plain encoder's attention dropout is outside this option's reach."""
    for parent in list(model.modules()):
        if isinstance(parent, DrawsDropoutMasks):
            parent.dropout_masks = masks
        for name, child in list(parent.named_children()):
            if isinstance(child, MaskedDropout):
                child.masks = masks
            elif type(child) is nn.Dropout and masks != "bernoulli":
                setattr(parent, name, MaskedDropout(child.p, child.inplace, masks))
