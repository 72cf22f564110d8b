"""Runs the README's CLI walkthrough as written, top to bottom, in an empty directory, offline."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.readme_commands import cli_script

pytestmark = pytest.mark.slow


def test_readme_cli_section_runs_as_written(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MPLBACKEND="Agg")
    script = "set -euo pipefail\nset -x\n" + cli_script()
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "out"
    for produced in ("filtered/stats.json", "tokenizer.json", "align.pretrain.json", "train/align.pretrain/metrics.jsonl",
                     "eval/summary.json", "eval_generate/summary.json", "caps/capabilities.json", "hf/config.json",
                     "eval_hf/summary.json", "smoke/report.html", "smoke/results/misalignment.parquet", "audit/audit.json"):
        assert (out / produced).is_file(), produced
    assert "compute estimate for study 'paper_6p9b'" in proc.stderr and "API cost ~$" in proc.stderr
