"""What each fused-kernel switch (`FusionConfig`) resolves to on this machine.

Availability is read from megatron-core itself where it records it (the TE rotary and cross-entropy
kernels it imported, whether it fell back to torch's Adam), so the answer is the one megatron will act
on; apex's CUDA extensions are looked up by module name. Everything is off without CUDA.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, fields
from typing import Optional

import torch

from megatron_alignpt.model.config import FusionConfig


class FusionUnavailable(RuntimeError):
    """A fusion set to `on` cannot run here; the message says what is missing."""


@dataclass(frozen=True)
class ResolvedFusions:
    """Which fused kernels this run uses."""

    gradient_accumulation: bool = False
    bias_dropout: bool = False
    bias_activation: bool = False
    rope: bool = False
    masked_softmax: bool = False
    cross_entropy: bool = False
    adam: bool = False
    cross_entropy_impl: str = "native"
    """te (Transformer Engine's parallel cross-entropy) or native (megatron's fused one)."""

    def transformer_config_kwargs(self) -> dict:
        return dict(
            gradient_accumulation_fusion=self.gradient_accumulation,
            bias_dropout_fusion=self.bias_dropout,
            bias_activation_fusion=self.bias_activation,
            apply_rope_fusion=self.rope,
            masked_softmax_fusion=self.masked_softmax,
            cross_entropy_loss_fusion=self.cross_entropy,
            cross_entropy_fusion_impl=self.cross_entropy_impl,
            persist_layer_norm=False,
        )


def _extension(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _te_cross_entropy() -> bool:
    from megatron.core.models.common.language_module import language_module

    return getattr(language_module, "te_parallel_cross_entropy", None) is not None


def _te_rope() -> bool:
    from megatron.core.models.common.embeddings import rope_utils

    return getattr(rope_utils, "fused_apply_rotary_pos_emb", None) is not None


def _fused_adam() -> bool:
    import megatron.core.optimizer as mcore_optimizer

    # the class megatron imported as its Adam: torch's AdamW when neither TE nor apex imported
    return getattr(mcore_optimizer, "Adam", torch.optim.AdamW) is not torch.optim.AdamW


def missing_requirement(name: str, layer_impl: str) -> Optional[str]:
    """Why fusion `name` cannot run here with this (resolved) layer implementation, or None if it can."""
    if not torch.cuda.is_available():
        return "fused kernels run on a GPU and this machine has no CUDA"
    if name == "gradient_accumulation" and not _extension("fused_weight_gradient_mlp_cuda"):
        return "needs apex's fused_weight_gradient_mlp_cuda extension (megatron's own linear layers call it)"
    if name == "rope" and not _te_rope():
        return "needs Transformer Engine's fused rotary kernel (megatron found none)"
    if name == "masked_softmax":
        if layer_impl != "local":
            return (f"only layer_impl=local uses megatron's softmax; layer_impl={layer_impl}'s attention "
                    "fuses its own")
        if not _extension("scaled_upper_triang_masked_softmax_cuda"):
            return "needs apex's scaled_upper_triang_masked_softmax_cuda extension"
    if name == "adam" and not _fused_adam():
        return "needs Transformer Engine or apex (megatron fell back to torch's AdamW)"
    return None


def resolve_fusions(fusions: FusionConfig, layer_impl: str, strict: bool = True) -> ResolvedFusions:
    """Resolve every switch for this machine. An `on` that cannot be had raises `FusionUnavailable`
    (strict, before a build) or resolves to off (describing a layout meant for another machine)."""
    chosen = {}
    for f in fields(FusionConfig):
        switch = getattr(fusions, f.name)
        if switch == "off":
            chosen[f.name] = False
            continue
        missing = missing_requirement(f.name, layer_impl)
        if missing is not None and switch == "on" and strict:
            raise FusionUnavailable(f"parallel.fusions.{f.name}=on: {missing}; set it to auto or off")
        chosen[f.name] = missing is None
    impl = "te" if chosen["cross_entropy"] and _te_cross_entropy() else "native"
    return ResolvedFusions(**chosen, cross_entropy_impl=impl)
