"""Run one training stage: build, (re)load, step, log, checkpoint.

The same loop serves pretraining, midtraining/CPT (a new blend, a refreshed LR and possibly a
longer sequence, from `init_from`), SFT and DPO; the task object supplies the dataset and the
forward step. The parallel layout (`cfg.parallel`) is validated against the model, the world size
and the batch sizes before anything is built. Each rank builds only its pipeline stage(s): one
model chunk, or one per virtual stage, each wrapped in megatron DDP; every step runs through
megatron's `get_forward_backward_func()` schedule.
Resuming after a crash restores model, optimizer, LR schedule and the number of samples
consumed, so the continued run sees the same batches and learning rates it would have seen.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from megatron.core.distributed import DistributedDataParallel, finalize_model_grads

from data_prep.atomic import atomic_write_text, remove_stale_temps
from megatron_alignpt.config_base import to_dict
from megatron_alignpt.data.loader import GlobalBatchLoader
from megatron_alignpt.data.tokenizer import TextTokenizer
from megatron_alignpt.launch.preemption import PreemptionWatch
from megatron_alignpt.model.builder import build_gpt_model, build_model_chunks, ddp_config, padded_vocab_size
from megatron_alignpt.model.config import ParallelConfig
from megatron_alignpt.provenance import write_provenance
from megatron_alignpt.runtime import init_layout, is_rank0
from megatron_alignpt.train import checkpoint as ckpt
from megatron_alignpt.train.checkpoint_integrity import resume_checkpoint
from megatron_alignpt.train.config import StageConfig
from megatron_alignpt.train.run_dir import checkpoint_root, metrics_file
from megatron_alignpt.train.forward_backward import forward_backward, mean_logs
from megatron_alignpt.train.optimizer import build_optimizer, build_scheduler
from megatron_alignpt.train.telemetry import StepTimer, Telemetry



@dataclass
class StageResult:
    checkpoint: Path
    iteration: int
    last_metrics: dict


def build_task(cfg: StageConfig, tokenizer: TextTokenizer, model_builder):
    if cfg.is_lm:
        from megatron_alignpt.train.lm_task import LMTask

        return LMTask(cfg.data, tokenizer, cfg.model.seq_length, cfg.schedule.seed, cfg.output_dir / "data_cache")
    if cfg.kind == "sft":
        from megatron_alignpt.posttrain.sft import SFTTask

        return SFTTask(cfg.data, tokenizer, cfg.model.seq_length, cfg.schedule.seed, cfg.sft)
    from megatron_alignpt.posttrain.dpo import DPOTask

    # The cached reference log-probabilities live with the stage, so a resume reuses them and the run
    # directory keeps everything it was trained from.
    return DPOTask(cfg.data, tokenizer, cfg.model.seq_length, cfg.schedule.seed, cfg.dpo, model_builder, cfg.init_from,
                   cache_dir=Path(cfg.output_dir) / "reference_logps")


def wrap_ddp(model, parallel: Optional[ParallelConfig] = None):
    """Wrap a model (or a list of chunks, returning a list) in megatron DDP and point the schedule at
    megatron's grad finalisation. As megatron-LM does, only the first chunk buckets its gradients, and
    with overlapped reduction the schedule drives each chunk's no_sync / start_grad_sync."""
    parallel = parallel or ParallelConfig()
    chunks = list(model) if isinstance(model, (list, tuple)) else [model]
    ddp_cfg = ddp_config(parallel)
    wrapped = [
        DistributedDataParallel(chunk.config, ddp_cfg, chunk, disable_bucketing=i > 0) for i, chunk in enumerate(chunks)
    ]
    config = chunks[0].config
    config.finalize_model_grads_func = finalize_model_grads
    if parallel.overlap_grad_reduce:
        config.no_sync_func = [w.no_sync for w in wrapped] if len(wrapped) > 1 else wrapped[0].no_sync
        config.grad_sync_func = [w.start_grad_sync for w in wrapped] if len(wrapped) > 1 else wrapped[0].start_grad_sync
    # With overlap_param_gather, DDP's forward pre-hooks gather each bucket's updated parameters just
    # before the next forward uses them (see `_save` for checkpoints).
    return wrapped if isinstance(model, (list, tuple)) else wrapped[0]


def _truncate_metrics(path: Path, iteration: int) -> None:
    """After a resume, drop log lines from steps that will be redone."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["iteration"] <= iteration]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def run_stage(cfg: StageConfig, stop_after: Optional[int] = None) -> StageResult:
    """Train one stage to `schedule.train_iters` (or stop early after `stop_after` steps this call).

    SIGTERM / SIGUSR1 (or `$ALIGNPT_STOP_FILE` appearing) make it save a checkpoint after the current
    step and raise `Preempted` (exit status 75) so that a requeued job resumes from there.
    """
    with PreemptionWatch() as preemption:
        return _run_stage(cfg, stop_after, preemption)


def validate_launch(cfg: StageConfig, world_size: int) -> int:
    """Every layout rule for this stage on `world_size` ranks; returns the micro-batches per step."""
    cfg.parallel.check_against(cfg.model, world_size)
    return cfg.parallel.check_batch(world_size, cfg.schedule.global_batch_size, cfg.schedule.micro_batch_size)


def _run_stage(cfg: StageConfig, stop_after: Optional[int], preemption: PreemptionWatch) -> StageResult:
    init_layout(cfg.parallel, cfg.schedule.seed)
    world_size = torch.distributed.get_world_size()
    validate_launch(cfg, world_size)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = TextTokenizer(cfg.tokenizer)
    if is_rank0():
        remove_stale_temps(cfg.output_dir)  # of a killed run; checkpoint saves are cleaned by resume_checkpoint
        write_provenance(cfg.output_dir, to_dict(cfg), [cfg.data, cfg.tokenizer])

    def model_builder():
        return build_gpt_model(cfg.model, cfg.parallel, tokenizer.vocab_size)

    chunks = build_model_chunks(cfg.model, cfg.parallel, tokenizer.vocab_size)
    task = build_task(cfg, tokenizer, model_builder)
    ddp = wrap_ddp(chunks, cfg.parallel)
    optimizer = build_optimizer(ddp, cfg.optimizer, cfg.parallel)
    scheduler = build_scheduler(optimizer, cfg.optimizer, cfg.schedule.train_iters)

    root = checkpoint_root(cfg.output_dir)
    state = ckpt.TrainState()
    resume_from = resume_checkpoint(root)  # the newest complete one, saying so if not the latest
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from, chunks, optimizer, scheduler, cfg.parallel)
        if is_rank0():
            print(f"[{cfg.name}] resumed from {resume_from} at iteration {state.iteration}", flush=True)
    elif cfg.init_from is not None:
        ckpt.load_weights(ckpt.resolve_checkpoint(cfg.init_from), chunks)
    if is_rank0():
        _truncate_metrics(metrics_file(cfg.output_dir), state.iteration)

    sched = cfg.schedule
    dataset = task.build_dataset(sched.train_iters * sched.global_batch_size)
    loader = GlobalBatchLoader(dataset, sched.global_batch_size, sched.micro_batch_size, state.consumed_samples, task.collate)
    telemetry = Telemetry(
        name=cfg.name, output_dir=cfg.output_dir, metrics_file=metrics_file(cfg.output_dir), telemetry_cfg=cfg.telemetry,
        model=cfg.model, vocab_size=padded_vocab_size(tokenizer.vocab_size, cfg.parallel.tensor_parallel),
        precision=cfg.parallel.precision, sequences_per_step=sched.global_batch_size * task.tokens_per_sample() // cfg.model.seq_length,
        tokens_per_step=sched.global_batch_size * task.tokens_per_sample(), world_size=world_size,
        total_iters=sched.train_iters, log_interval=sched.log_interval, resume_iteration=state.iteration,
        run_config=to_dict(cfg), write=is_rank0(),
    )
    steps_this_call = 0
    try:
        while state.iteration < sched.train_iters:
            with StepTimer() as timer:
                metrics = train_step(ddp, optimizer, scheduler, task, loader, cfg)
            state.iteration += 1
            state.consumed_samples = loader.consumed_samples
            steps_this_call += 1
            telemetry.log(state.iteration, metrics, timer.seconds)
            done = state.iteration == sched.train_iters
            stopping = not done and preemption.requested()  # all ranks agree (one all-reduce)
            if done or stopping or (sched.save_interval and state.iteration % sched.save_interval == 0):
                _save(root, ddp, chunks, optimizer, scheduler, state, cfg)
            if stopping:
                preemption.stop(cfg.name, state.iteration, ckpt.latest_checkpoint(root))
            if stop_after is not None and steps_this_call >= stop_after:
                break
    finally:
        telemetry.close()
    final = ckpt.latest_checkpoint(root)
    return StageResult(checkpoint=final, iteration=state.iteration, last_metrics=telemetry.last)


def _save(root: Path, ddp: list, chunks: list, optimizer, scheduler, state, cfg: StageConfig) -> None:
    """Checkpoint; with overlapped parameter gathering, first finish gathering the parameters the last
    optimizer step updated (as megatron-LM does), then re-arm the gather hooks."""
    overlapped = cfg.parallel.distributed_optimizer and cfg.parallel.overlap_param_gather
    if overlapped:
        for chunk in ddp:
            chunk.disable_forward_pre_hook(param_sync=True)
    ckpt.save_checkpoint(root, chunks, optimizer, scheduler, state, cfg.model, cfg.tokenizer, cfg.parallel)
    if overlapped:
        for chunk in ddp:
            chunk.enable_forward_pre_hook()


def train_step(ddp, optimizer, scheduler, task, loader: GlobalBatchLoader, cfg: StageConfig) -> dict:
    """One optimizer step over a global batch; `ddp` is one DDP module or this rank's list of chunks."""
    chunks = list(ddp) if isinstance(ddp, (list, tuple)) else [ddp]
    for chunk in chunks:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    micro = loader.next_global_batch()
    logs = forward_backward(task.forward_step, micro, chunks, cfg.model.seq_length, cfg.schedule.micro_batch_size)
    lr = optimizer.param_groups[0]["lr"]  # the rate this step uses; the scheduler then moves it
    ok, grad_norm, _ = optimizer.step()
    if not ok:
        raise FloatingPointError(f"[{cfg.name}] non-finite gradient norm ({grad_norm}); lower optimizer.lr")
    scheduler.step(increment=1)
    metrics = mean_logs(logs)
    metrics.update(lr=lr, grad_norm=float(grad_norm))
    return metrics
