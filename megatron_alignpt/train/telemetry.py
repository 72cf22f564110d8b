"""Per-step training telemetry: metrics.jsonl, TensorBoard (always), Weights & Biases (when configured).

Every step logs the task's scalars (loss, ...), the learning rate, the gradient norm, step time,
tokens/s, model TFLOP/s per GPU, MFU and memory. Rank 0 writes; the values are already averaged
over data-parallel ranks and sent from the last pipeline stage (`forward_backward.mean_logs`).

Model FLOPs (`model_flops_per_step`) follow Megatron-LM (Narayanan et al. 2021, eq. 3) with the
MLP width left general, as PaLM's MFU does (Chowdhery et al. 2022, appendix B) but with the
attention term over the full s x s square. Per token and layer the forward pass costs
    2 * (4 h^2 + 2 h f)   weight GEMMs (QKV 3h^2, attention output h^2, MLP 2 h f)
  + 4 * s * h             attention scores QK^T and the weighted sum of V
plus 2 * h * V per token for the logits; backward costs twice the forward, so

    FLOPs/step = 3 * B * s * (L * (8 h^2 + 4 h f + 4 s h) + 2 h V)
               = 72 B s L h^2 (1 + s / (6 h) + V / (12 h L))      for f = 4 h (Pythia/GPT-NeoX)

with B sequences per step, s tokens each, L layers, hidden h, MLP width f and (padded) vocab V.
Biases, norms, rotary embeddings, softmax and activation recomputation are not counted (MFU counts
the model's FLOPs, not the hardware's), and the causal mask is not discounted.

    TFLOP/s per GPU = FLOPs/step / step seconds / world size / 1e12
    MFU             = TFLOP/s per GPU / peak TFLOP/s per GPU

The peak defaults to the H100 SXM dense (no sparsity) figure for the training precision:
bf16 989, fp8 1979, fp32 67 (no TF32); `telemetry.peak_tflops` sets another GPU's. On CPU, MFU is
not reported (no meaningful peak) and memory is the process's resident set size; on GPU it is
torch's peak allocated CUDA memory since the previous step.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch

from megatron_alignpt.model.config import ModelConfig

H100_DENSE_PEAK_TFLOPS = {"bf16": 989.0, "fp8": 1979.0, "fp32": 67.0}
"""H100 SXM dense peaks per training precision (fp32: without TF32 tensor cores)."""

TENSORBOARD_DIR = "tensorboard"
WANDB_ID = "wandb_id.txt"


def model_flops_per_step(model: ModelConfig, vocab_size: int, sequences: int, seq_length: Optional[int] = None) -> float:
    """Model FLOPs of one training step over `sequences` sequences (formula in the module docstring)."""
    s = seq_length or model.seq_length
    h, f, L = model.hidden_size, model.ffn_size, model.num_layers
    per_token = L * (8 * h * h + 4 * h * f + 4 * s * h) + 2 * h * vocab_size
    return 3.0 * sequences * s * per_token


def peak_tflops(precision: str, configured: float = 0.0) -> Optional[float]:
    """The MFU denominator: `configured` if set, else the H100 figure on GPU, None on CPU."""
    if configured > 0:
        return configured
    if not torch.cuda.is_available():
        return None
    return H100_DENSE_PEAK_TFLOPS[precision]


def memory_metrics() -> dict[str, float]:
    """Peak CUDA memory since the last call (GiB), or the process RSS on CPU (GiB)."""
    if torch.cuda.is_available():
        out = {
            "mem_max_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "mem_reserved_gib": torch.cuda.memory_reserved() / 2**30,
        }
        torch.cuda.reset_peak_memory_stats()
        return out
    import psutil

    return {"mem_rss_gib": psutil.Process().memory_info().rss / 2**30}


class TensorBoardSink:
    """Scalars under `<stage>/tensorboard`; a resumed run purges the steps it will redo."""

    def __init__(self, log_dir: Path, resume_iteration: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # tensorboard is in the train extra
            raise RuntimeError("TensorBoard logging needs the tensorboard package: pip install -e .[train]") from err
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=resume_iteration + 1 if resume_iteration else None)

    def log(self, iteration: int, metrics: dict) -> None:
        for key, value in metrics.items():
            if key != "iteration" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"train/{key}", value, iteration)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbSink:
    """One W&B run per stage directory; a resumed stage continues the same run (id kept beside it)."""

    def __init__(self, cfg, output_dir: Path, run_name: str, config: dict):
        try:
            import wandb
        except ImportError as err:
            raise RuntimeError(
                f"telemetry.wandb_project={cfg.wandb_project!r} is set but wandb is not installed: "
                "pip install wandb, or set telemetry.wandb_project=null"
            ) from err
        id_file = output_dir / WANDB_ID
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        id_file.write_text(run_id + "\n")
        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.wandb_project, entity=cfg.wandb_entity, name=cfg.wandb_run_name or run_name, id=run_id,
            resume="allow", dir=str(output_dir), config=config, mode=cfg.wandb_mode,
        )

    def log(self, iteration: int, metrics: dict) -> None:
        self.run.log({f"train/{k}": v for k, v in metrics.items() if k != "iteration"}, step=iteration)

    def close(self) -> None:
        self.run.finish()


class Telemetry:
    """Collects each step's metrics; rank 0 writes them to metrics.jsonl, TensorBoard and W&B."""

    def __init__(
        self,
        *,
        name: str,
        output_dir: Path,
        metrics_file: Path,
        telemetry_cfg,
        model: ModelConfig,
        vocab_size: int,
        precision: str,
        sequences_per_step: int,
        tokens_per_step: int,
        world_size: int,
        total_iters: int,
        log_interval: int,
        resume_iteration: int = 0,
        run_config: Optional[dict] = None,
        write: bool = True,
    ):
        self.name = name
        self.metrics_file = metrics_file
        self.tokens_per_step = tokens_per_step
        self.world_size = world_size
        self.total_iters = total_iters
        self.log_interval = log_interval
        self.flops_per_step = model_flops_per_step(model, vocab_size, sequences_per_step, tokens_per_step // max(sequences_per_step, 1))
        self.peak = peak_tflops(precision, telemetry_cfg.peak_tflops)
        self.write = write
        self.last: dict = {}
        self.sinks: list = []
        if write:
            tb_dir = Path(telemetry_cfg.tensorboard_dir) if telemetry_cfg.tensorboard_dir else output_dir / TENSORBOARD_DIR
            self.sinks.append(TensorBoardSink(tb_dir, resume_iteration))
            if telemetry_cfg.wandb_project:
                self.sinks.append(WandbSink(telemetry_cfg, output_dir, name, run_config or {}))

    def step_metrics(self, iteration: int, task_metrics: dict, step_seconds: float) -> dict:
        """Derived per-step figures from the task's scalars and the step's wall time."""
        step_seconds = max(step_seconds, 1e-9)
        tflops = self.flops_per_step / step_seconds / self.world_size / 1e12
        metrics = {
            "iteration": iteration,
            **task_metrics,
            "step_time_s": step_seconds,
            "tokens_per_s": self.tokens_per_step / step_seconds,
            "tflops_per_gpu": tflops,
        }
        if self.peak:
            metrics["mfu"] = tflops / self.peak
        metrics.update(memory_metrics())
        return metrics

    def log(self, iteration: int, task_metrics: dict, step_seconds: float) -> dict:
        metrics = self.step_metrics(iteration, task_metrics, step_seconds)
        self.last = metrics
        if not self.write:
            return metrics
        with self.metrics_file.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        for sink in self.sinks:
            sink.log(iteration, metrics)
        if iteration % self.log_interval == 0 or iteration == self.total_iters:
            loss_key = "loss" if "loss" in metrics else next(iter(k for k in task_metrics), "lr")
            mfu = f" MFU {100 * metrics['mfu']:.1f}%" if "mfu" in metrics else ""
            print(
                f"[{self.name}] iter {iteration}/{self.total_iters} {loss_key} {metrics[loss_key]:.4f} "
                f"lr {metrics['lr']:.2e} grad_norm {metrics['grad_norm']:.3f} tok/s {metrics['tokens_per_s']:.0f} "
                f"TFLOP/s/GPU {metrics['tflops_per_gpu']:.3g}{mfu}",
                flush=True,
            )
        return metrics

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []


class StepTimer:
    """Wall time of one step; on GPU it waits for queued kernels first so the figure is the step's."""

    def __enter__(self) -> "StepTimer":
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
