"""CA-MTL's task-conditioned building blocks (Pilault et al., ICLR 2021, section 3.3.1).

Every module reads ``z`` [T, d_z], the transformed task embedding of each task present in
the batch (or, with generators shared across layers, that embedding mixed with a layer
embedding), and ``rows`` (TaskRows), which examples belong to which task, so one batch can
mix tasks. The FiLM generators and the attention bias run once per task, not once per
example; the encoder sorts a batch by task, so modulated weights and conditioned
LayerNorms are applied to each task's run of examples in one kernel. Every FiLM generator
starts at zero, so at initialisation each module is the identity and the encoder reproduces
the pretrained model exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _per_task_precision(z: torch.Tensor) -> torch.autocast:
    """Autocast off: modules that see one row per task compute in their weights' dtype."""
    return torch.autocast(z.device.type, enabled=False)


class FiLMGenerator(nn.Module):
    """z -> (gamma, beta), each [T, *shape]; a zero-initialised Linear (identity at start).

    Runs in fp32 even under autocast: it sees one row per task, so its matmul is tiny, while
    autocast would copy its whole weight (1.4 M values for the attention bias of a 384-wide
    encoder at max_length 128) to bf16 on every call, in every layer.
    """

    def __init__(self, z_dim: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape
        self.size = math.prod(shape)
        self.proj = nn.Linear(z_dim, 2 * self.size)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _per_task_precision(z):
            gamma, beta = self.proj(z.to(self.proj.weight.dtype)).split(self.size, dim=-1)
        return gamma.view(-1, *self.shape), beta.view(-1, *self.shape)


class SharedFiLM:
    """A FiLM generator that several layers' modules call but one owner registers.

    A plain attribute, not a submodule: the generator's parameters are then saved, counted
    and optimised once (safetensors refuses two names for one tensor).
    """

    def __init__(self, generator: FiLMGenerator) -> None:
        self.generator = generator

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.generator(z)


@dataclass(frozen=True)
class TaskRows:
    """Which examples of a batch belong to which task. The encoder sorts a batch by task,
    so ``index`` [B] (each example's row of z) is non-decreasing and each task's examples
    form one contiguous run of ``counts[t]`` examples (at least one: z holds only the tasks
    present).

    ``counts`` None is the gather form that graph export needs (no shape depends on the
    data): z holds every task, ``index`` is in any order, and per-task weights are gathered
    per example instead of applied per run.
    """

    index: torch.Tensor
    counts: tuple[int, ...] | None

    @classmethod
    def of(cls, index: torch.Tensor, num_tasks: int) -> TaskRows:
        """From a sorted index [B] of rows of z."""
        return cls(index, tuple(torch.bincount(index, minlength=num_tasks).tolist()))

    def per_example(self, *per_task: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-task vectors [T, d] -> one row per example, broadcastable over tokens:
        [B, 1, d]."""
        return tuple(t.index_select(0, self.index).unsqueeze(1) for t in per_task)

    @property
    def gathered(self) -> bool:
        return self.counts is None

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``x`` [B, ...] cut into each task's run (views, no copy)."""
        assert self.counts is not None, "the gather form has no runs"
        return x.split(list(self.counts))


def per_task_linear(
    x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None, rows: TaskRows
) -> torch.Tensor:
    """x W_t^T + b with each task's own weight (``weights`` [T, out, in]), one matmul per
    task's run of examples (gather form: each example's own weight)."""
    if rows.gathered:
        out = torch.einsum("bld,bod->blo", x, weights.index_select(0, rows.index))
        return out if bias is None else out + bias
    if weights.shape[0] == 1:
        return F.linear(x, weights[0], bias)
    return torch.cat([F.linear(part, w, bias) for part, w in zip(rows.split(x), weights)])


def modulated_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    rows: TaskRows,
) -> torch.Tensor:
    """x W'^T + b with W' = diag(1+gamma) W + beta 1^T per task (W: [out, in]; gamma, beta:
    [T, out]), i.e. each output unit's weights scaled by 1+gamma and shifted by beta.

    W' is built once per task ([T, out, in], small) and applied to that task's run of
    examples as one matmul: no per-example weights and no elementwise passes over the
    activations, which in bf16 cost more than the matmuls they modulate.
    """
    folded = torch.addcmul(beta.unsqueeze(2), weight.unsqueeze(0), (1 + gamma).unsqueeze(2))
    return per_task_linear(x, folded, bias, rows)


def _film(
    z_dim: int, shape: tuple[int, ...], shared: FiLMGenerator | None
) -> FiLMGenerator | SharedFiLM:
    """The layer's own generator, or a handle on one shared across layers."""
    if shared is None:
        return FiLMGenerator(z_dim, shape)
    if shared.shape != shape:
        raise ValueError(f"shared FiLM generator has shape {shared.shape}, needed {shape}")
    return SharedFiLM(shared)


class LayerConditioner(nn.Module):
    """z_t, layer j -> c_{t,j}: the input of FiLM generators shared across layers.

    HyperFormer's task projector (Karimi Mahabadi et al., 2021): a two-layer MLP on the
    concatenation of the task vector and a learned layer embedding. The non-linearity lets
    each layer read a different function of the task from one set of generators, which a
    linear mix (z + e_j) could not: its task-dependent part would be the same in every layer.
    """

    def __init__(self, num_layers: int, z_dim: int, layer_dim: int) -> None:
        super().__init__()
        self.layer_embedding = nn.Embedding(num_layers, layer_dim)
        nn.init.normal_(self.layer_embedding.weight, std=0.02)
        self.mlp = nn.Sequential(
            nn.Linear(z_dim + layer_dim, z_dim), nn.ReLU(), nn.Linear(z_dim, z_dim)
        )

    def forward(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        with _per_task_precision(z):  # one row per task: see FiLMGenerator
            e = self.layer_embedding.weight[layer].expand(z.shape[0], -1)
            return self.mlp(torch.cat([z.to(e.dtype), e], dim=-1))


class TaskEmbedding(nn.Module):
    """A learned table of task vectors and one shared task transform: z = W e_t + b."""

    def __init__(self, num_tasks: int, z_dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(num_tasks, z_dim)
        nn.init.normal_(self.table.weight, std=0.02)
        self.transform = nn.Linear(z_dim, z_dim)

    def forward(self, task_ids: torch.Tensor) -> torch.Tensor:
        with _per_task_precision(task_ids):  # one row per task: see FiLMGenerator
            return self.transform(self.table(task_ids))

    def add_row(self, vector: torch.Tensor | None = None) -> int:
        """Append one task's row (``vector``, or the table's own random initialisation);
        the existing rows are copied unchanged. Returns the new row's index."""
        old = self.table.weight
        table = nn.Embedding(old.shape[0] + 1, old.shape[1]).to(old.device, old.dtype)
        with torch.no_grad():
            table.weight[:-1] = old
            if vector is None:
                nn.init.normal_(table.weight[-1], std=0.02)
            else:
                table.weight[-1] = vector.to(old)
        table.weight.requires_grad_(old.requires_grad)
        self.table = table
        return old.shape[0]


class ConditionalAttentionBias(nn.Module):
    """The block-diagonal bias M(z) added to attention scores (eq. 3.1).

    N blocks of size b = ceil(L / N) on the diagonal; A_n starts at zero. ``form``:
      "paper"   -- gamma, beta in R^{b x b}, shared by the N blocks: A'_n = A_n (1+gamma) + beta
      "authors" -- gamma, beta in R^{b} scale and shift the columns of one shared A
    Under dynamic padding the bias is sliced to the batch length l: M[:l, :l].
    """

    def __init__(
        self,
        z_dim: int,
        max_length: int,
        num_blocks: int,
        form: str = "paper",
        shared: FiLMGenerator | None = None,
    ) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.block = math.ceil(max_length / num_blocks)
        self.form = form
        if form not in ("paper", "authors"):
            raise ValueError(f"unknown conditional attention form {form!r}")
        self.blocks = nn.Parameter(
            torch.zeros(num_blocks if form == "paper" else 1, self.block, self.block)
        )
        self.film = _film(z_dim, self.film_shape(max_length, num_blocks, form), shared)
        # export form: positions past the blocks that M is padded with (no bias there);
        # the encoder sets it to cover its longest input
        self.pad_to = 0

    @staticmethod
    def film_shape(max_length: int, num_blocks: int, form: str) -> tuple[int, ...]:
        block = math.ceil(max_length / num_blocks)
        return (block, block) if form == "paper" else (block,)

    def forward(
        self, z: torch.Tensor, rows: TaskRows, length: int, mask_bias: torch.Tensor
    ) -> torch.Tensor:
        """The attention mask of a batch of length l: ``mask_bias`` [B, 1, 1, l] (padding)
        plus M(z), built once per task; [B, 1, l, l] in ``mask_bias``'s dtype."""
        gamma, beta = self.film(z)
        if rows.gathered:
            return self._gathered(gamma, beta, rows, length, mask_bias)
        # only the blocks that reach into the first l positions
        n, b = min(self.num_blocks, math.ceil(length / self.block)), self.block
        blocks = self._blocks(gamma, beta, n)
        # direct sum, written blockwise: block i at rows and columns i*b..(i+1)*b
        full = blocks.new_zeros(blocks.shape[0], n, b, n, b, dtype=mask_bias.dtype)
        full.diagonal(dim1=1, dim2=3).copy_(blocks.permute(0, 2, 3, 1))
        full = full.reshape(-1, n * b, n * b)
        if length > n * b:  # a batch longer than max_length: no bias beyond it
            full = F.pad(full, (0, length - n * b, 0, length - n * b))
        # one pass over [B, l, l]: each example's task bias plus its padding mask
        return full[:, :length, :length].index_select(0, rows.index).unsqueeze(1) + mask_bias

    def _blocks(self, gamma: torch.Tensor, beta: torch.Tensor, n: int) -> torch.Tensor:
        """The first n modulated blocks of each task: [T, n, b, b]."""
        if self.form == "paper":
            return self.blocks[:n].unsqueeze(0) * (1 + gamma.unsqueeze(1)) + beta.unsqueeze(1)
        blocks = self.blocks.unsqueeze(0) * (1 + gamma[:, None, None, :]) + beta[:, None, None, :]
        return blocks.expand(-1, n, -1, -1)

    def _gathered(
        self,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        rows: TaskRows,
        length: int,
        mask_bias: torch.Tensor,
    ) -> torch.Tensor:
        """The export form: M of every task at its full size, zero-padded to a fixed
        bound and sliced to the batch length, so no shape depends on the length's value."""
        n, b = self.num_blocks, self.block
        blocks = self._blocks(gamma, beta, n).to(mask_bias.dtype)
        # the direct sum without in-place writes (a traced graph must be functional)
        eye = torch.eye(n, dtype=blocks.dtype, device=blocks.device)
        full = torch.einsum("tirc,ij->tirjc", blocks, eye).reshape(-1, n * b, n * b)
        full = F.pad(full, (0, self.pad_to, 0, self.pad_to))
        return full[:, :length, :length].index_select(0, rows.index).unsqueeze(1) + mask_bias


class ConditionalAlignment(nn.Module):
    """h = E(x) R_hat(z) between the embeddings and the first layer (eq. 3.2).

    ``form``:
      "matrix"      -- R_hat = R diag(1+gamma) + 1 beta^T, R (d x d) starts as the identity
      "elementwise" -- h = E(x) (1+gamma) + beta (the authors' code; no R)
    """

    def __init__(self, z_dim: int, hidden: int, form: str = "matrix") -> None:
        super().__init__()
        self.form = form
        if form == "matrix":
            self.weight = nn.Parameter(torch.eye(hidden))
        elif form != "elementwise":
            raise ValueError(f"unknown conditional alignment form {form!r}")
        self.film = FiLMGenerator(z_dim, (hidden,))

    def forward(self, x: torch.Tensor, z: torch.Tensor, rows: TaskRows) -> torch.Tensor:
        gamma, beta = self.film(z)
        if self.form == "elementwise":
            gamma, beta = rows.per_example(gamma, beta)  # any order: fine in both forms
            return torch.addcmul(beta, x, 1 + gamma)
        # x R_hat, R_hat = R diag(1+gamma) + 1 beta^T: a Linear whose weight is R^T
        return modulated_linear(x, self.weight.t(), None, gamma, beta, rows)


class ConditionalLayerNorm(nn.Module):
    """LayerNorm with weight w'(1+gamma(z)) and bias b'+beta(z) (eq. 3.3).

    w', b' are a pretrained LayerNorm's parameters, passed at call time (not registered
    here, so they are saved once and keep that LayerNorm's freezing); only the FiLM
    generator belongs to this module.
    """

    def __init__(self, hidden: int, z_dim: int, shared: FiLMGenerator | None = None) -> None:
        super().__init__()
        self.film = _film(z_dim, (hidden,), shared)

    def forward(
        self, x: torch.Tensor, z: torch.Tensor, rows: TaskRows, base: nn.LayerNorm
    ) -> torch.Tensor:
        gamma, beta = self.film(z)
        # once per task: [T, d]; a LayerNorm without bias (ModernBERT's) gets beta alone
        weight, bias = base.weight * (1 + gamma), beta if base.bias is None else base.bias + beta
        if rows.gathered:
            weight, bias = rows.per_example(weight, bias)
            return torch.addcmul(bias, F.layer_norm(x, base.normalized_shape, eps=base.eps), weight)
        # one LayerNorm kernel per task's run of examples, its affine applied inside
        parts = [
            F.layer_norm(part, base.normalized_shape, w, b, base.eps)
            for part, w, b in zip(rows.split(x), weight, bias)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class ConditionalBottleneck(nn.Module):
    """d -> d/r -> d feed-forward whose weights are FiLM-modulated by z (like eq. 3.2).

    W_down' = W_down diag(1+gamma_d) + 1 beta_d^T (gamma_d, beta_d in R^{d/r}), likewise for
    W_up with gamma_u, beta_u in R^d. W_up starts at zero, so the module adds nothing at init.
    """

    def __init__(
        self,
        z_dim: int,
        hidden: int,
        reduction: int = 3,
        dropout: float = 0.1,
        shared: tuple[FiLMGenerator, FiLMGenerator] | None = None,
    ) -> None:
        super().__init__()
        inner = self.inner_size(hidden, reduction)
        self.down = nn.Linear(hidden, inner)
        self.up = nn.Linear(inner, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.film_down = _film(z_dim, (inner,), shared[0] if shared else None)
        self.film_up = _film(z_dim, (hidden,), shared[1] if shared else None)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def inner_size(hidden: int, reduction: int) -> int:
        return max(1, hidden // reduction)

    def forward(self, x: torch.Tensor, z: torch.Tensor, rows: TaskRows) -> torch.Tensor:
        gamma, beta = self.film_down(z)
        inner = F.gelu(modulated_linear(x, self.down.weight, self.down.bias, gamma, beta, rows))
        gamma, beta = self.film_up(z)
        return self.dropout(
            modulated_linear(inner, self.up.weight, self.up.bias, gamma, beta, rows)
        )
