"""Parallel layouts and precisions on GPUs (skipped without CUDA; some need 2 GPUs, Transformer Engine, Hopper).

    pytest -m gpu tests/gpu -q

- distributed optimizer with overlapped grad reduction / param gathering: a crash-and-resume bf16 run
  repeats the straight run (1 GPU);
- FP8 through Transformer Engine (hybrid format, delayed and current scaling): trains, loss falls (Hopper);
- pipeline parallel 2 (and interleaved 2 x 2) match one stage from the same weights (2 GPUs);
- tensor parallel 2 with sequence parallelism on the TE spec matches TP=1 (2 GPUs);
- context parallel 2 (TE attention) gives the CP=1 loss on a fixed batch (2 GPUs).
"""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from megatron_alignpt.model.config import ModelConfig, ParallelConfig, RecomputeConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig

pytestmark = pytest.mark.gpu

HAS_TE = importlib.util.find_spec("transformer_engine") is not None
TWO_GPUS = torch.cuda.is_available() and torch.cuda.device_count() >= 2
HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0)
needs_te = pytest.mark.skipif(not HAS_TE, reason="needs transformer_engine")
needs_two = pytest.mark.skipif(not TWO_GPUS, reason="needs 2 GPUs")


def _stage(data, out, parallel: ParallelConfig, layer_impl="sdpa", iters=6, save_interval=0, init=None, num_layers=4,
           seq=64, gbs=8, mbs=2) -> StageConfig:
    return StageConfig(
        name="gpu-layout", kind="pretrain" if init is None else "cpt",
        model=ModelConfig(num_layers=num_layers, hidden_size=128, num_attention_heads=4, seq_length=seq,
                          layer_impl=layer_impl, architecture="pythia"),
        optimizer=OptimizerConfig(lr=2e-3, warmup_fraction=0.2),
        schedule=ScheduleConfig(train_iters=iters, global_batch_size=gbs, micro_batch_size=mbs, save_interval=save_interval,
                                log_interval=100),
        tokenizer=data["tokenizer"], data=data["manifest"], output_dir=Path(out), parallel=parallel, init_from=init,
    )


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _train(rank, data, out, parallel, layer_impl, init, iters):
    from megatron_alignpt.train.trainer import run_stage

    run_stage(_stage(data, out, parallel, layer_impl, iters=iters, init=init))
    return _metrics(out) if rank == 0 else None


def _data(tiny_lm_data) -> dict:
    return {k: v for k, v in tiny_lm_data.items() if k != "texts"}


def test_distributed_optimizer_resumes_exactly(tiny_lm_data, tmp_path):
    from megatron.core.optimizer import DistributedOptimizer, MegatronOptimizer

    from megatron_alignpt.train import trainer
    from megatron_alignpt.train.trainer import run_stage

    parallel = ParallelConfig(precision="bf16", distributed_optimizer=True, overlap_grad_reduce=True,
                              overlap_param_gather=True)
    built = []
    original = trainer.build_optimizer

    def recording(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    trainer.build_optimizer = recording
    try:
        run_stage(_stage(tiny_lm_data, tmp_path / "straight", parallel, iters=8, save_interval=4))
        interrupted = _stage(tiny_lm_data, tmp_path / "resumed", parallel, iters=8, save_interval=4)
        assert run_stage(interrupted, stop_after=5).iteration == 5
        run_stage(interrupted)
    finally:
        trainer.build_optimizer = original
    inner = [getattr(o, "chained_optimizers", [o]) for o in built]
    assert all(isinstance(x, MegatronOptimizer) for group in inner for x in group)
    assert any(isinstance(x, DistributedOptimizer) for group in inner for x in group)
    s, r = _metrics(tmp_path / "straight"), _metrics(tmp_path / "resumed")
    assert [m["loss"] for m in r] == pytest.approx([m["loss"] for m in s], rel=0, abs=1e-6)
    assert [m["lr"] for m in r] == [m["lr"] for m in s]
    assert s[-1]["loss"] < s[0]["loss"] - 0.1
    assert all(m["mfu"] > 0 and m["mem_max_allocated_gib"] > 0 for m in s)


@needs_te
@pytest.mark.skipif(not HOPPER, reason="FP8 needs a Hopper-or-newer GPU")
@pytest.mark.parametrize("recipe", ["delayed", "current"])
def test_fp8_trains_through_transformer_engine(tiny_lm_data, tmp_path, recipe):
    from megatron_alignpt.train.trainer import run_stage

    parallel = ParallelConfig(precision="fp8", fp8_recipe=recipe, recompute=RecomputeConfig("selective"))
    run_stage(_stage(tiny_lm_data, tmp_path / recipe, parallel, layer_impl="te", iters=10))
    m = _metrics(tmp_path / recipe)
    assert all(math.isfinite(x["loss"]) for x in m)
    assert m[-1]["loss"] < m[0]["loss"] - 0.1
    assert m[-1]["mfu"] > 0


def test_fp8_is_refused_before_hopper_or_without_te():
    from megatron_alignpt.model.builder import LayoutUnavailable, check_runtime

    if HAS_TE and HOPPER:
        pytest.skip("this GPU runs FP8")
    cfg = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32, layer_impl="te")
    with pytest.raises(LayoutUnavailable, match="fp8 needs a"):
        check_runtime(cfg, ParallelConfig(precision="fp8"))


@needs_two
def test_pipeline_parallel_matches_one_stage(tiny_lm_data, tmp_path):
    from megatron_alignpt.testing import run_distributed

    data = _data(tiny_lm_data)
    run_distributed(_train, 1, data, str(tmp_path / "init"), ParallelConfig(precision="bf16"), "sdpa", None, 1)
    init = str(tmp_path / "init")
    one = run_distributed(_train, 1, data, str(tmp_path / "pp1"), ParallelConfig(precision="bf16"), "sdpa", init, 4)[0]
    two = run_distributed(_train, 2, data, str(tmp_path / "pp2"),
                          ParallelConfig(pipeline_parallel=2, precision="bf16"), "sdpa", init, 4)[0]
    inter = run_distributed(_train, 2, data, str(tmp_path / "vp2"),
                            ParallelConfig(pipeline_parallel=2, virtual_pipeline=2, precision="bf16"), "sdpa", init, 4)[0]
    for run in (two, inter):
        assert [m["loss"] for m in run] == pytest.approx([m["loss"] for m in one], rel=1e-3)
        assert [m["lr"] for m in run] == [m["lr"] for m in one]


@needs_two
@needs_te
def test_tensor_and_sequence_parallel_match_one_gpu(tiny_lm_data, tmp_path):
    from megatron_alignpt.testing import run_distributed

    data = _data(tiny_lm_data)
    run_distributed(_train, 1, data, str(tmp_path / "init"), ParallelConfig(precision="bf16"), "te", None, 1)
    init = str(tmp_path / "init")
    one = run_distributed(_train, 1, data, str(tmp_path / "tp1"), ParallelConfig(precision="bf16"), "te", init, 4)[0]
    sp = run_distributed(_train, 2, data, str(tmp_path / "tp2sp"),
                         ParallelConfig(tensor_parallel=2, sequence_parallel=True, precision="bf16"), "te", init, 4)[0]
    assert [m["loss"] for m in sp] == pytest.approx([m["loss"] for m in one], rel=2e-2)


def _cp_loss(rank, ckpt_dir, tokenizer, cp):
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.model.builder import build_model_chunks
    from megatron_alignpt.runtime import init_layout
    from megatron_alignpt.train import checkpoint as ckpt
    from megatron_alignpt.train.forward_backward import forward_backward, mean_logs
    from megatron_alignpt.train.lm_task import LMTask

    parallel = ParallelConfig(context_parallel=cp, precision="bf16")
    init_layout(parallel, seed=3)
    model_cfg, _ = ckpt.read_model_meta(Path(ckpt_dir))
    chunks = build_model_chunks(model_cfg, parallel, TextTokenizer(tokenizer).vocab_size)
    ckpt.load_weights(Path(ckpt_dir), chunks)
    gen = torch.Generator().manual_seed(0)
    micro = []
    for _ in range(2):
        x = torch.randint(0, 300, (2, model_cfg.seq_length + 1), generator=gen)
        micro.append({"tokens": x[:, :-1], "labels": x[:, 1:], "loss_mask": torch.ones(2, model_cfg.seq_length),
                      "position_ids": torch.arange(model_cfg.seq_length).expand(2, -1)})
    logs = forward_backward(LMTask.forward_step, micro, chunks, model_cfg.seq_length, 2, forward_only=True)
    return mean_logs(logs)["loss"]


@needs_two
@needs_te
def test_context_parallel_gives_the_same_loss(tiny_lm_data, tmp_path):
    from megatron_alignpt.testing import run_distributed

    data = _data(tiny_lm_data)
    run_distributed(_train, 1, data, str(tmp_path / "base"), ParallelConfig(precision="bf16"), "te", None, 4)
    ckpt_dir = str(tmp_path / "base" / "checkpoints" / "iter_0000004")
    (cp1,) = run_distributed(_cp_loss, 1, ckpt_dir, str(tiny_lm_data["tokenizer"]), 1)
    cp2 = run_distributed(_cp_loss, 2, ckpt_dir, str(tiny_lm_data["tokenizer"]), 2)
    assert cp2 == pytest.approx([cp1, cp1], rel=2e-2)
