"""Pipeline parallelism on CPU (gloo): megatron's 1F1B and interleaved schedules over per-stage model
chunks train exactly like one stage, and their checkpoints load at any other pipeline layout.
Also: activation recomputation re-runs layers without changing gradients."""
import json
from pathlib import Path

import pytest
import torch

from megatron_alignpt.model.config import ModelConfig, ParallelConfig, RecomputeConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig

MODEL = dict(num_layers=4, hidden_size=64, num_attention_heads=4, seq_length=32, architecture="pythia")


def _stage(data, out, pp=1, vp=1, init=None, iters=3) -> StageConfig:
    return StageConfig(
        name="pp", kind="pretrain" if init is None else "cpt",
        model=ModelConfig(**MODEL),
        optimizer=OptimizerConfig(lr=2e-3, warmup_fraction=0.25),
        schedule=ScheduleConfig(train_iters=iters, global_batch_size=8, micro_batch_size=2, save_interval=0, log_interval=100),
        tokenizer=data["tokenizer"], data=data["manifest"], output_dir=Path(out),
        parallel=ParallelConfig(pipeline_parallel=pp, virtual_pipeline=vp), init_from=init,
    )


def _train(rank, data, out, pp, vp, init, iters):
    from megatron_alignpt.train.trainer import run_stage

    run_stage(_stage(data, out, pp, vp, init, iters))
    if rank != 0:
        return None
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _fixed_batch_loss(rank, ckpt_dir, tokenizer, pp, vp):
    """Loss of a fixed batch through megatron's schedule (forward only) at the given pipeline layout."""
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.model.builder import build_model_chunks
    from megatron_alignpt.runtime import init_layout
    from megatron_alignpt.train import checkpoint as ckpt
    from megatron_alignpt.train.forward_backward import forward_backward, mean_logs
    from megatron_alignpt.train.lm_task import LMTask

    parallel = ParallelConfig(pipeline_parallel=pp, virtual_pipeline=vp)
    init_layout(parallel, seed=11)
    chunks = build_model_chunks(ModelConfig(**MODEL), parallel, TextTokenizer(tokenizer).vocab_size)
    ckpt.load_weights(Path(ckpt_dir), chunks)
    gen = torch.Generator().manual_seed(0)
    micro = []
    for _ in range(4):
        x = torch.randint(0, 300, (2, 33), generator=gen)
        micro.append({"tokens": x[:, :-1], "labels": x[:, 1:], "loss_mask": torch.ones(2, 32),
                      "position_ids": torch.arange(32).expand(2, -1)})
    logs = forward_backward(LMTask.forward_step, micro, chunks, 32, 2, forward_only=True)
    return mean_logs(logs)["loss"]


@pytest.mark.slow
def test_pipeline_parallel_matches_one_stage_and_checkpoints_reshard(tiny_lm_data, tmp_path):
    from megatron_alignpt.testing import run_distributed

    data = {k: v for k, v in tiny_lm_data.items() if k != "texts"}
    # One shared starting point: weight init draws from the RNG in build order, which differs by layout.
    run_distributed(_train, 1, data, str(tmp_path / "init"), 1, 1, None, 1)
    init = str(tmp_path / "init")
    one = run_distributed(_train, 1, data, str(tmp_path / "pp1"), 1, 1, init, 3)[0]
    two = run_distributed(_train, 2, data, str(tmp_path / "pp2"), 2, 1, init, 3)[0]
    interleaved = run_distributed(_train, 2, data, str(tmp_path / "vp2"), 2, 2, init, 3)[0]
    for run in (two, interleaved):
        assert [m["iteration"] for m in run] == [1, 2, 3]
        assert [m["loss"] for m in run] == pytest.approx([m["loss"] for m in one], rel=0, abs=1e-6)
        assert [m["grad_norm"] for m in run] == pytest.approx([m["grad_norm"] for m in one], rel=1e-6)
        assert [m["lr"] for m in run] == [m["lr"] for m in one]
    assert one[-1]["loss"] != one[0]["loss"]  # the weights did move

    # Checkpoints written by two pipeline stages (and by interleaved chunks) load at one stage, and back.
    tok = str(tiny_lm_data["tokenizer"])
    final = "checkpoints/iter_0000003"
    (ref,) = run_distributed(_fixed_batch_loss, 1, str(tmp_path / "pp1" / final), tok, 1, 1)
    (from_pp2,) = run_distributed(_fixed_batch_loss, 1, str(tmp_path / "pp2" / final), tok, 1, 1)
    (from_vp2,) = run_distributed(_fixed_batch_loss, 1, str(tmp_path / "vp2" / final), tok, 1, 1)
    pp1_into_vp2 = run_distributed(_fixed_batch_loss, 2, str(tmp_path / "pp1" / final), tok, 2, 2)
    assert from_pp2 == pytest.approx(ref, abs=1e-6)
    assert from_vp2 == pytest.approx(ref, abs=1e-6)
    assert pp1_into_vp2 == pytest.approx([ref, ref], abs=1e-6)


def test_activation_recomputation_reruns_layers_with_the_same_gradients():
    from megatron_alignpt.model.builder import build_model_chunks
    from megatron_alignpt.runtime import init_layout
    from megatron_alignpt.train.forward_backward import forward_backward
    from megatron_alignpt.train.lm_task import LMTask
    from megatron_alignpt.train.trainer import wrap_ddp

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 300, (2, 33), generator=gen)
    micro = [{"tokens": x[:, :-1], "labels": x[:, 1:], "loss_mask": torch.ones(2, 32),
              "position_ids": torch.arange(32).expand(2, -1)}]

    def run(recompute: RecomputeConfig):
        parallel = ParallelConfig(recompute=recompute)
        init_layout(parallel, seed=5)
        (chunk,) = build_model_chunks(ModelConfig(**MODEL, hidden_dropout=0.1), parallel, 320)
        calls = []
        for layer in chunk.decoder.layers:
            layer.register_forward_hook(lambda mod, args, out: calls.append(mod.layer_number))
        (ddp,) = wrap_ddp([chunk], parallel)
        logs = forward_backward(LMTask.forward_step, micro, [ddp], 32, 2)
        grads = torch.cat([p.main_grad.flatten() for p in ddp.parameters()])
        return float(logs[0]["loss"]), grads, calls

    loss, grads, calls = run(RecomputeConfig())
    assert calls == [1, 2, 3, 4]
    for rc, expected_calls in (
        (RecomputeConfig("full", "uniform", 2), [1, 2, 3, 4, 3, 4, 1, 2]),  # two groups, redone in backward
        (RecomputeConfig("full", "block", 1), [1, 2, 3, 4, 1]),  # only the first layer of the chunk
    ):
        rc_loss, rc_grads, rc_calls = run(rc)
        assert rc_calls == expected_calls, rc
        assert rc_loss == loss
        # Dropout masks are replayed from the saved RNG state, so gradients are those of the plain run.
        torch.testing.assert_close(rc_grads, grads, rtol=1e-5, atol=1e-7)
