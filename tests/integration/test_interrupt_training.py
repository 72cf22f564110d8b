"""Ctrl-C during `alignpt train`: the first saves a checkpoint at the next step boundary and exits 130
(before: it stopped without one, while SIGTERM saved one); a second stops at once. Either way the
next run resumes, cleans up what the interrupted one left, and finishes."""
import json
import signal
import subprocess
import sys

import pytest

from megatron_alignpt.config_base import to_dict
from tests.unit.test_train_core import stage

ITERS = 30


def start(config):
    cmd = [sys.executable, "-m", "megatron_alignpt.cli", "train", "--config", str(config)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt_after_first_step(proc, times: int) -> tuple[str, str]:
    import time

    seen = []
    for line in proc.stdout:
        seen.append(line)
        if " iter 1/" in line:
            for _ in range(times):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.3)
            break
    out, err = proc.communicate(timeout=300)
    return "".join(seen) + out, err


def iterations(run):
    return [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("times", [1, 2])
def test_ctrl_c_then_resume(tiny_lm_data, tmp_path, times):
    cfg = stage(tiny_lm_data, tmp_path / "run", iters=ITERS, save_interval=0)
    cfg.schedule.log_interval = 1
    config = tmp_path / "stage.json"
    config.write_text(json.dumps(to_dict(cfg)))
    proc = start(config)
    out, err = interrupt_after_first_step(proc, times)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    if times == 1:
        stopped = next(line for line in out.splitlines() if "stopped at iteration" in line)
        iteration = int(stopped.split("stopped at iteration ")[1].split()[0])
        assert "(SIGINT)" in stopped and 1 <= iteration < ITERS
        assert (tmp_path / "run" / "checkpoints" / "latest.txt").read_text().strip() == str(iteration)
    else:
        assert "alignpt: interrupted" in err
    again = subprocess.run([sys.executable, "-m", "megatron_alignpt.cli", "train", "--config", str(config)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    if times == 1:
        assert f"resumed from {tmp_path / 'run' / 'checkpoints' / f'iter_{iteration:07d}'}" in again.stdout
    assert iterations(tmp_path / "run") == list(range(1, ITERS + 1))
    leftovers = [p.name for p in (tmp_path / "run").rglob(".*") if ".tmp" in p.name or ".old" in p.name]
    assert leftovers == [] and not (tmp_path / "run" / "stage.lock").exists()
