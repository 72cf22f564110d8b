"""Telemetry: TensorBoard events hold every step's scalars (also across a resume), the model-FLOPs
formula, and a clear error when W&B is configured but missing."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig, TelemetryConfig

SCALARS = ("loss", "lr", "grad_norm", "tokens_per_s", "tflops_per_gpu", "step_time_s", "mem_rss_gib")


def stage(data, out: Path, iters=4, save_interval=2, telemetry=None) -> StageConfig:
    return StageConfig(
        name="tb", kind="pretrain",
        model=ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32, architecture="pythia"),
        optimizer=OptimizerConfig(lr=2e-3, warmup_fraction=0.25),
        schedule=ScheduleConfig(train_iters=iters, global_batch_size=4, micro_batch_size=2, save_interval=save_interval,
                                log_interval=100),
        tokenizer=data["tokenizer"], data=data["manifest"], output_dir=out, parallel=ParallelConfig(),
        telemetry=telemetry or TelemetryConfig(),
    )


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_holds_every_step_also_after_a_resume(tiny_lm_data, tmp_path):
    from megatron_alignpt.train.trainer import run_stage

    cfg = stage(tiny_lm_data, tmp_path / "run")
    run_stage(cfg, stop_after=3)  # interrupted after step 3; the checkpoint is at step 2
    run_stage(cfg)  # redoes step 3, then 4
    rows = jsonl(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    scalars = tensorboard_scalars(tmp_path / "run")
    for key in SCALARS:
        events = scalars[f"train/{key}"]
        assert [step for step, _ in events] == [1, 2, 3, 4], key  # the first run's step 3 was purged
        assert [value for _, value in events] == pytest.approx([r[key] for r in rows], rel=1e-6), key
    for r in rows:
        assert r["tokens_per_s"] == pytest.approx(4 * 32 / r["step_time_s"], rel=1e-9)
        assert r["tflops_per_gpu"] > 0 and r["mem_rss_gib"] > 0.05
        assert "mfu" not in r  # no meaningful peak on CPU unless telemetry.peak_tflops is set


def test_mfu_uses_the_configured_peak(tiny_lm_data, tmp_path):
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.model.builder import padded_vocab_size
    from megatron_alignpt.train.telemetry import model_flops_per_step
    from megatron_alignpt.train.trainer import run_stage

    cfg = stage(tiny_lm_data, tmp_path / "run", iters=2, save_interval=0, telemetry=TelemetryConfig(peak_tflops=0.5))
    run_stage(cfg)
    vocab = padded_vocab_size(TextTokenizer(tiny_lm_data["tokenizer"]).vocab_size, 1)
    flops = model_flops_per_step(cfg.model, vocab, sequences=4)
    for r in jsonl(tmp_path / "run"):
        assert r["tflops_per_gpu"] == pytest.approx(flops / r["step_time_s"] / 1e12, rel=1e-9)
        assert r["mfu"] == pytest.approx(r["tflops_per_gpu"] / 0.5, rel=1e-9)
    assert "train/mfu" in tensorboard_scalars(tmp_path / "run")


def test_model_flops_formula():
    from megatron_alignpt.train.telemetry import model_flops_per_step
    from recipes.pythia_sizes import pythia_model

    # Pythia-1.4B shape, 16 sequences of 2048, vocab 50304: Megatron's 72BsLh^2(1 + s/6h + V/12hL).
    m = pythia_model("1.4b")
    B, s, L, h, V = 16, 2048, 24, 2048, 50304
    megatron = 72 * B * s * L * h**2 * (1 + s / (6 * h) + V / (12 * h * L))
    assert model_flops_per_step(m, V, B) == pytest.approx(megatron, rel=1e-12)
    assert model_flops_per_step(m, V, B) == pytest.approx(2.973e14, rel=1e-3)
    # A non-4h MLP changes only the MLP term (4 h f per token and layer in the forward pass).
    wide = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32, ffn_hidden_size=512)
    narrow = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32, ffn_hidden_size=256)
    assert model_flops_per_step(wide, 128, 1) - model_flops_per_step(narrow, 128, 1) == 3 * 32 * 2 * 4 * 64 * 256
    # Longer sequences add the s^2 attention term.
    assert math.isclose(model_flops_per_step(m, V, 1, 4096) / model_flops_per_step(m, V, 1, 2048),
                        2 * (24 * (24 * h * h + 4 * 4096 * h) + 2 * h * V) / (24 * (24 * h * h + 4 * 2048 * h) + 2 * h * V))


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_configured_but_missing_says_what_to_do(tiny_lm_data, tmp_path):
    from megatron_alignpt.train.trainer import run_stage

    cfg = stage(tiny_lm_data, tmp_path / "run", iters=1, save_interval=0, telemetry=TelemetryConfig(wandb_project="alignpt"))
    with pytest.raises(RuntimeError, match="wandb is not installed: pip install wandb, or set telemetry.wandb_project=null"):
        run_stage(cfg)
