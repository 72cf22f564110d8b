"""Optimizer and LR schedule for a stage: megatron-core's own optimizer on GPU and CPU alike.

megatron's optimizer keeps fp32 master weights for bf16, clips gradients TP-aware and, with
`parallel.distributed_optimizer`, shards master weights and Adam moments over the data-parallel
ranks (its DistributedOptimizer, over NCCL on GPU and gloo on CPU). It is written for CUDA tensors,
so on CPU it runs behind `cpu_compat.run_on_cpu` (see there). The Adam implementation is chosen
when the optimizer is built: Transformer Engine's or apex's FusedAdam where megatron found one and
`parallel.fusions.adam` allows it, otherwise torch's AdamW (always on CPU). Both drive megatron's
OptimizerParamScheduler, and both take the list of this rank's (DDP-wrapped) model chunks.
"""
from __future__ import annotations

import torch
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from megatron_alignpt.cpu_compat import cuda_code_on_cpu, run_on_cpu
from megatron_alignpt.model.config import ParallelConfig
from megatron_alignpt.train.config import OptimizerConfig


def _chunks(model) -> list[torch.nn.Module]:
    return list(model) if isinstance(model, (list, tuple)) else [model]


_IMPORT_TIME_FLAGS: dict = {}


def _select_adam(fused: bool) -> None:
    """Make megatron build (and later save and load) this process's optimizer with the chosen Adam.

    megatron decides from module flags set when it was imported (TE/apex FusedAdam if either imported):
    `megatron.core.optimizer` picks the class when building, and the distributed optimizer reads its own
    flags again on every save and load to find Adam's step count (torch keeps one per parameter, the
    fused ones one per group). The flags are therefore set to match the optimizer being built and left
    so while it lives; a process trains one stage, hence one optimizer, at a time."""
    import megatron.core.optimizer as mcore_optimizer
    from megatron.core.optimizer import distrib_optimizer as dist

    if not _IMPORT_TIME_FLAGS:
        _IMPORT_TIME_FLAGS.update(torch_adam=mcore_optimizer.USING_PYTORCH_OPTIMIZER, apex_or_te=dist.HAVE_APEX_OR_TE,
                                  te_adam=dist.USING_TE_OPTIMIZER, apex_adam=dist.USING_APEX_OPTIMIZER)
    imported = _IMPORT_TIME_FLAGS
    mcore_optimizer.USING_PYTORCH_OPTIMIZER = imported["torch_adam"] or not fused
    dist.HAVE_APEX_OR_TE = imported["apex_or_te"] and fused
    dist.USING_TE_OPTIMIZER = imported["te_adam"] and fused
    dist.USING_APEX_OPTIMIZER = imported["apex_adam"] and fused


def _torch_optimizers(optimizer) -> list[torch.optim.Optimizer]:
    inner = getattr(optimizer, "chained_optimizers", [optimizer])
    return [o.optimizer for o in inner if o.optimizer is not None]


def _init_torch_adam_state(optimizer) -> None:
    """Give every parameter torch AdamW's state now (step 0, zero moments) instead of at the first step:
    megatron's distributed optimizer reads the step count from it when a checkpoint is loaded into a
    fresh optimizer. The first step then updates exactly as from a lazily created state."""
    for opt in _torch_optimizers(optimizer):
        for group in opt.param_groups:
            for p in group["params"]:
                if not opt.state[p]:
                    opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                    "exp_avg_sq": torch.zeros_like(p)}


def _load_distributed_state_exactly(optimizer) -> None:
    """Let megatron's distributed optimizer load its checkpoints exactly, whatever the Adam and dtype.

    Its per-parameter copy (`_set_main_param_and_optimizer_states`) is replaced by one that
    - runs without autograd: for fp32 parameters the main parameter is a view of the model's, which
      the dp_reshardable loader writes with autograd on ("a view of a leaf Variable ... in-place");
    - keeps torch AdamW's per-parameter step. Fused Adams keep one step per group; megatron's loading
      code, written for them, restores torch's step as one tensor shared by every parameter (torch's
      in-place `step += 1` then advances it once per parameter per step and the bias correction
      drifts); then it copies each parameter's states from the checkpoint's per-parameter tensors, which
      for fully_reshardable hold no "step" at all and for dp_reshardable a stale one. The states are
      copied with the restored step set aside, which is put back as each parameter's own tensor."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    for dist_opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        if not isinstance(dist_opt, DistributedOptimizer):
            continue
        copy_states = dist_opt._set_main_param_and_optimizer_states

        @torch.no_grad()
        def set_states(model_param, tensors, dist_opt=dist_opt, copy_states=copy_states):
            group_index, group_order = dist_opt.model_param_group_index_map[model_param]
            state = dist_opt.optimizer.state[dist_opt.optimizer.param_groups[group_index]["params"][group_order]]
            step = state.pop("step", None)
            try:
                copy_states(model_param, {k: v for k, v in tensors.items() if k != "step"})
            finally:
                if step is not None:
                    state["step"] = step.detach().clone()

        dist_opt._set_main_param_and_optimizer_states = set_states


def megatron_optimizer_config(cfg: OptimizerConfig, parallel: ParallelConfig):
    from megatron.core.optimizer import OptimizerConfig as McoreOptimizerConfig

    bf16 = parallel.half_precision
    return McoreOptimizerConfig(
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


def build_optimizer(model_chunks, cfg: OptimizerConfig, parallel: ParallelConfig):
    """megatron's optimizer over this rank's DDP-wrapped model chunks (a list, or one module). Biases
    and norm weights get no weight decay (megatron's parameter groups, as in GPT-NeoX)."""
    from megatron.core.optimizer import get_megatron_optimizer

    from megatron_alignpt.model.fusions import missing_requirement

    cuda = torch.cuda.is_available()
    if not cuda and parallel.half_precision:
        raise RuntimeError(f"parallel.precision={parallel.precision} trains bf16 weights, which this project runs "
                           "on GPUs only; use precision=fp32 on CPU")
    fused = parallel.fusions.adam != "off" and missing_requirement("adam", "") is None
    _select_adam(fused)
    with cuda_code_on_cpu():
        optimizer = get_megatron_optimizer(megatron_optimizer_config(cfg, parallel), _chunks(model_chunks))
    if not fused:
        _init_torch_adam_state(optimizer)
    _load_distributed_state_exactly(optimizer)
    return run_on_cpu(optimizer)


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
