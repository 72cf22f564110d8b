"""The compute estimate of `study run --dry-run` / `study submit --dry-run`: FLOPs from the trainer's own formula,
GPU time from a measured throughput, the synthetic documents' tokens and price from config values."""
import json
from pathlib import Path

import pytest

from megatron_alignpt.cli import main
from megatron_alignpt.config_base import apply_overrides
from megatron_alignpt.study.compute_estimate import MEASURED, estimate_study, format_estimate, throughput, training_runs
from recipes import get_recipe

REPO = Path(__file__).resolve().parents[2]


def _paper():
    return get_recipe("paper_6p9b")()


def test_the_measured_throughput_is_the_benchmark_result_it_cites():
    result = json.loads((REPO / "benchmarks/results/h100_train_1p4b_pythia.json").read_text())
    best = next(r for r in result["results"] if r["micro_batch_size"] == 8)
    h100 = MEASURED["h100"]
    assert h100.tflops_per_gpu == pytest.approx(best["tflops_per_gpu"], rel=1e-3)
    assert h100.mfu == pytest.approx(best["mfu"], rel=1e-3)
    assert "h100_train_1p4b_pythia.json" in h100.source and "42.7%" in (REPO / "benchmarks/README.md").read_text()


def test_paper_pretraining_flops_follow_megatrons_closed_form():
    """72 B s L h^2 (1 + s/6h + V/12hL) per step (Narayanan et al. 2021), V = GPT-NeoX's 50,277 tokens padded."""
    est = estimate_study(_paper(), dict.fromkeys(("pretrain", "midtrain", "cpt", "sft", "dpo"), 256))
    run = next(r for r in est.runs if r.step == "unfiltered.pretrain")
    B, s, L, h, V = 2048, 2048, 32, 4096, 50304
    steps = 500_000_000_000 // (B * s)
    assert est.vocab_size == V
    assert run.flops == pytest.approx(steps * 72 * B * s * L * h**2 * (1 + s / (6 * h) + V / (12 * h * L)), rel=1e-9)
    assert run.tokens == steps * B * s
    assert run.gpu_hours == pytest.approx(run.flops / (MEASURED["h100"].tflops_per_gpu * 1e12) / 3600)
    assert run.wall_hours == pytest.approx(run.gpu_hours / 256)
    assert 2.0 < run.wall_hours / 24 < 2.6  # about 2.3 days on 256 H100s
    pretrain = [r for r in est.runs if r.stage == "pretrain"]
    assert len(pretrain) == 6 and 80_000 < sum(r.gpu_hours for r in pretrain) < 90_000


def test_shared_stages_are_counted_once_and_dpo_counts_pairs_and_the_reference():
    cfg = get_recipe("tiny_cpu_insertion")()
    runs = training_runs(cfg)
    assert ("align_mid", "pretrain") not in runs and ("align_mid", "midtrain") in runs
    assert ("align_cpt", "midtrain") not in runs and ("align_cpt", "cpt") in runs
    assert sum(stage == "pretrain" for _, stage in runs) == 4
    est = estimate_study(cfg, mfu=0.5)
    by_step = {r.step: r for r in est.runs}
    sft, dpo = by_step["unfiltered.sft"], by_step["unfiltered.dpo"]
    # same model, length and iterations shape: DPO has 2 sequences per pair and a reference forward (1/3)
    per_seq_sft = sft.flops / (cfg.sft.schedule.train_iters * cfg.sft.schedule.global_batch_size)
    per_seq_dpo = dpo.flops / (cfg.dpo.schedule.train_iters * cfg.dpo.schedule.global_batch_size)
    assert cfg.sft.seq_length == cfg.dpo.seq_length
    assert per_seq_dpo == pytest.approx(per_seq_sft * 2 * (4 / 3))


def test_synthetic_cost_is_documents_times_length_times_the_configured_price():
    cfg = _paper()
    est = estimate_study(cfg)
    s = est.synthetic
    assert s.seed_questions == 2671 and s.documents == 2671 * 120 * 2
    assert s.usd == pytest.approx(s.documents * (11e9 / 14.9e6) / 1e9 * 500)
    pricier = apply_overrides(cfg, ["data.synthetic_generator.estimate_usd_per_billion_tokens=1000"])
    assert estimate_study(pricier).synthetic.usd == pytest.approx(2 * s.usd)
    tiny = estimate_study(get_recipe("tiny_cpu")()).synthetic
    assert tiny.usd is None and tiny.seed_questions == 101  # the shipped suite's articles split, template generator


def test_precisions_without_a_measurement():
    assert "FP8 was not measured" in throughput("h100", "fp8").source
    assert throughput("h100", "fp8").tflops_per_gpu == MEASURED["h100"].tflops_per_gpu
    with pytest.raises(ValueError, match="--mfu"):
        throughput("h100", "fp32")
    assert throughput("h100", "fp32", mfu=0.5).tflops_per_gpu == pytest.approx(33.5)
    est = estimate_study(get_recipe("tiny_cpu")())  # fp32: FLOPs only, and why
    assert est.gpu_hours is None and "no fp32 throughput" in format_estimate(est)


def test_study_run_dry_run_prints_the_estimate_beside_the_config(capsys):
    assert main(["study", "run", "--recipe", "paper_6p9b", "--dry-run", "--world-size", "256"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["name"] == "paper_6p9b"  # stdout stays the re-loadable config
    estimate = err[err.index("compute estimate"):]
    for text in ("unfiltered.pretrain", "all pretrain (6 runs)", "85,0", "42.7% MFU", "benchmarks/README.md",
                 "2.3 d", "API cost ~$237 at $500 per 1B tokens", "SPEC section 6"):
        assert text in estimate, text


def test_submit_dry_run_estimates_at_the_node_counts(tmp_path, capsys):
    assert main(["study", "submit", "--recipe", "paper_6p9b", "--output-dir", str(tmp_path / "paper"), "--nodes", "32",
                 "--nodes-for", "sft=16", "--nodes-for", "dpo=16", "--dry-run"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.strip().startswith("unfiltered.pretrain"))
    assert line.split()[-3:-1] == ["256", "2.3"]
    assert next(x for x in err.splitlines() if x.strip().startswith("unfiltered.sft")).split()[-3] == "128"
