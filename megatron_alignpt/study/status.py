"""Where each step of a study stands, read from its directory alone (no Slurm needed).

    alignpt study status --study /lustre/runs/paper_6p9b
    alignpt study status --recipe tiny_cpu --output-dir runs/demo [--json]

Sources: `steps/<step>.done` markers (done, with the time), training `metrics.jsonl` and
`checkpoints/latest.txt` (iteration reached vs `train_iters`), `jobs.json` (job ids) and the job logs
under `logs/` (the batch script's closing line: finished / requeued after preemption / gave up, and the
last error line of a failed step). States: done, running, requeued, failed, pending.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from megatron_alignpt.launch.jobs import read_jobs
from megatron_alignpt.launch.slurm import job_log, log_dir
from megatron_alignpt.study.config import StudyConfig
from megatron_alignpt.study.plan import PlanStep, StudyPlan, build_plan
from megatron_alignpt.train.run_dir import latest_checkpoint_file, metrics_file

_FINISHED = re.compile(r"^\[alignpt\] \S+ step (?P<step>\S+): finished with status (?P<status>\d+)")
_REQUEUED = re.compile(r"^\[alignpt\] \S+ step (?P<step>\S+): stopped for preemption")
_GAVE_UP = re.compile(r"^\[alignpt\] \S+ step (?P<step>\S+): stopped .*giving up")
_CANCELLED = re.compile(r"\*\*\* (JOB|STEP) \S+ .*CANCELLED AT (?P<rest>.*) \*\*\*")
_ERROR = re.compile(r"^(\[(default)?rank\d+\]:\s*)?(?P<msg>alignpt: error: .*|[\w.]*(Error|Exception|Interrupt): .*)$")


@dataclass
class StepStatus:
    step: str
    state: str
    """done | running | requeued | failed | pending"""
    detail: str = ""
    job_id: Optional[str] = None


def load_study(study: Path) -> StudyConfig:
    from megatron_alignpt.config_base import from_dict, load_json_file

    path = Path(study) / "study.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a study directory (or nothing ran yet); pass --recipe instead")
    cfg = from_dict(StudyConfig, load_json_file(path), source=path)
    cfg.output_dir = Path(study)
    return cfg


def _training_progress(plan: StudyPlan, step: PlanStep) -> Optional[str]:
    run = Path(step.outputs[0])
    total = plan.resolved(step).schedule.train_iters
    iteration = 0
    metrics = metrics_file(run)
    if metrics.is_file():
        lines = [line for line in metrics.read_text().splitlines() if line.strip()]
        if lines:
            iteration = json.loads(lines[-1])["iteration"]
    latest = latest_checkpoint_file(run)
    saved = int(latest.read_text().strip()) if latest.is_file() else None
    if not iteration and saved is None:
        return None
    return f"iteration {iteration}/{total}" + (f", checkpoint at {saved}" if saved is not None else "")


def _latest_log(study: Path, step: str, job_id: Optional[str]) -> Optional[Path]:
    if job_id and job_log(study, step, job_id).is_file():
        return job_log(study, step, job_id)
    logs = sorted(log_dir(study).glob(f"{step}.*.out"), key=lambda p: p.stat().st_mtime)
    return logs[-1] if logs else None


def _read_log(path: Path) -> tuple[Optional[str], Optional[str]]:
    """(outcome, last error line): outcome is finished:<status> / requeued / gave_up / cancelled / None."""
    outcome, error = None, None
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if m := _FINISHED.match(line):
            outcome = f"finished:{m['status']}"
        elif _GAVE_UP.match(line):
            outcome = "gave_up"
        elif _REQUEUED.match(line):
            outcome = "requeued"
        elif m := _CANCELLED.search(line):
            outcome = f"cancelled:{m['rest']}"
        elif line.startswith("[alignpt]"):  # a new attempt started after a requeue
            outcome = None
        if (m := _ERROR.match(line)) and "ChildFailedError" not in line:  # torchrun's summary hides the cause
            error = m["msg"]
    return outcome, error


def step_status(plan: StudyPlan, plan_step: PlanStep, jobs: dict[str, dict]) -> StepStatus:
    layout, step = plan.layout, plan_step.name
    job_id = jobs.get(step, {}).get("job_id")
    marker = layout.marker(step)
    if marker.is_file():
        seconds = json.loads(marker.read_text()).get("seconds")
        when = datetime.fromtimestamp(marker.stat().st_mtime).isoformat(sep=" ", timespec="seconds")
        took = f" in {seconds:.0f}s" if isinstance(seconds, (int, float)) else ""
        return StepStatus(step, "done", f"finished {when}{took}", job_id)
    progress = _training_progress(plan, plan_step) if plan_step.kind == "train" else None
    log = _latest_log(layout.root, step, job_id)
    outcome, error = _read_log(log) if log else (None, None)
    job = f"job {job_id}" if job_id else (f"log {log.name}" if log else "")
    details = [d for d in (progress, job) if d]
    if outcome and (outcome.startswith(("finished", "cancelled")) or outcome == "gave_up"):
        kind, _, value = outcome.partition(":")
        reason = {"gave_up": "preempted too often (max_requeues)", "cancelled": f"cancelled at {value}",
                  "finished": f"exited with status {value}"}[kind]
        if outcome == "finished:0":
            reason = "job ended without the step's done marker"
        return StepStatus(step, "failed", "; ".join([reason] + details + ([error] if error else [])), job_id)
    if outcome == "requeued":
        return StepStatus(step, "requeued", "; ".join(["preempted, checkpointed and requeued"] + details), job_id)
    if log is not None or progress is not None:
        return StepStatus(step, "running", "; ".join(details), job_id)
    return StepStatus(step, "pending", f"job {job_id}" if job_id else "not submitted", job_id)


def study_status(study: Path, cfg: Optional[StudyConfig] = None) -> list[StepStatus]:
    cfg = cfg or load_study(study)
    cfg.output_dir = Path(study)
    plan = build_plan(cfg)
    jobs = read_jobs(plan.layout.root)
    return [step_status(plan, s, jobs) for s in plan]


def format_status(rows: list[StepStatus]) -> str:
    width = max(len(r.step) for r in rows)
    counts = {state: sum(r.state == state for r in rows) for state in ("done", "running", "requeued", "failed", "pending")}
    lines = [f"{r.step:<{width}}  {r.state:<8}  {r.detail}".rstrip() for r in rows]
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items() if n))
    return "\n".join(lines)


def status_json(rows: list[StepStatus]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)

