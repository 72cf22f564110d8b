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

megatron's pipeline schedules (`get_forward_backward_func()`, with and without pipelining) and its
optimizers (the distributed optimizer included) are written for CUDA tensors: they allocate with an
explicit `device="cuda"` and accept parameters only when `param.type()` names a CUDA tensor type.
`cuda_code_on_cpu()` is a context in which factory functions asked for a CUDA device allocate on the
CPU, `.cuda()` keeps a tensor on the CPU, and a CPU tensor's `.type()` answers with its CUDA twin's name (`torch.cuda.FloatTensor`), so
those type checks pass; `run_on_cpu(obj)` wraps an object (megatron's optimizer) so that every method
call runs in that context. Outside it nothing changes. megatron picks its fused multi-tensor kernels
(gradient norm and scaling) from Transformer Engine or apex when they import; `apply_cpu_shims` points
them back at megatron's own torch implementations, since those kernels cannot run on CPU tensors.
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
import functools

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
    use_local_multi_tensor_kernels()
    _APPLIED = True


class _CudaCodeOnCPU(TorchFunctionMode):
    """Tensors requested with `device="cuda"` (or cuda:N) are created on the CPU, `t.cuda()` leaves a CPU
    tensor where it is, and `t.type()` of a CPU tensor names the matching CUDA type (what megatron's
    optimizers check their parameters against)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name if args[0].is_cuda else name.replace("torch.", "torch.cuda.", 1)
        if func is torch.Tensor.cuda:
            return args[0]
        dev = kwargs.get("device")
        if dev is not None and torch.device(dev).type == "cuda":
            kwargs = {**kwargs, "device": "cpu"}
        return func(*args, **kwargs)


def cuda_code_on_cpu():
    """Context for calling megatron code written for CUDA tensors (schedules, optimizers); a no-op on GPU."""
    if cuda_available():
        return contextlib.nullcontext()
    return _CudaCodeOnCPU()


class _OnCPU:
    """Forwards attribute access to `target`; its methods run inside `cuda_code_on_cpu()`."""

    def __init__(self, target):
        object.__setattr__(self, "_target", target)

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with _CudaCodeOnCPU():
                return attr(*args, **kwargs)

        return call

    def __setattr__(self, name, value):
        setattr(self._target, name, value)


def run_on_cpu(obj):
    """`obj` itself on GPU; on CPU, a stand-in whose method calls run inside `cuda_code_on_cpu()`."""
    return obj if cuda_available() else _OnCPU(obj)


def use_local_multi_tensor_kernels() -> None:
    """Point megatron's gradient-norm and scaling helpers at its torch implementations (CPU-safe)."""
    from megatron.core import utils
    from megatron.core.optimizer import clip_grads, optimizer

    local = {"multi_tensor_applier": utils.local_multi_tensor_applier,
             "l2_norm_impl": utils.local_multi_tensor_l2_norm,
             "multi_tensor_scale_impl": utils.local_multi_tensor_scale}
    for module in (clip_grads, optimizer):
        for name, impl in local.items():
            if hasattr(module, name):
                setattr(module, name, impl)
    if getattr(clip_grads, "multi_tensor_scale_tensor_impl", None) is not None:  # 0.19: TE-only variant
        clip_grads.multi_tensor_scale_tensor_impl = None


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
