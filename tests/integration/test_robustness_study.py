"""The robustness branch end to end on CPU (`tiny_cpu_robustness_smoke`): tampering runs continue every
post-trained model over two seeds with checkpoints every two steps, each checkpoint is scored and lands in the
results table with its seed and tokens seen; an EM fine-tune is probed; TRAIT-style questions are scored; the
report shows the tampering figure and the EM and personality tables. A tampering run interrupted mid-way
resumes to exactly the losses of the uninterrupted one."""
import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest

from megatron_alignpt.study.plan import build_plan
from recipes import get_recipe

CONDITIONS = {"unfiltered", "filtered", "misalign_upsampled", "align_upsampled"}


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_robustness_study_end_to_end_and_a_tampering_run_resumes_exactly(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "megatron_alignpt.cli", "study", "run", "--recipe", "tiny_cpu_robustness_smoke",
           "--output-dir", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]

    table = pd.read_parquet(out / "results" / "misalignment.parquet")
    tamper = table[table["stage"] == "tamper"]
    assert set(tamper["condition"]) == CONDITIONS and set(tamper["scoring"]) == {"cloze"}
    assert set(tamper["tamper"]) == {"benign", "em_finance"}
    benign = tamper[tamper["tamper"] == "benign"]
    # 4 steps of 4 x 128 tokens, a checkpoint every 2 steps: tokens 1024 and 2048, for each of two seeds
    assert set(benign["tamper_seed"]) == {1, 2} and set(benign["tamper_tokens"]) == {1024, 2048}
    assert table.loc[table["stage"] != "tamper", "tamper"].isna().all()

    curve = pd.read_parquet(out / "results" / "tampering.parquet")
    points = curve[(curve["tamper"] == "benign") & (curve["tamper_tokens"] > 0)]
    assert set(points["n_seeds"]) == {2} and points["rate"].between(0, 1).all() and (points["se"] > 0).all()
    assert (curve["tamper_tokens"] == 0).any()  # the post-trained model is the curve's first point

    em = pd.read_parquet(out / "results" / "em_probe.parquet")
    assert set(em["condition"]) == CONDITIONS and set(em["stage"]) == {"post", "tamper"}
    assert set(em.loc[em["stage"] == "tamper", "tamper"]) == {"em_finance"} and (em["n"] == 30).all()
    personality = pd.read_parquet(out / "results" / "personality.parquet")
    assert set(personality["stage"]) == {"base", "post"} and personality["trait"].nunique() == 8

    html = (out / "report.html").read_text()
    assert "Tampering: does the data condition" in html and "Emergent misalignment: the free-form probe" in html
    assert "personality" in html.lower() and html.count("data:image/png;base64") >= 6

    # An interrupted tampering run resumes to the uninterrupted run's losses and learning rates.
    from megatron_alignpt.train.trainer import run_stage

    cfg = get_recipe("tiny_cpu_robustness_smoke")(out)
    plan = build_plan(cfg)
    step = plan.step("align_upsampled.tamper_benign_seed2")
    again = dataclasses.replace(plan.train_config(step), output_dir=tmp_path / "resumed")
    assert run_stage(again, stop_after=3).iteration == 3  # the last checkpoint is at step 2
    assert run_stage(again).iteration == 4
    straight, resumed = _rows(plan.checkpoint_of(step)), _rows(tmp_path / "resumed")
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in straight], rel=0, abs=1e-6)
    assert [r["lr"] for r in resumed] == [r["lr"] for r in straight]
