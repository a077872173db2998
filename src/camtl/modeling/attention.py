"""Which attention kernel a forward pass runs (``model.attention``), and the explicit one.

``sdpa`` is torch's ``scaled_dot_product_attention``; ``eager`` is the same attention as
two batched matmuls and a softmax. On CPU the backward pass of torch's fused attention
kernel dominates a bf16 training step, while the explicit form runs on the fast bf16
matmuls; at inference the fused kernel is the faster one (bench/step_time.py,
docs/decisions.md). ``auto`` picks per forward pass by the rule of ``attention_kernel``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from camtl.modeling.dropout import DropoutMasks, dropout

AttentionSetting = Literal["auto", "sdpa", "eager"]
Kernel = Literal["sdpa", "eager"]


def attention_kernel(setting: str, training: bool, device: torch.device) -> Kernel:
    """The kernel of one forward pass. ``auto``: ``eager`` when training on CPU, ``sdpa``
    otherwise (inference anywhere, training on CUDA); ``sdpa`` and ``eager`` as named."""
    if setting == "eager":
        return "eager"
    if setting == "sdpa":
        return "sdpa"
    return "eager" if training and device.type == "cpu" else "sdpa"


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    dropout_p: float,
    masks: DropoutMasks = "auto",
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_head) + bias) v, with dropout ``dropout_p`` on the
    probabilities, its masks drawn as ``masks`` says (``model.dropout_masks``; no dropout
    call at all when it is 0). q, k, v: [B, heads, L, d_head]; bias: additive, broadcast to
    [B, heads, L, L].

    Everything runs in the compute dtype (bf16 under autocast): torch's CPU softmax of a
    bf16 tensor accumulates in fp32 and gives the same result as an fp32 softmax rounded
    to bf16 (measured; docs/decisions.md).
    """
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2)) + bias
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(dropout(probs, dropout_p, masks), v)


def attend(
    kernel: Kernel,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    dropout_p: float,
    masks: DropoutMasks = "auto",
) -> torch.Tensor:
    """Attention by ``kernel``; ``dropout_p`` is the probability dropout of this pass (0 at
    inference), its masks drawn as ``masks`` says in the eager kernel (sdpa draws its own)."""
    if kernel == "eager":
        return eager_attention(q, k, v, bias, dropout_p, masks)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
