"""Layer specs by implementation: Transformer Engine, megatron-core local, or local with SDPA.

Which modules a model is built from is decided here from the device, never from what happens to
be installed. megatron-core picks its default LayerNorm when it is imported (TE's when
transformer_engine imports, else apex's, else torch's) and uses it for the final LayerNorm of a
block built from a layer spec; on a CPU machine with TE installed (every NGC image with CUDA
hidden) that TE module fails at the first forward. So every spec here names all of its norms,
the final one included (`block_spec`): TE's with layer_impl=te, apex's fused LayerNorm on GPU
when apex is present, torch's otherwise (always on CPU).
"""
from __future__ import annotations

import copy
import importlib.util
from typing import Optional

import torch
from megatron.core.transformer.spec_utils import ModuleSpec


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def transformer_engine_available() -> bool:
    """TE can run here: it is installed and there is a GPU for its kernels."""
    return torch.cuda.is_available() and _installed("transformer_engine")


def apex_layer_norm_available() -> bool:
    """apex's fused LayerNorm can run here (GPU only, like every apex kernel)."""
    return torch.cuda.is_available() and _installed("apex")


def resolve_layer_impl(requested: str) -> str:
    """Turn 'auto' into a concrete implementation for this machine; reject impossible requests."""
    if requested == "auto":
        return "te" if transformer_engine_available() else "sdpa"
    if requested == "te" and not transformer_engine_available():
        raise RuntimeError("model.layer_impl=te needs CUDA and transformer_engine; use sdpa or local")
    if requested == "local" and not torch.cuda.is_available():
        raise RuntimeError("model.layer_impl=local uses a CUDA-only attention kernel; use sdpa on CPU")
    return requested


def norm_module(impl: str) -> type:
    """The LayerNorm class for a resolved implementation (every norm of the model uses it)."""
    if impl == "te":
        from megatron.core.extensions.transformer_engine import TENorm

        return TENorm
    if apex_layer_norm_available():
        from megatron.core.fusions.fused_layer_norm import FusedLayerNorm

        return FusedLayerNorm
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    return WrappedTorchNorm


def gpt_layer_spec(impl: str) -> ModuleSpec:
    """The per-layer ModuleSpec for a resolved implementation (te, local or sdpa)."""
    from megatron.core.models.gpt import gpt_layer_specs

    if impl == "te":
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    spec = copy.deepcopy(gpt_layer_specs.get_gpt_layer_local_spec())
    norm = norm_module(impl)
    spec.submodules.input_layernorm = norm
    spec.submodules.pre_mlp_layernorm = norm
    if impl == "sdpa":
        from megatron_alignpt.model.sdpa_attention import SDPACoreAttention

        spec.submodules.self_attention.submodules.core_attention = SDPACoreAttention
    return spec


def layer_spec(architecture: str, layer_impl: str) -> ModuleSpec:
    """The layer spec for a model architecture: megatron's sequential-residual GPT layer, or the
    GPT-NeoX/Pythia parallel-residual layer built from the same submodules."""
    if architecture not in ("gpt", "pythia"):
        raise ValueError(f"unknown architecture {architecture!r}; use gpt or pythia")
    spec = gpt_layer_spec(resolve_layer_impl(layer_impl))
    if architecture == "pythia":
        from megatron_alignpt.model.pythia_layer import parallel_residual_spec

        return parallel_residual_spec(spec)
    return spec


def block_spec(config, architecture: str, layer_impl: str, vp_stage: Optional[int] = None):
    """This pipeline stage's decoder block: its layers' specs and the final LayerNorm, both chosen for
    this device (megatron's `TransformerBlockSubmodules`, which `GPTModel` takes as its layer spec)."""
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build

    layer = layer_spec(architecture, layer_impl)
    count = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[layer] * count,
                                      layer_norm=norm_module(resolve_layer_impl(layer_impl)))
