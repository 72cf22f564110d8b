"""Process-group and megatron parallel-state setup for one run (CPU gloo or GPU NCCL)."""
from __future__ import annotations

import datetime
import os
import socket

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from megatron_alignpt.cpu_compat import apply_cpu_shims, cuda_available, seed_everything


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_process_group() -> None:
    """Join the launcher's process group (torchrun/srun env vars), or make a 1-process group.

    A process on its own gets an in-memory store: no port to collide with other runs on the machine,
    and no launcher variables written to os.environ for its child processes to inherit by mistake."""
    if dist.is_initialized():
        return
    backend = "nccl" if cuda_available() else "gloo"
    if cuda_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = datetime.timedelta(minutes=30)
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend=backend, timeout=timeout)
    else:
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)


def init_parallel(
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    seed: int = 1234,
    virtual_pipeline: int = 1,
    context_parallel: int = 1,
) -> None:
    """Initialise torch.distributed and megatron's model-parallel groups, then seed.

    A process runs many stages and evaluations: the groups of an unchanged layout are kept, and those of a
    changed one are destroyed before new ones are made (megatron's `destroy_model_parallel` only forgets its
    groups, and every gloo group keeps its transport threads alive: ~50 threads per layout otherwise)."""
    global _LAYOUT
    apply_cpu_shims()
    init_process_group()
    layout = (tensor_parallel, pipeline_parallel, virtual_pipeline, context_parallel)
    if parallel_state.model_parallel_is_initialized():
        if layout == _LAYOUT:
            seed_everything(seed)
            return
        _destroy_model_parallel_groups()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tensor_parallel,
        pipeline_model_parallel_size=pipeline_parallel,
        virtual_pipeline_model_parallel_size=virtual_pipeline if virtual_pipeline > 1 else None,
        context_parallel_size=context_parallel,
    )
    _LAYOUT = layout
    seed_everything(seed)


_LAYOUT: tuple | None = None
"""The (TP, PP, VP, CP) sizes megatron's current groups were made for, by `init_parallel`."""


def _destroy_model_parallel_groups() -> None:
    """megatron's groups forgotten and every process group but the default one destroyed."""
    global _LAYOUT
    from torch.distributed import distributed_c10d

    parallel_state.destroy_model_parallel()
    world = distributed_c10d.GroupMember.WORLD
    for group in list(distributed_c10d._world.pg_map):
        if group is not world and group is not None:
            dist.destroy_process_group(group)
    _LAYOUT = None


def init_layout(parallel, seed: int = 1234) -> None:
    """`init_parallel` for a `ParallelConfig`."""
    init_parallel(parallel.tensor_parallel, parallel.pipeline_parallel, seed,
                  virtual_pipeline=parallel.virtual_pipeline, context_parallel=parallel.context_parallel)


def shutdown() -> None:
    global _LAYOUT
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    _LAYOUT = None
    if dist.is_initialized():
        dist.destroy_process_group()


def is_rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if cuda_available() else torch.device("cpu")


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
