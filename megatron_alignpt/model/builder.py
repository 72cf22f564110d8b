"""Build megatron-core GPTModels from our configs: one model, or this rank's pipeline chunks.

`transformer_config` is the single translation of `ModelConfig` + `ParallelConfig` into
megatron's `TransformerConfig` (parallel sizes, sequence/context parallel, bf16/FP8, activation
recomputation); `ddp_config` does the same for `DistributedDataParallelConfig`.
`check_runtime` refuses, before anything is built, layouts this machine cannot run
(FP8 without Transformer Engine or on a pre-Hopper GPU, a fused kernel required but missing, ...).
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import torch
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.models.gpt import GPTModel
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_alignpt.cpu_compat import pipeline_p2p_settings
from megatron_alignpt.model.config import FP8_RECIPES, ModelConfig, ParallelConfig
from megatron_alignpt.model.fusions import resolve_fusions
from megatron_alignpt.model.specs import apex_layer_norm_available, block_spec, resolve_layer_impl

VOCAB_MULTIPLE = 128
FP8_MIN_CAPABILITY = (9, 0)
"""FP8 training is supported from Hopper (sm_90) on."""


class LayoutUnavailable(RuntimeError):
    """The configured parallel/precision layout cannot run on this machine; the message says why."""


def padded_vocab_size(vocab_size: int, tensor_parallel: int, multiple: int = VOCAB_MULTIPLE) -> int:
    """Round the vocab up to a multiple of 128, independent of TP, so checkpoints reshard across TP sizes."""
    padded = ((vocab_size + multiple - 1) // multiple) * multiple
    if padded % tensor_parallel:
        raise ValueError(f"padded vocab {padded} is not divisible by tensor_parallel={tensor_parallel}; use a power of two <= {multiple}")
    return padded


def _recompute_kwargs(parallel: ParallelConfig) -> dict:
    rc = parallel.recompute
    if rc.granularity == "none":
        return {}
    if rc.granularity == "selective":
        return {"recompute_granularity": "selective", "recompute_modules": list(rc.modules)}
    return {"recompute_granularity": "full", "recompute_method": rc.method, "recompute_num_layers": rc.num_layers}


def _precision_kwargs(parallel: ParallelConfig) -> dict:
    half = parallel.half_precision
    dtype = torch.bfloat16 if half else torch.float32
    out = {"bf16": half, "params_dtype": dtype, "pipeline_dtype": dtype}
    if parallel.fp8:
        out.update(fp8=parallel.fp8_format, fp8_recipe=FP8_RECIPES[parallel.fp8_recipe])
    return out


def _p2p_kwargs(parallel: ParallelConfig) -> dict:
    out = {}
    if parallel.virtual_pipeline > 1:
        out.update(overlap_p2p_comm=True, batch_p2p_comm=False)
    out.update(pipeline_p2p_settings())
    return out


def _layer_impl_name(model: ModelConfig) -> str:
    """The implementation a build would use here (auto resolved; explicit names as given)."""
    return resolve_layer_impl("auto") if model.layer_impl == "auto" else model.layer_impl


def transformer_config_kwargs(model: ModelConfig, parallel: ParallelConfig, strict: bool = True) -> dict:
    """The TransformerConfig keyword arguments for this model and layout (JSON-friendly but for dtypes).
    Fused kernels are resolved for this machine; strict=False (describing a layout meant for another
    machine) turns a fusion required with `on` but unavailable here off instead of refusing."""
    cuda = torch.cuda.is_available()
    fusions = resolve_fusions(parallel.fusions, _layer_impl_name(model), strict=strict)
    return dict(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        num_attention_heads=model.num_attention_heads,
        ffn_hidden_size=model.ffn_size,
        tensor_model_parallel_size=parallel.tensor_parallel,
        pipeline_model_parallel_size=parallel.pipeline_parallel,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline if parallel.virtual_pipeline > 1 else None,
        context_parallel_size=parallel.context_parallel,
        sequence_parallel=parallel.sequence_parallel,
        normalization="LayerNorm",
        layernorm_epsilon=model.layernorm_epsilon,
        activation_func=torch.nn.functional.gelu,
        gated_linear_unit=False,
        add_bias_linear=True,
        hidden_dropout=model.hidden_dropout,
        attention_dropout=model.attention_dropout,
        init_method_std=model.init_method_std,
        **_precision_kwargs(parallel),
        **_recompute_kwargs(parallel),
        # Pipeline outputs are only needed for their autograd graph once sent on: free their data.
        deallocate_pipeline_outputs=parallel.pipeline_parallel > 1,
        # Interleaved 1F1B: as megatron-LM does, overlap the stage-to-stage sends with compute.
        **_p2p_kwargs(parallel),
        use_cpu_initialization=not cuda,
        **fusions.transformer_config_kwargs(),
    )


def transformer_config(model: ModelConfig, parallel: ParallelConfig) -> TransformerConfig:
    return TransformerConfig(**transformer_config_kwargs(model, parallel))


def ddp_config(parallel: ParallelConfig) -> DistributedDataParallelConfig:
    """Megatron DDP: fp32 gradient buffers, optionally sharded for the distributed optimizer."""
    return DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=parallel.overlap_grad_reduce,
        overlap_param_gather=parallel.overlap_param_gather,
        use_distributed_optimizer=parallel.distributed_optimizer,
    )


def check_runtime(model: ModelConfig, parallel: ParallelConfig) -> None:
    """Refuse layouts this machine cannot run, with what to change. Call before building."""
    parallel.check_model(model)
    cuda = torch.cuda.is_available()
    if parallel.fp8:
        if not cuda or importlib.util.find_spec("transformer_engine") is None:
            raise LayoutUnavailable("parallel.precision=fp8 needs a CUDA GPU with Transformer Engine installed "
                                    "(pip install -e .[gpu], or an NGC PyTorch container); use precision=bf16")
        capability = torch.cuda.get_device_capability()
        if capability < FP8_MIN_CAPABILITY:
            raise LayoutUnavailable(
                f"parallel.precision=fp8 needs a Hopper-or-newer GPU (compute capability >= "
                f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}); {torch.cuda.get_device_name()} has "
                f"{capability[0]}.{capability[1]}: use precision=bf16")
        if parallel.fp8_recipe == "current":
            from transformer_engine.common import recipe as te_recipe

            if not hasattr(te_recipe, "Float8CurrentScaling"):
                raise LayoutUnavailable("parallel.fp8_recipe=current needs Transformer Engine >= 2.2 "
                                        "(Float8CurrentScaling); upgrade it or use fp8_recipe=delayed")
    try:
        impl = resolve_layer_impl(model.layer_impl)
        resolve_fusions(parallel.fusions, impl)
    except RuntimeError as err:
        raise LayoutUnavailable(str(err)) from None
    if (parallel.overlap_grad_reduce or parallel.overlap_param_gather) and not cuda:
        raise LayoutUnavailable("parallel.overlap_grad_reduce / overlap_param_gather overlap NCCL collectives with "
                                "compute (GPU only); set both to false on CPU")
    if parallel.sequence_parallel and impl != "te" and not apex_layer_norm_available():
        raise LayoutUnavailable(
            f"parallel.sequence_parallel with model.layer_impl={impl} needs apex's FusedLayerNorm on a GPU (torch's "
            "LayerNorm has no sequence-parallel path in megatron-core); use layer_impl=te or install apex")


def _pipeline_position(vp_stage: Optional[int]) -> tuple[bool, bool]:
    if not parallel_state.model_parallel_is_initialized():
        return True, True
    return (
        parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
        parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
    )


def build_gpt_model(
    model: ModelConfig, parallel: ParallelConfig, vocab_size: int, vp_stage: Optional[int] = None
) -> GPTModel:
    """This rank's GPTModel (or virtual-pipeline chunk `vp_stage`); call after megatron's parallel state
    is initialised. The first pipeline stage holds the embedding, the last the final norm and output
    layer; megatron numbers each stage's layers from its global offset, so checkpoints keep global keys."""
    check_runtime(model, parallel)
    config = transformer_config(model, parallel)
    pre_process, post_process = _pipeline_position(vp_stage)
    gpt = GPTModel(
        config=config,
        transformer_layer_spec=block_spec(config, model.architecture, model.layer_impl, vp_stage),
        vocab_size=padded_vocab_size(vocab_size, parallel.tensor_parallel),
        max_sequence_length=model.max_positions,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=False,
        position_embedding_type="rope",
        rotary_percent=model.rotary_percent,
        rotary_base=model.rotary_base,
        vp_stage=vp_stage,
    )
    if torch.cuda.is_available():
        gpt = gpt.cuda()
        if parallel.half_precision:
            # As megatron-LM's Float16Module does: modules that ignore params_dtype (torch LayerNorm
            # in the local/sdpa specs without apex) are built in fp32, and CUDA layer_norm rejects
            # fp32 weights with bf16 activations. fp32 master weights live in the optimizer.
            gpt = gpt.bfloat16()
    return gpt


def build_model_chunks(model: ModelConfig, parallel: ParallelConfig, vocab_size: int) -> list[GPTModel]:
    """This rank's model chunks: one per virtual pipeline stage (one in all when virtual_pipeline=1)."""
    if parallel.virtual_pipeline == 1:
        return [build_gpt_model(model, parallel, vocab_size)]
    return [build_gpt_model(model, parallel, vocab_size, vp_stage=i) for i in range(parallel.virtual_pipeline)]
