"""The one place where megatron-core is adapted to run without CUDA.

megatron-core assumes a GPU in a few spots that matter even for tiny CPU runs:
`torch.cuda.current_device()` when allocating buffers and during dist-checkpointing,
`torch.cuda.synchronize()` in checkpoint save/load, and the CUDA RNG tracker that
tensor-parallel layers fork around weight init and dropout. On a machine without CUDA
we point the first two at the CPU and replace the tracker by one whose `fork` is a null
context (megatron's own inference tracker), so dropout draws from torch's CPU generator.
megatron-core 0.19 also asks for `torch.cuda.current_stream()` in DDP's grad sync (to wait on
CUDA-graph events); on CPU that becomes a stream stand-in whose waits do nothing.
Activation recomputation (`tensor_parallel.checkpoint`) saves and restores the CUDA RNG state
next to the CPU one; on CPU the CUDA state is an empty tensor (restoring it is already a no-op,
megatron defers it to a lazy CUDA call that never runs).

megatron's pipeline schedules (`get_forward_backward_func()`, with and without pipelining)
allocate their token counter with an explicit `device="cuda"`; `schedule_context()` wraps a
schedule call so that factory functions asked for a CUDA device allocate on the CPU instead.
Everything else in the schedules (gloo point-to-point sends between pipeline stages, autograd)
runs unchanged, with one setting: `pipeline_p2p_settings()` makes every stage-to-stage exchange
a plain isend/irecv that completes before the schedule moves on. With gloo, batched
(`batch_isend_irecv`) or overlapped exchanges delivered wrong activations to later micro-batches
of the interleaved schedule in our runs (losses off by ~1e-3 at step 1); plain exchanges reproduce a
single stage's losses exactly (tests/unit/test_parallel_pipeline.py).

Nothing here runs when CUDA is available.
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

_APPLIED = False


class _NullStream:
    """Stands in for `torch.cuda.current_stream()` on CPU: every wait is already satisfied."""

    def wait_event(self, event) -> None:
        pass

    def wait_stream(self, stream) -> None:
        pass

    def synchronize(self) -> None:
        pass


def cuda_available() -> bool:
    return torch.cuda.is_available()


def apply_cpu_shims() -> None:
    """Idempotently install the CPU stand-ins; a no-op on CUDA machines."""
    global _APPLIED
    if _APPLIED or cuda_available():
        return
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    torch.cuda.synchronize = lambda *args, **kwargs: None  # type: ignore[assignment]
    torch.cuda.current_stream = lambda *args, **kwargs: _NullStream()  # type: ignore[assignment]
    torch.cuda.random.get_rng_state = lambda *args, **kwargs: torch.empty(0, dtype=torch.uint8)  # type: ignore[assignment]
    from megatron.core.tensor_parallel import random as mcore_random

    mcore_random.initialize_rng_tracker(inference_rng_tracker=True, force_reset=True)
    _APPLIED = True


class _CudaFactoriesOnCPU(TorchFunctionMode):
    """Tensors requested with `device="cuda"` (or cuda:N) are created on the CPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dev = kwargs.get("device")
        if dev is not None and torch.device(dev).type == "cuda":
            kwargs = {**kwargs, "device": "cpu"}
        return func(*args, **kwargs)


def schedule_context():
    """Context for calling a megatron pipeline schedule: on CPU, redirects its CUDA allocations."""
    if cuda_available():
        return contextlib.nullcontext()
    return _CudaFactoriesOnCPU()


def pipeline_p2p_settings() -> dict:
    """TransformerConfig overrides for pipeline point-to-point traffic on CPU (gloo); none on GPU."""
    if cuda_available():
        return {}
    return {"overlap_p2p_comm": False, "batch_p2p_comm": False}


def seed_everything(seed: int) -> None:
    """Seed torch (and megatron's model-parallel RNG tracker on GPU).

    On GPU, megatron gives each tensor-parallel rank its own stream for dropout in
    sharded regions; on CPU the null tracker makes all ranks share torch's generator.
    """
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cuda_available():
        from megatron.core import tensor_parallel

        tensor_parallel.model_parallel_cuda_manual_seed(seed)
    else:
        apply_cpu_shims()
