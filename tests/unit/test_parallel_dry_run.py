"""`--dry-run` renders a validated config and its resolved parallel/precision layout (paper_6p9b on H100s)."""
import dataclasses
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from megatron_alignpt.config_base import to_dict


@pytest.fixture
def alignpt(capsys, monkeypatch):
    """`alignpt ARGS` in this process (the CLI's own main): returncode, stdout, stderr."""
    from megatron_alignpt.cli import main

    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        rc = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)

    return run


def layout_of(stderr: str) -> dict:
    """The layout JSON on stderr (a study's dry run prints its compute estimate after it)."""
    return json.JSONDecoder().raw_decode(stderr[stderr.index("layout: ") + len("layout: "):])[0]


def test_study_dry_run_renders_the_paper_layout_for_256_gpus(tmp_path):
    """As a user runs it: the installed CLI in a fresh process."""
    res = subprocess.run([sys.executable, "-m", "megatron_alignpt.cli", "study", "run", "--recipe", "paper_6p9b",
                          "--dry-run", "--world-size", "256"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    cfg = json.loads(res.stdout)
    assert cfg["parallel"]["tensor_parallel"] == 4 and cfg["parallel"]["sequence_parallel"] is True
    assert cfg["parallel"]["distributed_optimizer"] is True and cfg["parallel"]["precision"] == "bf16"
    assert cfg["model"]["layer_impl"] == "te"
    layout = layout_of(res.stderr)
    assert set(layout) == {"pretrain", "midtrain", "cpt", "sft", "dpo"}
    pre, mid = layout["pretrain"], layout["midtrain"]
    assert pre["split"] == "256 ranks = TP 4 x CP 1 x DP 64 x PP 1"
    assert (pre["micro_batches_per_step"], mid["micro_batches_per_step"]) == (16, 4)
    assert pre["tokens_per_step"] == mid["tokens_per_step"] == 4_194_304
    assert pre["megatron"]["TransformerConfig"]["sequence_parallel"] is True
    assert pre["megatron"]["DistributedDataParallelConfig"]["use_distributed_optimizer"] is True
    assert "fp8" not in pre["megatron"]["TransformerConfig"]


def test_fp8_variant_and_bad_layouts(tmp_path, alignpt):
    from recipes.paper_6p9b import paper_6p9b_fp8

    fp8 = paper_6p9b_fp8()
    assert (fp8.parallel.precision, fp8.parallel.fp8_format, fp8.parallel.fp8_recipe) == ("fp8", "hybrid", "current")
    res = alignpt("study", "run", "--recipe", "paper_6p9b", "--set", "parallel.precision=fp8", "--dry-run",
                  "--world-size", "256", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    tc = layout_of(res.stderr)["pretrain"]["megatron"]["TransformerConfig"]
    assert (tc["fp8"], tc["fp8_recipe"], tc["bf16"]) == ("hybrid", "tensorwise", True)

    res = alignpt("study", "run", "--recipe", "paper_6p9b", "--dry-run", "--world-size", "192", cwd=tmp_path)
    assert res.returncode == 2
    assert "pretrain: schedule.global_batch_size" in res.stderr and "2 x 48" in res.stderr
    res = alignpt("study", "run", "--recipe", "paper_6p9b", "--dry-run", "--set", "parallel.tensor_parallel=3",
                  cwd=tmp_path)
    assert res.returncode == 2 and "num_attention_heads=32 is not divisible by tensor_parallel=3" in res.stderr
    res = alignpt("study", "run", "--recipe", "paper_6p9b", "--dry-run", "--set", "model.layer_impl=sdpa",
                  "--set", "parallel.precision=fp8", cwd=tmp_path)
    assert res.returncode == 2 and "set model.layer_impl=te" in res.stderr


def test_train_dry_run_resolves_a_pipelined_stage(tmp_path, alignpt):
    from megatron_alignpt.model.config import ParallelConfig, RecomputeConfig
    from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig
    from recipes.paper_6p9b import paper_model

    stage = StageConfig(
        name="cpt", kind="cpt", model=dataclasses.replace(paper_model(), seq_length=8192),
        optimizer=OptimizerConfig(lr=1e-4), schedule=ScheduleConfig(train_iters=100, global_batch_size=512, micro_batch_size=1),
        tokenizer=tmp_path / "tokenizer.json", data=tmp_path / "blend.json", output_dir=tmp_path / "out",
        init_from=tmp_path / "midtrain",
        parallel=ParallelConfig(tensor_parallel=2, pipeline_parallel=2, virtual_pipeline=2, context_parallel=2,
                                sequence_parallel=True, distributed_optimizer=True, precision="bf16",
                                recompute=RecomputeConfig("selective")),
    )
    (tmp_path / "stage.json").write_text(json.dumps(to_dict(stage)))
    res = alignpt("train", "--config", "stage.json", "--dry-run", "--world-size", "64", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == json.loads(json.dumps(to_dict(stage)))  # stdout re-loads as the config
    layout = layout_of(res.stderr)
    assert layout["split"] == "64 ranks = TP 2 x CP 2 x DP 8 x PP 2"
    assert layout["layers_by_pipeline_rank"] == ["0-7, 16-23", "8-15, 24-31"]
    assert layout["micro_batches_per_step"] == 64 and layout["pipeline_bubble"] == pytest.approx(1 / 129, abs=1e-4)
    assert layout["megatron"]["TransformerConfig"]["recompute_granularity"] == "selective"
    res = alignpt("train", "--config", "stage.json", "--dry-run", "--world-size", "36", cwd=tmp_path)
    assert res.returncode == 2 and "world size 36 is not a multiple of" in res.stderr and "2 x 2 x 2 = 8" in res.stderr
    res = alignpt("train", "--config", "stage.json", "--dry-run", "--set", "parallel.context_parallel=3", cwd=tmp_path)
    assert res.returncode == 2 and "divisible by 2 x context_parallel = 6" in res.stderr
