"""The throughput scripts on CPU: train_throughput.py with every fusion off, and the HF GPT-NeoX peer on the same
shape and data stream (fp32, no compile), reporting in the same JSON shape; the peer's LR schedule is megatron's."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

SMOKE = ["--size", "tiny", "--micro-batch-sizes", "2", "--warmup", "1", "--steps", "2"]
SHARED_KEYS = {"micro_batch_size", "global_batch", "grad_accumulation", "seq_length", "precision", "layer_impl",
               "world_size", "peak_tflops", "parameters", "warmup_steps", "timed_steps", "timed_s", "step_ms_median",
               "step_ms_all", "tokens_per_s", "model_flops_per_step", "tflops_per_gpu", "mfu", "losses", "grad_norms",
               "data_checksum", "environment"}


def _run(script: str, out: Path, *extra: str) -> dict:
    # its own 1-process group: not the rendezvous of a group an earlier test opened in this process
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *SMOKE, "--out", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_ours_with_fusions_off_and_the_hf_peer_report_alike(tmp_path):
    ours = _run("train_throughput.py", tmp_path / "ours.json", "--fusions", "off", "--fusion", "rope=auto")
    peer = _run("hf_train_throughput.py", tmp_path / "hf.json")
    (mine,), (theirs,) = ours["results"], peer["results"]
    assert SHARED_KEYS <= set(mine) and SHARED_KEYS <= set(theirs)
    assert set(ours) == set(peer)  # the same top-level layout

    assert mine["fusions"] == {**dict.fromkeys(mine["fusions"], "off"), "rope": "auto"}
    assert not any(v is True for v in mine["resolved_fusions"].values())  # no fused kernel on CPU
    assert ours["recipe"]["fusions"] == "off" and ours["recipe"]["fusion_overrides"] == ["rope=auto"]

    assert theirs["precision"] == "fp32" and theirs["compile"] is False and theirs["layer_impl"] == "hf-sdpa"
    assert theirs["data_checksum"] == mine["data_checksum"]  # the same synthetic stream
    assert theirs["model_flops_per_step"] == pytest.approx(mine["model_flops_per_step"], rel=1e-12)
    for run in (mine, theirs):
        assert len(run["losses"]) == 3 and all(math.isfinite(x) for x in run["losses"])
        assert abs(run["losses"][0] - math.log(512)) < 0.5  # random init starts near ln(vocab)
        assert run["tokens_per_s"] > 0 and run["mfu"] is None  # no MFU without a GPU peak


def test_hf_peer_learning_rate_is_megatrons_schedule():
    import torch

    from hf_train_throughput import megatron_lr
    from megatron_alignpt.train.config import OptimizerConfig
    from megatron_alignpt.train.optimizer import build_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    cfg = OptimizerConfig(lr=3e-4, min_lr=3e-5, warmup_fraction=0.25)
    scheduler = build_scheduler(optimizer, cfg, 20)
    for step in range(20):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(megatron_lr(step, 3e-4, 3e-5, 5, 20), rel=1e-12, abs=1e-15)
        scheduler.step(increment=1)
