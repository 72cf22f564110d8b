"""Staged schedules on CPU: pretrain -> midtrain (new blend, refreshed LR, longer sequences) -> CPT,
each stage starting from the previous checkpoint, and a CPT stage interrupted mid-way that resumes
to exactly the losses, learning rates and gradient norms of an uninterrupted one."""
import json
import math
from pathlib import Path

import pytest

from megatron_alignpt.model.config import ModelConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig


def manifest(data, dose: float, stage: str, out: Path) -> Path:
    from data_prep.manifest import DatasetEntry, build_condition_manifest

    root = data["root"]
    m = build_condition_manifest(
        "staged", stage, [DatasetEntry.from_prefix("base", root / "base")],
        DatasetEntry.from_prefix("extra", root / "extra", synthetic=True), dose, tokenizer=str(data["tokenizer"]),
    )
    m.to_json(out)
    return out


def stage(data, out: Path, kind: str, blend: Path, seq: int, lr: float, iters: int, init=None, save_interval=0):
    return StageConfig(
        name=kind, kind=kind,
        model=ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=seq,
                          max_position_embeddings=64, architecture="pythia"),
        optimizer=OptimizerConfig(lr=lr, min_lr=lr / 10, warmup_fraction=0.25),
        schedule=ScheduleConfig(train_iters=iters, global_batch_size=4, micro_batch_size=2, save_interval=save_interval,
                                log_interval=100),
        tokenizer=data["tokenizer"], data=blend, output_dir=out, init_from=init,
    )


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_midtrain_cpt_chain_and_exact_resume(tiny_lm_data, tmp_path):
    from megatron_alignpt.train.trainer import run_stage

    data = tiny_lm_data
    pre = run_stage(stage(data, tmp_path / "pretrain", "pretrain", data["manifest"], 32, 3e-3, 8))
    mid_blend = manifest(data, 0.6, "midtrain", tmp_path / "mid.json")
    mid = run_stage(stage(data, tmp_path / "midtrain", "midtrain", mid_blend, 64, 1e-3, 4, init=tmp_path / "pretrain"))
    cpt_blend = manifest(data, 0.9, "cpt", tmp_path / "cpt.json")

    def cpt(name: str) -> StageConfig:
        return stage(data, tmp_path / name, "cpt", cpt_blend, 64, 5e-4, 8, init=mid.checkpoint, save_interval=3)

    straight = run_stage(cpt("cpt_straight"))
    first = run_stage(cpt("cpt_resumed"), stop_after=5)  # crash after step 5; the last checkpoint is step 3
    assert first.iteration == 5
    resumed = run_stage(cpt("cpt_resumed"))
    assert straight.iteration == resumed.iteration == 8

    p, m = rows(tmp_path / "pretrain"), rows(tmp_path / "midtrain")
    # Midtraining starts from the pretrained weights, on its own blend and sequence length ...
    assert p[-1]["loss"] < p[0]["loss"] - 0.3
    assert m[0]["loss"] < p[0]["loss"] - 0.3, "midtrain did not start from the pretrain checkpoint"
    assert all(r["tokens_per_s"] == pytest.approx(4 * 64 / r["step_time_s"]) for r in m)
    mid_cfg = json.loads((tmp_path / "midtrain" / "checkpoints" / "iter_0000004" / "model.json").read_text())
    assert mid_cfg["model"]["seq_length"] == 64
    # ... with a refreshed schedule: warm up from 0 to the new peak (one warmup step of four), then decay.
    assert [r["lr"] for r in m][:2] == [0.0, 1e-3]
    assert m[-1]["lr"] < 1e-3
    assert json.loads(mid_blend.read_text())["entries"] != json.loads(data["manifest"].read_text())["entries"]

    # The interrupted CPT stage repeats the uninterrupted one exactly: same batches, weights, Adam state, LR.
    s, r = rows(tmp_path / "cpt_straight"), rows(tmp_path / "cpt_resumed")
    assert [x["iteration"] for x in r] == list(range(1, 9))
    assert [x["loss"] for x in r] == pytest.approx([x["loss"] for x in s], rel=0, abs=1e-6)
    assert [x["lr"] for x in r] == [x["lr"] for x in s]
    assert [x["grad_norm"] for x in r] == pytest.approx([x["grad_norm"] for x in s], rel=1e-6)
    assert s[0]["lr"] == 0.0 and max(x["lr"] for x in s) == 5e-4
    assert s[0]["loss"] < p[0]["loss"] - 0.3 and all(math.isfinite(x["loss"]) for x in s)
