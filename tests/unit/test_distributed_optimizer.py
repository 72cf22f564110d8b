"""megatron's DistributedOptimizer on CPU over gloo: it trains like the unsharded optimizer, resumes
exactly, and its checkpoints (fully_reshardable) reload at other data- and tensor-parallel sizes with
the Adam state intact."""
import json
import shutil
from pathlib import Path

import pytest

from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig

pytestmark = pytest.mark.slow


def _stage(data, out, tp=1, dist=True, iters=6, init_from=None, fmt="fully_reshardable") -> StageConfig:
    return StageConfig(
        name="zero1", kind="pretrain" if init_from is None else "cpt",
        model=ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32),
        optimizer=OptimizerConfig(lr=3e-3, warmup_fraction=0.0, decay_style="constant"),
        schedule=ScheduleConfig(train_iters=iters, global_batch_size=4, micro_batch_size=1, save_interval=2,
                                log_interval=100),
        tokenizer=data["tokenizer"], data=data["manifest"], output_dir=Path(out), init_from=init_from,
        parallel=ParallelConfig(tensor_parallel=tp, distributed_optimizer=dist, distributed_optimizer_checkpoint=fmt),
    )


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _train(rank, data, out, tp=1, dist=True, stop_after=None, init_from=None, fmt="fully_reshardable"):
    from megatron_alignpt.train.trainer import run_stage

    run_stage(_stage(data, out, tp, dist, init_from=init_from, fmt=fmt), stop_after=stop_after)
    return _rows(out) if rank == 0 else None


def _forget_adam_moments_on_load(monkeypatch) -> None:
    """Resumes zero the loaded Adam moments: the control showing the layout test sees them."""
    from megatron_alignpt.train import checkpoint

    real_load = checkpoint.load_checkpoint

    def load_then_forget(*args, **kwargs):
        state = real_load(*args, **kwargs)
        for inner in args[2].chained_optimizers:
            for moments in inner.optimizer.state.values():
                moments["exp_avg"].zero_()
                moments["exp_avg_sq"].zero_()
        return state

    monkeypatch.setattr(checkpoint, "load_checkpoint", load_then_forget)


def _continue_from(source: Path, dest: Path, iteration: int) -> None:
    """A run directory whose newest checkpoint is `source`'s checkpoint at `iteration`."""
    name = f"iter_{iteration:07d}"
    shutil.copytree(source / "checkpoints" / name, dest / "checkpoints" / name)
    (dest / "checkpoints" / "latest.txt").write_text(f"{iteration}\n")


def _losses(rows, first_iteration=1) -> list[float]:
    return [r["loss"] for r in rows if r["iteration"] >= first_iteration]


@pytest.fixture
def data(tiny_lm_data):
    return {k: v for k, v in tiny_lm_data.items() if k != "texts"}


def test_dp2_sharded_optimizer_trains_like_dp1_and_resumes_exactly(data, tmp_path):
    from megatron_alignpt.testing import run_distributed

    plain = _train(0, data, tmp_path / "dp1", dist=False)
    straight = run_distributed(_train, 2, data, str(tmp_path / "dp2"), 1, True)[0]
    # The same global batches and Adam updates, with state sharded over two ranks.
    assert _losses(straight) == pytest.approx(_losses(plain), abs=2e-5)
    assert [r["grad_norm"] for r in straight] == pytest.approx([r["grad_norm"] for r in plain], rel=1e-4)
    assert _losses(straight)[-1] < _losses(straight)[0]
    # Interrupted after step 3 (last checkpoint: step 2), then resumed from it.
    run_distributed(_train, 2, data, str(tmp_path / "resumed"), 1, True, 3)
    resumed = run_distributed(_train, 2, data, str(tmp_path / "resumed"), 1, True)[0]
    assert _losses(resumed) == pytest.approx(_losses(straight), rel=0, abs=1e-6)
    from megatron_alignpt.train.checkpoint import saved_metadata

    meta = saved_metadata(tmp_path / "dp2" / "checkpoints" / "iter_0000006")
    assert (meta["distrib_optim_sharding_type"], meta["distributed_optimizer"]) == ("fully_reshardable", True)


@pytest.fixture(scope="module")
def dp2_run(tiny_lm_data, tmp_path_factory):
    """Six steps at DP=2 with the sharded optimizer, checkpointed every two steps."""
    from megatron_alignpt.testing import run_distributed

    data = {k: v for k, v in tiny_lm_data.items() if k != "texts"}
    out = tmp_path_factory.mktemp("zero1") / "dp2"
    return out, run_distributed(_train, 2, data, str(out), 1, True)[0]


@pytest.mark.parametrize("world,tp", [(1, 1), (4, 1), (2, 2)], ids=["dp1", "dp4", "tp2"])
def test_dp2_checkpoint_reloads_at_other_layouts_with_its_adam_state(data, dp2_run, tmp_path, world, tp, monkeypatch):
    """Resumed from the DP=2 checkpoint at step 4, steps 5-6 reproduce the DP=2 run (step 6 depends on
    the Adam moments, as the control with zeroed moments shows)."""
    from megatron_alignpt.testing import run_distributed

    source, reference = dp2_run
    _continue_from(source, tmp_path / "other", 4)
    if world == 1:
        continued = _train(0, data, tmp_path / "other")
    else:
        continued = run_distributed(_train, world, data, str(tmp_path / "other"), tp, True)[0]
    assert _losses(continued, 5) == pytest.approx(_losses(reference, 5), abs=5e-5)
    if world == 1:
        _continue_from(source, tmp_path / "forgetful", 4)
        _forget_adam_moments_on_load(monkeypatch)
        forgetful = _train(0, data, tmp_path / "forgetful")
        assert _losses(forgetful, 5)[0] == pytest.approx(_losses(reference, 5)[0], abs=5e-5)  # same weights ...
        assert abs(_losses(forgetful, 6)[0] - _losses(reference, 6)[0]) > 1e-3  # ... a different step 5 update


def test_dp_reshardable_format_resumes_at_another_data_parallel_size(data, tmp_path):
    from megatron_alignpt.testing import run_distributed

    reference = run_distributed(_train, 2, data, str(tmp_path / "dp2"), 1, True, None, None, "dp_reshardable")[0]
    _continue_from(tmp_path / "dp2", tmp_path / "dp1", 4)
    continued = _train(0, data, tmp_path / "dp1")
    assert _losses(continued, 5) == pytest.approx(_losses(reference, 5), abs=5e-5)


def test_resume_refuses_a_different_optimizer_kind(data, tmp_path):
    _train(0, data, tmp_path / "run", stop_after=2)
    with pytest.raises(ValueError, match="distributed optimizer state and this run sets parallel.distributed_optimizer=false"):
        _train(0, data, tmp_path / "run", dist=False)
