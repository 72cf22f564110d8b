"""Render and submit Slurm batch jobs: the job script of one command, given its resources.

Knows nothing of studies (`study.submit` decides what each job runs and needs). A job of kind
- ``train``: `srun` starts one torchrun per node (`--nnodes $SLURM_NNODES`, c10d rendezvous on the first
  node), GPUs per node from the site;
- ``eval``: one node, one worker per GPU it asks for (torchrun);
- ``cpu``: one CPU task, no torchrun.

Preemption: `#SBATCH --signal=B:USR1@<lead> --requeue`. The batch shell traps USR1/TERM and creates
`$ALIGNPT_STOP_FILE`; the trainer checkpoints after the current step and exits (status 75, marker file);
the script then runs `scontrol requeue $SLURM_JOB_ID` and the requeued job resumes from the checkpoint.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

from megatron_alignpt.config_base import ConfigError
from megatron_alignpt.launch.preemption import MARKER_ENV, PREEMPTED_EXIT, STOP_FILE_ENV
from megatron_alignpt.launch.site import SiteConfig

JobKind = Literal["train", "eval", "cpu"]


class LaunchError(ValueError):
    """sbatch refused the job (bad partition/account/time...) or is not available; the CLI exits with status 2."""


def log_dir(study: Path) -> Path:
    return study / "logs"


def log_pattern(study: Path, step: str) -> Path:
    """Slurm's --output for a step's job (%j: the job id, kept across requeues)."""
    return log_dir(study) / f"{step}.%j.out"


def job_log(study: Path, step: str, job_id: str) -> Path:
    return log_dir(study) / f"{step}.{job_id}.out"


def script_path(study: Path, step: str) -> Path:
    return study / "jobs" / f"{step}.sbatch"


@dataclass
class JobResources:
    kind: JobKind
    nodes: int
    gpus_per_node: int
    """0 for CPU-only steps."""
    nproc_per_node: int
    """torchrun workers per node; 0 runs the step as a single process."""
    partition: str
    cpus_per_task: int
    image: str
    exclusive: bool
    time: str = ""
    """--time; "" uses the site's."""


def _q(value: object) -> str:
    return shlex.quote(str(value))


def _sbatch_lines(name: str, step: str, res: JobResources, site: SiteConfig, study: Path) -> list[str]:
    lines = [f"--job-name=alignpt.{name}.{step}", f"--nodes={res.nodes}", "--ntasks-per-node=1"]
    if res.gpus_per_node:
        lines.append(f"--gpus-per-node={res.gpus_per_node}")
    if res.cpus_per_task:
        lines.append(f"--cpus-per-task={res.cpus_per_task}")
    if res.partition:
        lines.append(f"--partition={res.partition}")
    if site.account:
        lines.append(f"--account={site.account}")
    lines += [f"--time={res.time or site.time}", f"--output={log_pattern(study, step)}", "--open-mode=append",
              f"--signal=B:USR1@{site.signal_seconds}", "--requeue", "--export=ALL"]
    if res.exclusive:
        lines.append("--exclusive")
    return lines + list(site.sbatch)


def _srun_options(res: JobResources, site: SiteConfig) -> list[str]:
    opts = [f"--nodes={res.nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    if res.cpus_per_task:
        opts.append(f"--cpus-per-task={res.cpus_per_task}")  # srun no longer inherits it from sbatch
    if res.image:
        opts.append(f"--container-image={res.image}")
        if site.mounts:
            opts.append(f"--container-mounts={','.join(site.mounts)}")
        if site.workdir:
            opts.append(f"--container-workdir={site.workdir}")
        if site.container_env:
            opts.append(f"--container-env={','.join(site.container_env)}")
    return opts + list(site.srun)


def _step_command(res: JobResources, site: SiteConfig, command: list[str]) -> list[str]:
    """The srun line (a list of already shell-quoted words)."""
    words = ["srun"] + [_q(o) for o in _srun_options(res, site)]
    if res.nproc_per_node:
        words += ["torchrun", "--nnodes", '"$SLURM_NNODES"', "--nproc-per-node", str(res.nproc_per_node),
                  "--rdzv-backend", "c10d", "--rdzv-endpoint", f'"$HEAD_NODE:{site.rdzv_port}"',
                  "--rdzv-id", '"$SLURM_JOB_ID"', "--max-restarts", "0", "--no-python"]
    return words + [_q(w) for w in command]


def _header(name: str, step: str, res: JobResources, notes: Sequence[str], site: SiteConfig) -> list[str]:
    from megatron_alignpt.provenance import code_version

    code = code_version()
    commit = code.get("git_commit") or code.get("package")
    lines = [f"# alignpt batch job: study {name!r}, step {step} ({res.kind})", *[f"# {n}" for n in notes],
             f"# code: {commit}{' (uncommitted changes)' if code.get('git_dirty') else ''}"]
    if site.container_env:
        lines.append(f"# passed through from the submitter's environment, never written here: {', '.join(site.container_env)}")
    return lines


_FOOTER = """\
log() { echo "[alignpt] $(date -u +%Y-%m-%dT%H:%M:%SZ) $*"; }

step_pid=""
stop_requested=0
# shellcheck disable=SC2317,SC2329  # called from the traps below
request_stop() {
  stop_requested=1
  touch "$ALIGNPT_STOP_FILE"
@@KILL@@}
trap 'request_stop USR1' USR1
trap 'request_stop TERM' TERM

@@HEAD@@log "step $STEP: job ${SLURM_JOB_ID} attempt ${ATTEMPT} on ${SLURM_NNODES} node(s)"
@@SRUN@@ &
step_pid=$!
status=0
wait "$step_pid" || status=$?
while (( status > 128 )) && kill -0 "$step_pid" 2>/dev/null; do
  status=0  # a trapped signal interrupted wait; the step is still running
  wait "$step_pid" || status=$?
done

if [[ -f "$ALIGNPT_PREEMPT_MARKER" ]] || (( status == PREEMPTED_EXIT )) || { (( stop_requested )) && (( status != 0 )); }; then
  if (( ATTEMPT >= MAX_REQUEUES )); then
    log "step $STEP: stopped (status $status) after ${ATTEMPT} requeues (max_requeues); giving up"
    exit 1
  fi
  log "step $STEP: stopped for preemption (status $status); requeueing job ${SLURM_JOB_ID}"
  scontrol requeue "$SLURM_JOB_ID"
  exit "$PREEMPTED_EXIT"
fi
log "step $STEP: finished with status $status"
exit "$status"
"""


def render_batch_script(study: Path, name: str, step: str, command: Sequence[str], site: SiteConfig,
                        res: JobResources, notes: Sequence[str] = ()) -> str:
    """A self-contained bash batch script running ``command`` as job ``step`` of study ``name`` in directory
    ``study`` (logs, stop files); ``notes`` go into its header. No secret values: see SiteConfig.container_env."""
    study = Path(study)
    if re.search(r"\s", str(study)):
        raise ConfigError(f"output_dir {study}: Slurm log paths cannot contain whitespace; choose another directory")
    lines = ["#!/bin/bash"] + _header(name, step, res, notes, site)
    lines += [f"#SBATCH {opt}" for opt in _sbatch_lines(name, step, res, site, study)]
    lines += [
        "set -euo pipefail",
        "",
        f"STUDY_DIR={_q(study)}",
        f"STEP={_q(step)}",
        f"PREEMPTED_EXIT={PREEMPTED_EXIT}",
        f"MAX_REQUEUES={site.max_requeues}",
        'ATTEMPT="${SLURM_RESTART_COUNT:-0}"',
        f'export {STOP_FILE_ENV}="$STUDY_DIR/logs/$STEP.$SLURM_JOB_ID.$ATTEMPT.stop"',
        f'export {MARKER_ENV}="$STUDY_DIR/logs/$STEP.$SLURM_JOB_ID.$ATTEMPT.preempted"',
        f'rm -f "${STOP_FILE_ENV}" "${MARKER_ENV}"',
        "",
        "# Job environment (site file `env`; NCCL settings for the collectives).",
    ]
    lines += [f"export {name}={_q(value)}" for name, value in sorted(site.env.items())]
    if res.kind == "train":
        lines.append(f"export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={site.signal_seconds}  # torchrun's grace before SIGKILL")
    if site.setup:
        lines += ["", "# Site setup (site file `setup`)."] + list(site.setup)
    srun = " \\\n  ".join(_wrap(_step_command(res, site, list(command))))
    if res.kind == "train":  # the trainer watches the stop file, checkpoints after the current step and exits
        kill = '  log "step $STEP: received SIG$1; asking it to checkpoint and stop"\n'
    else:  # nothing to save: stop now, the requeued job reruns the step
        kill = ('  log "step $STEP: received SIG$1; stopping it (it reruns after the requeue)"\n'
                '  if [[ -n "$step_pid" ]]; then kill -TERM "$step_pid" 2>/dev/null || true; fi\n')
    head = 'HEAD_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"\n' if res.nproc_per_node else ""
    footer = _FOOTER.replace("@@KILL@@", kill).replace("@@HEAD@@", head).replace("@@SRUN@@", srun)
    return "\n".join(lines) + "\n\n" + footer


def _wrap(words: list[str]) -> list[str]:
    """Group words into lines: srun options, torchrun options, the alignpt command."""
    groups, current = [], []
    for word in words:
        if word in ("torchrun", "alignpt") and current:
            groups.append(" ".join(current))
            current = []
        current.append(word)
    groups.append(" ".join(current))
    return groups


def dependency_option(after_ok: Sequence[str] = (), after_any: Sequence[str] = ()) -> Optional[str]:
    """`--dependency=afterok:..,afterany:..` (all must hold): an `afterok` job that fails cancels this one;
    an `afterany` job only has to end, however it ends."""
    parts = [f"afterok:{':'.join(after_ok)}"] if after_ok else []
    parts += [f"afterany:{':'.join(after_any)}"] if after_any else []
    return f"--dependency={','.join(parts)}" if parts else None


def sbatch_submit(script: Path, dependencies: Sequence[str] = (), sbatch: str = "sbatch",
                  any_dependencies: Sequence[str] = ()) -> str:
    """Submit `script`; returns the job id. ``dependencies`` are `afterok` (dependents of a failed job are
    cancelled), ``any_dependencies`` `afterany` (the job waits for them to end, whatever their outcome)."""
    cmd = [sbatch, "--parsable"]
    option = dependency_option(dependencies, any_dependencies)
    if option:
        cmd += [option, "--kill-on-invalid-dep=yes"]
    cmd.append(str(script))
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as err:
        raise LaunchError(f"{sbatch} not found: run on a Slurm login node, or use --dry-run to print the script") from err
    if res.returncode != 0:
        raise LaunchError(f"sbatch {script} failed (status {res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    job_id = res.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise LaunchError(f"sbatch {script}: unexpected output {res.stdout.strip()!r} (expected a job id)")
    return job_id


def write_script(study: Path, step: str, text: str) -> Path:
    from data_prep.atomic import atomic_write_text

    log_dir(study).mkdir(parents=True, exist_ok=True)  # Slurm does not create the --output directory
    path = script_path(study, step)
    atomic_write_text(path, text)
    path.chmod(0o755)
    return path
