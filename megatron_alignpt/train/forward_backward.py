"""One optimizer step's forward and backward passes over all micro-batches, through megatron's schedules.

`get_forward_backward_func()` picks megatron-core's schedule for the layout: no pipelining (PP=1),
1F1B (PP>1) or interleaved 1F1B (PP>1 with virtual stages, one data iterator per model chunk).
The same schedules run on CPU (gloo point-to-point between stages) inside
`cpu_compat.cuda_code_on_cpu()`. Contract: forward_step_func(data_iterator, model) returns
(output, loss_func); on the last pipeline stage loss_func(output) returns (loss, log_dict) and the
schedule divides the loss by the number of micro-batches (and multiplies by the context-parallel
size) before backward; after the last backward it calls `config.finalize_model_grads_func`
(data-parallel gradient reduction, sequence-parallel LayerNorm gradients, pipeline embedding sync).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from megatron.core import parallel_state

from megatron_alignpt.cpu_compat import cuda_code_on_cpu


def forward_backward(
    forward_step_func: Callable,
    micro_batches: Sequence[dict],
    model_chunks: list,
    seq_length: int,
    micro_batch_size: int,
    forward_only: bool = False,
) -> list[dict]:
    """Run every micro-batch through the model chunks; returns the last stage's per-micro-batch logs
    (an empty list on other pipeline stages)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    # Every chunk reads the same micro-batches in order (a chunk that is neither first nor last uses
    # none of the tensors but still advances its iterator once per micro-batch).
    iterators = [iter(micro_batches) for _ in model_chunks]
    with cuda_code_on_cpu():
        return get_forward_backward_func()(
            forward_step_func=forward_step_func,
            data_iterator=iterators if len(model_chunks) > 1 else iterators[0],
            model=list(model_chunks),
            num_microbatches=len(micro_batches),
            seq_length=seq_length,
            micro_batch_size=micro_batch_size,
            forward_only=forward_only,
        )


def _mean_over_data_parallel(logs: list[dict]) -> dict[str, float]:
    keys = sorted(logs[0])
    values = torch.tensor([[float(log[k]) for k in keys] for log in logs], dtype=torch.float64).mean(0)
    if torch.distributed.is_initialized():
        group = parallel_state.get_data_parallel_group(with_context_parallel=True)
        values = values.to("cuda" if torch.cuda.is_available() else "cpu")
        torch.distributed.all_reduce(values, group=group)
        values /= torch.distributed.get_world_size(group)
    return dict(zip(keys, values.tolist()))


def mean_logs(logs: list[dict]) -> dict[str, float]:
    """Each logged scalar averaged over micro-batches and data(-and-context)-parallel ranks, on every rank.

    Only the last pipeline stage computes losses; it sends the averages to the other stages so that
    every rank (rank 0 writes the logs) holds the same metrics.
    """
    pipelined = (
        torch.distributed.is_initialized()
        and parallel_state.model_parallel_is_initialized()
        and parallel_state.get_pipeline_model_parallel_world_size() > 1
    )
    if not pipelined:
        return _mean_over_data_parallel(logs) if logs else {}
    last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    payload = [_mean_over_data_parallel(logs) if last and logs else None]
    torch.distributed.broadcast_object_list(
        payload,
        src=parallel_state.get_pipeline_model_parallel_last_rank(),
        group=parallel_state.get_pipeline_model_parallel_group(),
    )
    return payload[0] or {}
