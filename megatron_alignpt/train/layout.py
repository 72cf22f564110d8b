"""The resolved parallel/precision layout of a stage, for `--dry-run` and run directories.

`stage_layout` validates every rule that can be checked without launching (model vs layout, and
with a world size: ranks and batch sizes) and returns a JSON-ready description: how ranks are
split, which layers each pipeline rank holds, micro-batches per step, precision, recomputation,
the megatron-core config values these map to, and the model FLOPs per step used for MFU.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Optional

from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.train.config import ScheduleConfig


def _precision(parallel: ParallelConfig) -> str:
    if parallel.precision == "fp32":
        return "fp32 weights, activations and gradients"
    text = "bf16 weights and activations, fp32 master weights, Adam moments and gradient reduction"
    if parallel.fp8:
        recipe = {"delayed": "delayed scaling", "current": "per-tensor current scaling"}[parallel.fp8_recipe]
        fmt = {"hybrid": "E4M3 forward / E5M2 gradients", "e4m3": "E4M3"}[parallel.fp8_format]
        text += f"; FP8 GEMMs in Transformer Engine layers ({fmt}, {recipe})"
    return text


def _recompute(parallel: ParallelConfig) -> str:
    rc = parallel.recompute
    if rc.granularity == "none":
        return "none"
    if rc.granularity == "selective":
        return f"selective: {', '.join(rc.modules)}"
    if rc.method == "uniform":
        return f"full, uniform: every group of {rc.num_layers} layer(s) keeps only its input"
    return f"full, block: the first {rc.num_layers} layer(s) of each model chunk"


def megatron_values(model: ModelConfig, parallel: ParallelConfig) -> dict:
    """The megatron-core settings this layout produces (TransformerConfig, DDP and optimizer)."""
    from megatron_alignpt.model.builder import ddp_config, transformer_config_kwargs

    tc = transformer_config_kwargs(model, parallel, strict=False)
    keys = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "virtual_pipeline_model_parallel_size",
            "context_parallel_size", "sequence_parallel", "bf16", "params_dtype", "fp8", "fp8_recipe",
            "recompute_granularity", "recompute_method", "recompute_num_layers", "recompute_modules",
            "gradient_accumulation_fusion", "bias_dropout_fusion", "bias_activation_fusion", "apply_rope_fusion",
            "masked_softmax_fusion", "cross_entropy_loss_fusion", "cross_entropy_fusion_impl")
    transformer = {k: (str(tc[k]).replace("torch.", "") if k == "params_dtype" else tc[k]) for k in keys if k in tc}
    ddp = ddp_config(parallel)
    return {
        "TransformerConfig": transformer,
        "DistributedDataParallelConfig": {
            "use_distributed_optimizer": ddp.use_distributed_optimizer,
            "overlap_grad_reduce": ddp.overlap_grad_reduce,
            "overlap_param_gather": ddp.overlap_param_gather,
            "grad_reduce_in_fp32": ddp.grad_reduce_in_fp32,
        },
        "OptimizerConfig": {"optimizer": "adam", "bf16": parallel.half_precision,
                            "use_distributed_optimizer": parallel.distributed_optimizer},
    }


def stage_layout(model: ModelConfig, parallel: ParallelConfig, schedule: ScheduleConfig,
                 world_size: Optional[int] = None, vocab_size: Optional[int] = None) -> dict:
    """Validate and describe the layout; with `world_size`, also data parallelism and batch splitting."""
    from megatron_alignpt.train.telemetry import model_flops_per_step

    parallel.check_model(model)
    stages = parallel.pipeline_parallel * parallel.virtual_pipeline
    per_chunk = model.num_layers // stages
    pipeline = []
    for rank in range(parallel.pipeline_parallel):
        chunks = []
        for v in range(parallel.virtual_pipeline):
            first = (v * parallel.pipeline_parallel + rank) * per_chunk
            chunks.append(f"{first}-{first + per_chunk - 1}")
        pipeline.append(", ".join(chunks))
    out: dict = {
        "ranks_per_model_replica": parallel.model_parallel_size,
        "tensor_parallel": parallel.tensor_parallel,
        "context_parallel": parallel.context_parallel,
        "pipeline_parallel": parallel.pipeline_parallel,
        "virtual_pipeline": parallel.virtual_pipeline,
        "sequence_parallel": parallel.sequence_parallel,
        "distributed_optimizer": parallel.distributed_optimizer,
        "distributed_optimizer_checkpoint": parallel.distributed_optimizer_checkpoint if parallel.distributed_optimizer else None,
        "fusions": {f.name: getattr(parallel.fusions, f.name) for f in fields(parallel.fusions)},
        "layers_per_pipeline_rank": model.num_layers // parallel.pipeline_parallel,
        "layers_by_pipeline_rank": pipeline,
        "tokens_per_rank_per_micro_batch": schedule.micro_batch_size * model.seq_length // parallel.context_parallel,
        "precision": _precision(parallel),
        "recompute": _recompute(parallel),
        "tokens_per_step": schedule.global_batch_size * model.seq_length,
        "megatron": megatron_values(model, parallel),
    }
    if vocab_size:
        out["model_flops_per_step"] = model_flops_per_step(model, vocab_size, schedule.global_batch_size)
    if world_size:
        parallel.check_against(model, world_size)
        micro = parallel.check_batch(world_size, schedule.global_batch_size, schedule.micro_batch_size)
        out.update(
            world_size=world_size,
            data_parallel=parallel.data_parallel_size(world_size),
            micro_batches_per_step=micro,
            split=(f"{world_size} ranks = TP {parallel.tensor_parallel} x CP {parallel.context_parallel} x "
                   f"DP {parallel.data_parallel_size(world_size)} x PP {parallel.pipeline_parallel}"),
        )
        if parallel.pipeline_parallel > 1:
            # 1F1B idle fraction (p - 1) / (v * m + p - 1) (Narayanan et al. 2021).
            p, v = parallel.pipeline_parallel, parallel.virtual_pipeline
            out["pipeline_bubble"] = round((p - 1) / (v * micro + p - 1), 4)
    return out
