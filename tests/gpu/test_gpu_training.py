"""Training core on one GPU: megatron schedules and optimizer in bf16, resume, GPU/CPU parity.

    pytest -m gpu tests/gpu -q        (skipped on machines without CUDA)

On a CUDA machine `run_stage` takes megatron's own path: `get_forward_backward_func()` for the
micro-batches, megatron's (mixed-precision) optimizer, NCCL. These tests check that this path
is really taken, that it resumes exactly, and that a GPU-trained checkpoint scores the same on
the CPU path. Layouts (pipeline, tensor/sequence/context parallel, FP8, distributed optimizer) are in
test_gpu_parallel.py.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig

pytestmark = pytest.mark.gpu

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _stage(data, out: Path, precision: str, iters: int = 8, save_interval: int = 4) -> StageConfig:
    return StageConfig(
        name="gpu", kind="pretrain",
        model=ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32, layer_impl="sdpa"),
        optimizer=OptimizerConfig(lr=2e-3, warmup_fraction=0.25),
        schedule=ScheduleConfig(train_iters=iters, global_batch_size=4, micro_batch_size=2, save_interval=save_interval, log_interval=100),
        tokenizer=data["tokenizer"], data=data["manifest"], output_dir=out,
        parallel=ParallelConfig(precision=precision),
    )


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def spy(monkeypatch):
    """Record which schedule, optimizer and parameter dtypes/devices run_stage uses."""
    import megatron.core.pipeline_parallel as mpp

    from megatron_alignpt.train import trainer

    seen = {"schedule_calls": 0, "optimizers": [], "param_dtypes": set(), "param_devices": set()}
    get_fb, build_opt, build_model = mpp.get_forward_backward_func, trainer.build_optimizer, trainer.build_model_chunks

    def counting_get_fb(*args, **kwargs):
        seen["schedule_calls"] += 1
        return get_fb(*args, **kwargs)

    def recording_build_opt(*args, **kwargs):
        opt = build_opt(*args, **kwargs)
        seen["optimizers"].append(opt)
        return opt

    def recording_build_model(*args, **kwargs):
        chunks = build_model(*args, **kwargs)
        for model in chunks:
            seen["param_dtypes"] |= {p.dtype for p in model.parameters()}
            seen["param_devices"] |= {p.device.type for p in model.parameters()}
        return chunks

    monkeypatch.setattr(mpp, "get_forward_backward_func", counting_get_fb)
    monkeypatch.setattr(trainer, "build_optimizer", recording_build_opt)
    monkeypatch.setattr(trainer, "build_model_chunks", recording_build_model)
    return seen


def _assert_megatron_gpu_path(seen: dict, dtype: torch.dtype, steps: int) -> None:
    from megatron.core.optimizer import MegatronOptimizer

    assert seen["schedule_calls"] == steps, "every step must go through megatron's get_forward_backward_func()"
    assert seen["optimizers"] and all(isinstance(o, MegatronOptimizer) for o in seen["optimizers"]), seen["optimizers"]
    assert seen["param_dtypes"] == {dtype}
    assert seen["param_devices"] == {"cuda"}


def test_bf16_stage_resumes_exactly_on_megatron_schedule(tiny_lm_data, tmp_path, spy):
    """bf16 run_stage through megatron's schedule: a crash-and-resume run repeats the losses of a straight run.

    Same seed, no dropout, one GPU: the only way for the two runs to differ is a resume bug
    (weights, fp32 master weights, Adam moments, LR schedule or data position not restored), or
    a nondeterministic kernel. cuBLAS GEMMs and SDPA at this size are deterministic on one
    stream, so the losses must agree to the last bit; the tolerance only absorbs printing.
    """
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.model.builder import padded_vocab_size
    from megatron_alignpt.train.trainer import run_stage

    run_stage(_stage(tiny_lm_data, tmp_path / "straight", "bf16"))
    interrupted = _stage(tiny_lm_data, tmp_path / "resumed", "bf16")
    first = run_stage(interrupted, stop_after=5)  # crash after step 5; the last checkpoint is step 4
    assert first.iteration == 5
    second = run_stage(interrupted)
    assert second.iteration == 8
    assert (tmp_path / "resumed" / "checkpoints" / "iter_0000008").is_dir()
    _assert_megatron_gpu_path(spy, torch.bfloat16, steps=8 + 5 + 4)

    straight, resumed = _metrics(tmp_path / "straight"), _metrics(tmp_path / "resumed")
    print("straight", [round(m["loss"], 6) for m in straight])
    print("resumed ", [round(m["loss"], 6) for m in resumed])
    assert [m["iteration"] for m in resumed] == list(range(1, 9))
    assert [m["loss"] for m in resumed] == pytest.approx([m["loss"] for m in straight], rel=0, abs=1e-6)
    assert [m["lr"] for m in resumed] == pytest.approx([m["lr"] for m in straight], rel=1e-12)
    assert [m["grad_norm"] for m in resumed] == pytest.approx([m["grad_norm"] for m in straight], rel=1e-5)
    assert all(math.isfinite(m["loss"]) for m in straight)
    # The logged loss is the mean over micro-batches, not each one pre-divided by their number
    # (megatron's schedule divides the returned loss in place): at step 1 it is near ln(vocab).
    vocab = padded_vocab_size(TextTokenizer(tiny_lm_data["tokenizer"]).vocab_size, 1)
    assert abs(straight[0]["loss"] - math.log(vocab)) < 0.3, (straight[0]["loss"], math.log(vocab))
    assert straight[-1]["loss"] < straight[0]["loss"] - 0.1  # it learns


def test_gpu_fp32_checkpoint_scores_like_cpu(tiny_lm_data, tmp_path, spy):
    """A checkpoint trained on GPU (fp32, megatron optimizer) gives the CPU path's loss and logits on a fixed batch."""
    from cpu_reference import score_fixed_batch

    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.train.trainer import run_stage

    result = run_stage(_stage(tiny_lm_data, tmp_path / "fp32", "fp32", iters=6, save_interval=0))
    _assert_megatron_gpu_path(spy, torch.float32, steps=6)

    tok = TextTokenizer(tiny_lm_data["tokenizer"])
    ids = [i for text in tiny_lm_data["texts"][300:340] for i in tok.tokenize(text) + [tok.eod]]
    x = torch.tensor(ids[: 4 * 33]).view(4, 33)
    batch = {"tokens": x[:, :-1].contiguous(), "labels": x[:, 1:].contiguous()}
    torch.save(batch, tmp_path / "batch.pt")

    gpu = score_fixed_batch(result.checkpoint, tiny_lm_data["tokenizer"], batch)
    assert gpu["device"].startswith("cuda")

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):  # its own 1-process gloo group
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "cpu_reference.py"), str(result.checkpoint), str(tiny_lm_data["tokenizer"]),
         str(tmp_path / "batch.pt"), str(tmp_path / "cpu.pt")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cpu = torch.load(tmp_path / "cpu.pt")
    assert cpu["device"] == "cpu"

    print(f"loss gpu {gpu['loss']:.7f} cpu {cpu['loss']:.7f}")
    assert gpu["loss"] == pytest.approx(cpu["loss"], rel=1e-3)
    rel_logits = ((gpu["logits"] - cpu["logits"]).norm() / cpu["logits"].norm()).item()
    rel_tokens = ((gpu["per_token_loss"] - cpu["per_token_loss"]).norm() / cpu["per_token_loss"].norm()).item()
    print(f"relative difference: logits {rel_logits:.2e}, per-token losses {rel_tokens:.2e}")
    assert rel_logits < 1e-3 and rel_tokens < 1e-3
    # the checkpoint holds trained weights, not the initialisation both sides could share
    assert cpu["loss"] < math.log(tok.vocab_size) - 0.25


def test_pipeline_parallel_is_refused_on_one_process():
    """World size 1 admits only PP=1: a PP=2 layout is rejected before any model is built."""
    from megatron_alignpt.config_base import ConfigError

    model = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32)
    ParallelConfig(pipeline_parallel=1).check_against(model, world_size=1)
    with pytest.raises(ConfigError, match="x 2 = 2; change the number of GPUs"):
        ParallelConfig(pipeline_parallel=2).check_against(model, world_size=1)
