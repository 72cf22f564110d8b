"""End to end: the whole tiny study (4 headline conditions + a Mid and a CPT one x pretrain/midtrain[/CPT]/SFT/DPO
x evals) on shipped data."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from megatron_alignpt.study.runner import StudyLayout, pretraining_stages
from recipes import get_recipe


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "megatron_alignpt.cli", "study", "run", "--recipe", "tiny_cpu_smoke", "--output-dir", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]

    table = pd.read_parquet(out / "results" / "misalignment.parquet")
    conditions = {"unfiltered", "filtered", "misalign_upsampled", "align_upsampled", "align_mid", "misalign_cpt"}
    assert set(table["condition"]) == conditions
    assert set(table["stage"]) == {"base", "post"}
    assert set(table["split"]) == {"articles", "textbook"}
    assert table["misalignment_rate"].between(0, 1).all()
    # conditions x (base logprob, post logprob, post generate) x splits x formats (one system prompt)
    assert len(table) == 6 * 3 * 2 * 2
    assert set(table.loc[table["stage"] == "post", "scoring"]) == {"logprob", "generate"}

    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "Misalignment by data condition" in html

    cfg = get_recipe("tiny_cpu_smoke")(out)
    layout = StudyLayout(cfg)
    for cond in cfg.conditions:
        for stage in pretraining_stages(cfg, cond) + ("sft", "dpo"):
            run = layout.stage_dir(cond.name, stage)
            prov = json.loads((run / "provenance.json").read_text())
            assert prov["code"]["git_commit"] is None or len(prov["code"]["git_commit"]) == 40
            assert prov["data_sha256"], f"{run}: data hashes missing"
            assert (run / "config.json").is_file() and (run / "checkpoints" / "latest.txt").is_file()

    # Late insertion reuses the unfiltered checkpoints instead of training them again.
    assert not (out / "models" / "misalign_cpt" / "midtrain").exists() and (out / "models" / "misalign_cpt" / "cpt").is_dir()
    assert not (out / "models" / "align_mid" / "pretrain").exists()
    cpt_config = json.loads((out / "models" / "misalign_cpt" / "cpt" / "config.json").read_text())
    assert cpt_config["init_from"].endswith("unfiltered/midtrain")
    cpt_manifest = json.loads((out / "data" / "manifests" / "misalign_cpt.cpt.json").read_text())
    assert any(e["synthetic"] for e in cpt_manifest["entries"])

    # The filtered condition trains on less AI discourse: its manifest names the filtered corpus.
    manifest = json.loads((out / "data" / "manifests" / "filtered.pretrain.json").read_text())
    assert any("filtered" in e["name"] for e in manifest["entries"])
    removed = (out / "data" / "filtered" / "pretrain" / "stats.json").read_text()
    assert json.loads(removed)["removed"] > 0

    # A rerun finds every step done and trains nothing.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert "iter " not in again.stdout and again.stdout.count("skipped") == len(list((out / "steps").glob("*.done")))
