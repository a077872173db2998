"""The ``--device`` of ``camtl serve``, ``predict`` and ``evaluate``: parsed and checked once.

Accepted: ``cpu`` (the default), ``cuda`` (the first visible GPU, the same as ``cuda:0``),
``cuda:N`` and ``auto`` (``cuda:0`` where torch sees a GPU, else ``cpu``). Anything else, a
CUDA device where torch sees none, or an index past the visible GPUs is a ``ConfigError``
naming ``--device`` and the value. Training picks its device itself (accelerate: the GPU
when there is one).
"""

from __future__ import annotations

import re

from camtl.validation import flag, invalid, require

DEVICE_HELP = (
    "where the model runs: cpu (default), cuda (= cuda:0), cuda:N, or auto (cuda:0 if "
    "torch sees a GPU, else cpu)"
)
_CUDA = re.compile(r"cuda(?::(\d+))?")


def parse_device(value: str) -> tuple[str, int | None]:
    """``(kind, index)`` of a ``--device`` value without looking at the hardware:
    ``("cpu", None)``, ``("cuda", N)`` (``cuda`` alone is index 0) or ``("auto", None)``."""
    text = value.strip().lower()
    if text in ("cpu", "auto"):
        return text, None
    match = _CUDA.fullmatch(text)
    if match is None:
        raise invalid(flag("--device", value), "expected cpu, cuda, cuda:N or auto")
    return "cuda", int(match.group(1) or 0)


def resolve_device(value: str) -> str:
    """The torch device string (``cpu`` or ``cuda:N``) for a ``--device`` value, checked
    against this machine's GPUs. Idempotent: a resolved value resolves to itself."""
    kind, index = parse_device(value)
    if kind == "cpu":
        return "cpu"
    import torch  # here, so that the CLI's parser builds without loading torch

    available = torch.cuda.is_available()
    if kind == "auto":
        return "cuda:0" if available else "cpu"
    require(
        available,
        flag("--device", value),
        f"CUDA is not available here (torch {torch.__version__} sees no GPU); use --device cpu",
    )
    count = torch.cuda.device_count()
    if index is None or index >= count:
        raise invalid(
            flag("--device", value), f"no such GPU ({count} visible: cuda:0 to cuda:{count - 1})"
        )
    return f"cuda:{index}"
