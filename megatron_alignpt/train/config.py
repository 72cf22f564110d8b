"""Typed configs for one training stage (pretrain, midtrain, CPT, SFT, DPO)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from megatron_alignpt.config_base import check_fields, require
from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.posttrain.config import DPOConfig, SFTConfig  # noqa: F401 (StageConfig's fields; also imported from here)
from megatron_alignpt.train.stages import LM_STAGES, STAGE_KINDS, STAGES, check_stage_layout

StageKind = Literal[STAGES]


@dataclass
class OptimizerConfig:
    """AdamW with linear warmup then cosine/linear/constant decay (megatron's OptimizerParamScheduler)."""

    lr: float
    """Peak learning rate."""
    min_lr: float = 0.0
    warmup_fraction: float = 0.01
    """Share of the stage's iterations spent warming up from 0."""
    decay_style: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    """Global gradient-norm clip; 0 disables clipping."""

    def __post_init__(self) -> None:
        require(self.lr > 0, "optimizer.lr", "must be > 0")
        require(0 <= self.min_lr <= self.lr, "optimizer.min_lr", f"must be in [0, lr={self.lr}]")
        require(0 <= self.warmup_fraction < 1, "optimizer.warmup_fraction", "must be in [0, 1)")
        require(self.decay_style in ("cosine", "linear", "constant"), "optimizer.decay_style", "use cosine, linear or constant")
        require(self.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
        require(self.clip_grad >= 0, "optimizer.clip_grad", "must be >= 0 (0 disables)")


@dataclass
class ScheduleConfig:
    """How long a stage trains and how batches are formed."""

    train_iters: int
    """Optimizer steps in this stage."""
    global_batch_size: int
    """Sequences per optimizer step across all data-parallel ranks."""
    micro_batch_size: int = 1
    """Sequences per forward pass on one rank; the rest is gradient accumulation."""
    log_interval: int = 10
    save_interval: int = 0
    """Checkpoint every N steps (0: only at the end of the stage)."""
    seed: int = 1234

    def __post_init__(self) -> None:
        require(self.train_iters > 0, "schedule.train_iters", "must be > 0")
        require(self.micro_batch_size > 0, "schedule.micro_batch_size", "must be > 0")
        require(
            self.global_batch_size > 0 and self.global_batch_size % self.micro_batch_size == 0,
            "schedule.global_batch_size",
            f"must be a positive multiple of micro_batch_size={self.micro_batch_size}",
        )
        require(self.log_interval > 0, "schedule.log_interval", "must be > 0")
        require(self.save_interval >= 0, "schedule.save_interval", "must be >= 0")


@dataclass
class TelemetryConfig:
    """Where a stage's per-step metrics go besides metrics.jsonl (TensorBoard is always written)."""

    tensorboard_dir: Optional[Path] = None
    """None: <output_dir>/tensorboard."""
    wandb_project: Optional[str] = None
    """Set to log to Weights & Biases too (needs `pip install wandb` and WANDB_API_KEY or offline mode)."""
    wandb_entity: Optional[str] = None
    wandb_run_name: Optional[str] = None
    """None: the stage name. A resumed stage continues the same W&B run."""
    wandb_mode: Literal["online", "offline"] = "online"
    peak_tflops: float = 0.0
    """Peak TFLOP/s per GPU for MFU; 0: the H100 SXM dense peak of the precision (bf16 989, fp8 1979, fp32 67)."""

    def __post_init__(self) -> None:
        require(self.peak_tflops >= 0, "telemetry.peak_tflops", "must be >= 0 (0: the H100 default)")
        require(self.wandb_mode in ("online", "offline"), "telemetry.wandb_mode", "use online or offline")
        require(self.wandb_project is None or bool(self.wandb_project), "telemetry.wandb_project",
                "must be a non-empty name or null")


@dataclass
class StageConfig:
    """Everything one stage needs; saved resolved as config.json in the stage directory."""

    name: str
    kind: StageKind
    model: ModelConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    tokenizer: Path
    """tokenizer.json (HF tokenizers)."""
    data: Path
    """pretrain: a blend manifest (.json); sft: chat jsonl; dpo: preference jsonl."""
    output_dir: Path
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    init_from: Optional[Path] = None
    """Checkpoint (or stage) directory whose weights start this stage; optimizer, LR schedule and data
    position start fresh, and the stage may change blend, LR, sequence length and parallel layout."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def __post_init__(self) -> None:
        check_fields(self)  # types, finiteness and integrality of every field, nested ones included
        require(bool(self.name), "name", "must be a non-empty string")
        require(self.kind in STAGES, "kind", f"use {', '.join(STAGES)}")
        require(
            not STAGE_KINDS[self.kind].continues or self.init_from is not None,
            "init_from",
            f"a {self.kind} stage continues a trained checkpoint; set init_from "
            "(DPO: usually the SFT stage; midtrain/cpt: the previous stage)",
        )
        self.parallel.check_model(self.model)
        check_stage_layout(self.kind, self.parallel)

    @property
    def is_lm(self) -> bool:
        """Next-token prediction over a blend manifest (pretrain, midtrain, cpt)."""
        return self.kind in LM_STAGES
