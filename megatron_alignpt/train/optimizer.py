"""Optimizer and LR schedule for a stage.

On GPU this is megatron-core's own optimizer (fp32 master weights for bf16, TP-aware grad
clipping, sharded optimizer state). Its constructor hard-codes CUDA tensors, so on CPU we use
`CPUAdamW`: torch AdamW over the DDP-reduced `main_grad`s with the same step/clip/state-dict
interface. Both drive megatron's OptimizerParamScheduler. Both take the list of this rank's
(DDP-wrapped) model chunks: one per virtual pipeline stage.
"""
from __future__ import annotations

import math

import torch
from megatron.core import parallel_state
from megatron.core.dist_checkpointing.optimizer import (
    get_param_id_to_sharded_param_map,
    optim_state_to_sharding_state,
)
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

from megatron_alignpt.model.config import ParallelConfig
from megatron_alignpt.train.config import OptimizerConfig


def _no_decay(name: str, param: torch.nn.Parameter) -> bool:
    return param.ndim == 1 or name.endswith(".bias")


def _chunks(model) -> list[torch.nn.Module]:
    return list(model) if isinstance(model, (list, tuple)) else [model]


def param_groups(model) -> list[dict]:
    """Biases and norm weights get no weight decay (wd_mult=0), as in megatron and GPT-NeoX."""
    decay, no_decay = [], []
    for chunk in _chunks(model):
        for name, param in chunk.named_parameters():
            if param.requires_grad:
                (no_decay if _no_decay(name, param) else decay).append(param)
    return [
        {"params": decay, "wd_mult": 1.0, "lr_mult": 1.0},
        {"params": no_decay, "wd_mult": 0.0, "lr_mult": 1.0},
    ]


class CPUAdamW:
    """AdamW over megatron DDP `main_grad`s, with global-norm clipping across model-parallel ranks."""

    def __init__(self, model, cfg: OptimizerConfig):
        self.model = _chunks(model)
        self.clip_grad = cfg.clip_grad
        self.optimizer = torch.optim.AdamW(
            param_groups(model),
            lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_eps,
            weight_decay=cfg.weight_decay,
        )

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def zero_grad(self) -> None:
        for p in self._params():
            p.grad = None

    def _grad_norm(self) -> float:
        sq = torch.zeros(1, dtype=torch.float64)
        for p in self._params():
            if p.grad is not None and param_is_not_tensor_parallel_duplicate(p):
                sq += p.grad.detach().double().pow(2).sum()
        torch.distributed.all_reduce(sq, group=parallel_state.get_model_parallel_group())
        return math.sqrt(sq.item())

    @torch.no_grad()
    def step(self) -> tuple[bool, float, None]:
        for p in self._params():
            p.grad = p.main_grad.to(p.dtype) if getattr(p, "main_grad", None) is not None else p.grad
        norm = self._grad_norm()
        if not math.isfinite(norm):
            return False, norm, None
        if self.clip_grad > 0 and norm > self.clip_grad:
            scale = self.clip_grad / (norm + 1e-6)
            for p in self._params():
                if p.grad is not None:
                    p.grad.mul_(scale)
        self.optimizer.step()
        return True, norm, None

    def _init_state(self) -> None:
        for p in self._params():
            if not self.optimizer.state[p]:
                self.optimizer.state[p] = {
                    "step": torch.tensor(0.0),
                    "exp_avg": torch.zeros_like(p),
                    "exp_avg_sq": torch.zeros_like(p),
                }

    def sharded_state_dict(self, model_sharded_state_dict: dict, is_loading: bool = False) -> dict:
        """Adam moments sharded exactly like their parameters, so they reshard on load."""
        self._init_state()
        state = self.optimizer.state_dict()
        # Every parameter steps together, so one replicated step count replaces the per-param scalars.
        steps = {float(s["step"]) for s in state["state"].values()}
        id_map = get_param_id_to_sharded_param_map(model_sharded_state_dict, self._params())
        optim_state_to_sharding_state(state, id_map, exclude_keys=("step",))
        state["adam_step"] = max(steps, default=0.0)
        return state

    def load_state_dict(self, state: dict) -> None:
        step = float(state.pop("adam_step"))
        for param_state in state["state"].values():
            param_state["step"] = torch.tensor(step)
        self.optimizer.load_state_dict(state)


def build_optimizer(model_chunks, cfg: OptimizerConfig, parallel: ParallelConfig):
    """The optimizer over this rank's DDP-wrapped model chunks (a list, or one module)."""
    chunks = _chunks(model_chunks)
    if not torch.cuda.is_available():
        if parallel.half_precision:
            raise RuntimeError(f"parallel.precision={parallel.precision} trains with megatron's mixed-precision "
                               "optimizer (fp32 master weights), which needs CUDA; use precision=fp32 on CPU")
        return CPUAdamW(chunks, cfg)
    from megatron.core.optimizer import OptimizerConfig as McoreOptimizerConfig
    from megatron.core.optimizer import get_megatron_optimizer

    bf16 = parallel.half_precision
    mcfg = McoreOptimizerConfig(
        optimizer="adam",
        lr=cfg.lr,
        min_lr=cfg.min_lr,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_eps=cfg.adam_eps,
        clip_grad=cfg.clip_grad,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        use_distributed_optimizer=parallel.distributed_optimizer,
        overlap_param_gather=parallel.overlap_param_gather,
    )
    return get_megatron_optimizer(mcfg, chunks)


def build_scheduler(optimizer, cfg: OptimizerConfig, train_iters: int) -> OptimizerParamScheduler:
    warmup = int(round(cfg.warmup_fraction * train_iters))
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=cfg.lr,
        min_lr=cfg.min_lr,
        lr_warmup_steps=warmup,
        lr_decay_steps=train_iters,
        lr_decay_style=cfg.decay_style,
        start_wd=cfg.weight_decay,
        end_wd=cfg.weight_decay,
        wd_incr_steps=train_iters,
        wd_incr_style="constant",
    )
