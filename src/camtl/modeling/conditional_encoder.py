"""The CA-MTL encoder: a pretrained encoder's own blocks, each run by its family's
conditional layer (camtl.modeling.families), with the task embedding, the conditional
alignment and the shared FiLM generators around them.

The layers reuse the pretrained ``nn.Linear``/``nn.LayerNorm`` objects and run their own
forward with torch's scaled_dot_product_attention or the explicit form (``model.attention``,
camtl.modeling.attention), the conditional bias entering as an additive mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn

from camtl.errors import ConfigError
from camtl.modeling.conditional import (
    ConditionalAlignment,
    ConditionalAttentionBias,
    ConditionalBottleneck,
    FiLMGenerator,
    LayerConditioner,
    TaskEmbedding,
    TaskRows,
)
from camtl.modeling.families import check_encoder, family_for
from camtl.modeling.families.base import ConditionalLayer, SharedLookup
from camtl.modeling.shared_encoder import SharedEncoder, register_encoder


@dataclass
class CamtlOptions:
    """CA-MTL's conditional modules (``model.camtl``): one switch per row of the paper's
    Table 3.1, and the alternative readings in docs/decisions.md (``*_form``).

    task_embedding_dim: width of z feeding every FiLM generator; None = the hidden size (the
    paper).
    generators: "per_layer" (the paper: every conditioned module of every layer has its own
    FiLM generator) or "shared" (one generator per kind of module, shared by the layers and
    fed the task vector mixed with a layer embedding, as HyperFormer does). Per-layer
    generators with a d-wide z cost 1.30x BERT-base's parameters for 9 tasks; shared ones
    keep a d-wide z at 1.13x.
    layer_embedding_dim: width of the layer embedding of shared generators.
    attention_blocks: N diagonal blocks of size ceil(max_length / N); None = hidden / max_length.
    cln_from_layer: first layer whose LayerNorms are conditional; None = the upper half.
    bottleneck: "base" (in the top ``bottleneck_layers`` layers), "large" (a side chain
    across all layers) or "none".
    """

    task_embedding_dim: int | None = None
    generators: Literal["per_layer", "shared"] = "shared"
    layer_embedding_dim: int = 64
    conditional_attention: bool = True
    attention_form: Literal["paper", "authors"] = "paper"
    attention_blocks: int | None = None
    max_length: int = 128
    conditional_alignment: bool = True
    alignment_form: Literal["matrix", "elementwise"] = "matrix"
    conditional_layer_norm: bool = True
    cln_from_layer: int | None = None
    bottleneck: Literal["none", "base", "large"] = "base"
    bottleneck_layers: int = 1
    bottleneck_reduction: int = 3

    def blocks(self, hidden_size: int) -> int:
        return self.attention_blocks or max(1, round(hidden_size / self.max_length))

    def validate(self, path: str, where: str) -> None:
        for key in (
            "task_embedding_dim",
            "layer_embedding_dim",
            "attention_blocks",
            "max_length",
            "bottleneck_layers",
            "bottleneck_reduction",
        ):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError.at(where, f"key '{path}.{key}': must be a positive integer")


def shared_generators(
    config: Any, cam: CamtlOptions, z_dim: int, cln_from: int
) -> nn.ModuleDict | None:
    """One FiLM generator per kind of conditioned module that occurs in some layer
    (None when no layer has one)."""
    d = config.hidden_size
    gens: dict[str, FiLMGenerator] = {}
    if cam.conditional_attention:
        gens["attention"] = FiLMGenerator(
            z_dim,
            ConditionalAttentionBias.film_shape(cam.max_length, cam.blocks(d), cam.attention_form),
        )
    if cam.conditional_layer_norm and cln_from < config.num_hidden_layers:
        gens["cln_attention"] = FiLMGenerator(z_dim, (d,))
        gens["cln_output"] = FiLMGenerator(z_dim, (d,))
    if cam.bottleneck == "large" or (cam.bottleneck == "base" and cam.bottleneck_layers > 0):
        gens["bottleneck_down"] = FiLMGenerator(
            z_dim, (ConditionalBottleneck.inner_size(d, cam.bottleneck_reduction),)
        )
        gens["bottleneck_up"] = FiLMGenerator(z_dim, (d,))
    return nn.ModuleDict(gens) if gens else None


@register_encoder("camtl")
class ConditionalEncoder(SharedEncoder):
    """Embeddings -> conditional alignment -> conditional layers (-> side-chain bottleneck)."""

    Options = CamtlOptions
    title = "CA-MTL"
    tags = ("ca-mtl",)

    # Nothing frozen by default (the base class's): at convergence it beat the paper's frozen
    # embeddings and bottom half over three seeds (docs/decisions.md, "Freezing").

    def __init__(self, hf_model: Any, num_tasks: int, cam: CamtlOptions) -> None:
        super().__init__()
        config = hf_model.config
        check_encoder(config, getattr(config, "name_or_path", "") or config.model_type, "camtl")
        family = family_for(config.model_type)
        assert family is not None and family.layer is not None  # check_encoder refused others
        self.family = family
        self.config = config
        self.cam = cam
        self.gather_rows = False  # the export form (gather_for_export)
        parts = family.parts(hf_model)
        self.embeddings = parts.embeddings
        # the family's other pretrained modules, under their own names (saved weights keep
        # them: embeddings_project, relative_attention_bias, final_norm, ...)
        for name, module in parts.extras.items():
            self.add_module(name, module)
        self._extras = list(parts.extras.values())  # plain lists: registered above
        self._positions = [parts.extras[n] for n in parts.frozen_with_embeddings]
        d, n_layers = config.hidden_size, config.num_hidden_layers
        z_dim = cam.task_embedding_dim or d
        hidden_dropout = family.hidden_dropout(config)
        self.task_embedding = TaskEmbedding(num_tasks, z_dim)
        self.alignment = (
            ConditionalAlignment(z_dim, d, cam.alignment_form)
            if cam.conditional_alignment
            else None
        )
        cln_from = n_layers // 2 if cam.cln_from_layer is None else cam.cln_from_layer
        # shared generators: one per kind of module, read by every layer through c_{t,j}
        # (the alignment sits before the first layer and keeps its own generator)
        self.generators = (
            shared_generators(config, cam, z_dim, cln_from) if cam.generators == "shared" else None
        )
        self.conditioner = (
            LayerConditioner(n_layers, z_dim, cam.layer_embedding_dim)
            if self.generators is not None
            else None
        )
        base_top = n_layers - cam.bottleneck_layers
        self.layers = nn.ModuleList(
            family.layer(
                layer,
                config,
                z_dim,
                cam,
                cam.conditional_attention,
                cam.conditional_layer_norm and i >= cln_from,
                cam.bottleneck == "base" and i >= base_top,
                self.generators,
                hidden_dropout,
            )
            for i, layer in enumerate(parts.layers)
        )
        chain_gens = SharedLookup(self.generators).pair("bottleneck")
        self.side_chain = (
            nn.ModuleList(
                ConditionalBottleneck(
                    z_dim, d, cam.bottleneck_reduction, hidden_dropout, chain_gens
                )
                for _ in range(n_layers)
            )
            if cam.bottleneck == "large"
            else None
        )

    def conditional_layers(self) -> list[ConditionalLayer]:
        return [cast(ConditionalLayer, layer) for layer in self.layers]

    def set_attention(self, setting: str) -> None:
        super().set_attention(setting)
        for layer in self.conditional_layers():
            layer.attention_setting = setting

    def gather_for_export(self, enabled: bool = True) -> None:
        """Switch to the export form (TaskRows without runs): no shape or control flow then
        depends on the data, so the forward pass can be traced into one graph."""
        self.gather_rows = enabled
        for layer in self.conditional_layers():
            if layer.cond_attention is not None:
                layer.cond_attention.pad_to = self.config.max_position_embeddings

    def pretrained_layers(self) -> list[nn.Module]:
        return [layer.base for layer in self.conditional_layers()]  # each keeps its base

    def first_layer(self) -> nn.Module:
        return self.layers[0]

    def pretrained_extras(self) -> list[nn.Module]:
        return list(self._extras)

    def position_modules(self) -> list[nn.Module]:
        return list(self._positions)

    def task_embeddings(self) -> nn.Parameter:
        return cast(nn.Parameter, self.task_embedding.table.weight)

    def add_task(self, embedding: torch.Tensor | None = None) -> None:
        self.task_embedding.add_row(embedding)

    def description(self) -> dict[str, Any]:
        return {
            "generators": self.cam.generators,
            "task_embedding_dim": self.task_embedding.table.embedding_dim,
        }

    def summary(self) -> str:
        facts = self.description()
        return (
            f"{facts['generators']} FiLM generators, task embedding {facts['task_embedding_dim']}"
        )

    def conditional_modules(self) -> list[nn.Module]:
        """Every module whose parameters always train, whatever is frozen."""
        mods: list[nn.Module] = [self.task_embedding]
        for shared in (self.alignment, self.generators, self.conditioner):
            if shared is not None:
                mods.append(shared)
        if self.side_chain is not None:
            mods.append(self.side_chain)
        for layer in self.conditional_layers():
            for name in ("cond_attention", "bottleneck"):
                if getattr(layer, name) is not None:
                    mods.append(getattr(layer, name))
            for cln in (layer.cln_attention, layer.cln_output):
                if cln is not None:
                    mods.append(cln)
        return mods

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        task_ids: torch.Tensor,
    ) -> torch.Tensor:
        order = None
        if self.gather_rows:  # graph export: every task's conditioning, gathered per example
            tasks = torch.arange(self.task_embedding.table.num_embeddings, device=task_ids.device)
            rows = TaskRows(task_ids, None)
        else:
            # the conditioning is computed once per task present; the batch runs sorted by
            # task (each task's examples one contiguous run), put back in order at the end
            tasks, index = torch.unique(task_ids, return_inverse=True)
            if tasks.shape[0] > 1 and bool((index[1:] < index[:-1]).any()):
                order = torch.argsort(index, stable=True)
                index, input_ids = index[order], input_ids[order]
                attention_mask = attention_mask[order]
                token_type_ids = None if token_type_ids is None else token_type_ids[order]
            rows = TaskRows.of(index, tasks.shape[0])
        z = self.task_embedding(tasks)
        hidden = self.family.embed(self, input_ids, token_type_ids, attention_mask)
        if self.alignment is not None:
            hidden = self.alignment(hidden, z, rows)
        # additive padding mask [B, 1, 1, l]; half the dtype's range so adding M stays finite
        # in the dtype attention runs in (bf16 under autocast), once for every layer
        dtype = (
            torch.get_autocast_dtype(hidden.device.type)
            if torch.is_autocast_enabled(hidden.device.type)
            else hidden.dtype
        )
        mask_bias = (1.0 - attention_mask[:, None, None, :].to(dtype)) * (
            torch.finfo(dtype).min / 2
        )
        context = self.family.context(self, hidden, attention_mask)
        chain = None
        for j, layer in enumerate(self.layers):
            c = z if self.conditioner is None else self.conditioner(z, j)
            hidden = layer(hidden, mask_bias, c, rows, context)
            if self.side_chain is not None:  # "large": input = layer output + chain so far
                chain = self.side_chain[j](hidden if chain is None else hidden + chain, c, rows)
        hidden = self.family.finish(self, hidden if chain is None else hidden + chain)
        return hidden if order is None else hidden.index_select(0, torch.argsort(order))
