"""Which floating-point precision a run computes in, and the autocast context for it.

``auto`` (the default) picks bf16 where the hardware runs it fast (a CPU with bf16
instructions, a CUDA GPU with bf16 support), else fp32 (``no``). Training, evaluation,
prediction and MT-Uncertainty scoring all enter the same context, so a model is scored in
the precision it was trained in.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# CPU flags of bf16 matrix instructions (x86: AVX512-BF16, AMX; Arm: BF16 extension)
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


@functools.cache
def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True where the CPU advertises bf16 matrix instructions (Linux; elsewhere False)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return bool(_BF16_FLAGS & set(value.split()))
    return False


def resolve_precision(setting: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``bf16`` or ``no`` for ``device``; any other setting is returned as is."""
    if setting != "auto":
        return setting
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "no"
    return "no"


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str = "cpu") -> Iterator[None]:
    """torch.autocast in ``precision`` (``no``: plain fp32) on ``device``'s type."""
    precision = resolve_precision(precision, device)
    if precision == "no":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=_DTYPES[precision]):
        yield
