"""A rendered Slurm job on one CPU machine: stand-in `sbatch`/`srun`/`scontrol` on PATH run the tiny
recipe's pretraining step through the real batch script and torchrun. The job gets SIGTERM mid-stage
(as Slurm's preemption / `--signal` does), checkpoints, exits with the requeue status and asks
`scontrol requeue`; the requeued run resumes and ends with the losses of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megatron_alignpt.launch.preemption import PREEMPTED_EXIT
from megatron_alignpt.runtime import free_port

TRAIN_ITERS = 60
JOB_ID = "1001"

SHIMS = {
    # Like `sbatch --parsable`: record the call, print a job id.
    "sbatch": '#!/bin/bash\necho "sbatch $*" >> "$SHIM_LOG"\necho 1001\n',
    # Run the step once, here: drop srun's and pyxis's --options (no container on this machine).
    "srun": '#!/bin/bash\nwhile [[ $# -gt 0 && $1 == --* ]]; do shift; done\nexec "$@"\n',
    # `show hostnames` -> this machine; `requeue` is recorded and the test plays Slurm's part.
    "scontrol": '#!/bin/bash\ncase "$1" in\n  show) echo localhost ;;\n  requeue) echo "requeue $2" >> "$SHIM_LOG" ;;\n'
                '  *) echo "scontrol shim: unsupported $*" >&2; exit 1 ;;\nesac\n',
}


def _write_shims(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, text in SHIMS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)


def _losses(metrics: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in metrics.read_text().splitlines() if line.strip()]


def _last_iteration(metrics: Path) -> int:
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    return json.loads(lines[-1])["iteration"] if lines else 0


def _status(study: Path) -> dict[str, dict]:
    from megatron_alignpt.study.status import study_status

    return {row.step: row for row in study_status(study)}


@pytest.mark.slow
def test_preempted_job_requeues_and_resumes_exactly(tmp_path, monkeypatch):
    from megatron_alignpt.cli import main

    study = tmp_path / "study"
    bin_dir = tmp_path / "bin"
    _write_shims(bin_dir)
    shim_log = tmp_path / "shim.log"
    overrides = ["--set", f"pretrain.schedule.train_iters={TRAIN_ITERS}"]
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{bin_dir}:{venv_bin}:{os.environ['PATH']}")
    monkeypatch.setenv("SHIM_LOG", str(shim_log))

    # Data preparation runs here directly; the training step goes through Slurm's stand-ins.
    assert main(["study", "run", "--recipe", "tiny_cpu_smoke", "--output-dir", str(study), "--only", "data.", *overrides]) == 0
    site = tmp_path / "site.toml"
    site.write_text(f'gpus_per_node = 1\nrdzv_port = {free_port()}\nenv = {{ OMP_NUM_THREADS = "1" }}\n')
    assert main(["launch", "--recipe", "tiny_cpu_smoke", "--output-dir", str(study), "--step", "unfiltered.pretrain",
                 *overrides, "--site", str(site), "--image", "nvcr.io#nvidia/pytorch:25.11-py3",
                 "--mounts", f"{tmp_path}:{tmp_path}"]) == 0
    jobs = json.loads((study / "jobs.json").read_text())["steps"]
    assert jobs["unfiltered.pretrain"]["job_id"] == JOB_ID
    script = Path(jobs["unfiltered.pretrain"]["script"])
    assert "sbatch --parsable" in shim_log.read_text()

    env = {**os.environ, "SLURM_JOB_ID": JOB_ID, "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "localhost"}
    log = study / "logs" / f"unfiltered.pretrain.{JOB_ID}.out"  # what --output=...%j.out names
    metrics = study / "models" / "unfiltered" / "pretrain" / "metrics.jsonl"

    def run_job(extra_env: dict, preempt_at: int = 0) -> int:
        with log.open("a") as out:
            job = subprocess.Popen(["bash", str(script)], env={**env, **extra_env}, stdout=out, stderr=subprocess.STDOUT)
            if preempt_at:
                deadline = time.monotonic() + 240
                while _last_iteration(metrics) < preempt_at and job.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                job.send_signal(signal.SIGTERM)  # to the batch shell only, as Slurm signals it
            return job.wait(timeout=300)

    # First attempt: SIGTERM mid-stage -> checkpoint, requeue status, `scontrol requeue <job>`.
    status = run_job({}, preempt_at=3)
    text = log.read_text()
    assert status == PREEMPTED_EXIT, text[-3000:]
    assert f"requeue {JOB_ID}" in shim_log.read_text()
    stopped_at = int((study / "models/unfiltered/pretrain/checkpoints/latest.txt").read_text())
    assert 3 <= stopped_at < TRAIN_ITERS
    marker = json.loads((study / "logs" / f"unfiltered.pretrain.{JOB_ID}.0.preempted").read_text())
    assert marker["iteration"] == stopped_at
    assert not (study / "steps" / "unfiltered.pretrain.done").exists()
    row = _status(study)["unfiltered.pretrain"]
    assert row.state == "requeued" and f"checkpoint at {stopped_at}" in row.detail, row

    # Slurm starts the requeued job (same id, SLURM_RESTART_COUNT=1): it resumes and finishes.
    status = run_job({"SLURM_RESTART_COUNT": "1"})
    text = log.read_text()
    assert status == 0, text[-3000:]
    assert "resumed from" in text and f"at iteration {stopped_at}" in text
    assert (study / "steps" / "unfiltered.pretrain.done").is_file()
    assert _status(study)["unfiltered.pretrain"].state == "done"

    # The same stage uninterrupted (`alignpt train`, one thread like the job's worker): same data order and LRs.
    from megatron_alignpt.config_base import to_dict
    from megatron_alignpt.study.plan import build_plan
    from megatron_alignpt.study.status import load_study

    reference = build_plan(load_study(study)).stage_config("unfiltered", "pretrain")
    reference.output_dir = tmp_path / "reference"
    (tmp_path / "reference.json").write_text(json.dumps(to_dict(reference)))
    res = subprocess.run([sys.executable, "-m", "megatron_alignpt.cli", "train", "--config", str(tmp_path / "reference.json")],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    resumed, straight = _losses(metrics), _losses(reference.output_dir / "metrics.jsonl")
    assert len(resumed) == len(straight) == TRAIN_ITERS
    assert resumed == pytest.approx(straight, rel=0, abs=1e-6)
