"""Render and submit one Slurm batch job per study step.

Every job runs `alignpt study run --recipe NAME --output-dir STUDY --only STEP` (plus the same `--set`
overrides), so step markers, checkpoints and resume behave as in a local run:
- training steps (`<condition>.{pretrain,midtrain,sft,dpo}`): `srun` starts one torchrun per node
  (`--nnodes $SLURM_NNODES`, c10d rendezvous on the first node), GPUs per node from the site;
- evaluation steps: one node, one worker per tensor-parallel rank;
- data, results and report steps: one CPU task, no torchrun.

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

from megatron_alignpt.config_base import ConfigError, require
from megatron_alignpt.launch.preemption import MARKER_ENV, PREEMPTED_EXIT, STOP_FILE_ENV
from megatron_alignpt.launch.site import SiteConfig

TRAIN_STAGES = ("pretrain", "midtrain", "cpt", "sft", "dpo")
StepKind = Literal["train", "eval", "cpu"]


class LaunchError(ValueError):
    """sbatch refused the job (bad partition/account/time...) or is not available; the CLI exits with status 2."""


def step_kind(step: str) -> StepKind:
    suffix = step.rsplit(".", 1)[-1] if "." in step else ""
    if suffix in TRAIN_STAGES and not step.startswith("data."):
        return "train"
    if suffix.startswith("eval"):
        return "eval"
    return "cpu"


def study_dir(cfg) -> Path:
    return Path(cfg.output_dir).expanduser().resolve()


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
    kind: StepKind
    nodes: int
    gpus_per_node: int
    """0 for CPU-only steps."""
    nproc_per_node: int
    """torchrun workers per node; 0 runs the step as a single process."""
    partition: str
    cpus_per_task: int
    image: str
    exclusive: bool


def step_resources(cfg, step: str, site: SiteConfig, nodes: int = 1) -> JobResources:
    """Nodes/GPUs/image for `step`, checked against the recipe's parallel layout and batch sizes."""
    kind = step_kind(step)
    if kind == "cpu":
        image = (site.prep_image or site.image) if step.startswith("data.") else site.image
        return JobResources(kind, 1, 0, 0, site.cpu_partition_or_default, site.cpu_cpus_per_task, image, False)
    if kind == "eval":
        tp = cfg.parallel.tensor_parallel
        require(tp <= site.gpus_per_node, "parallel.tensor_parallel",
                f"evaluation needs {tp} GPUs on one node; the site has gpus_per_node={site.gpus_per_node}")
        return JobResources(kind, 1, tp, tp, site.partition, site.cpus_per_task, site.image, False)
    require(nodes >= 1, "--nodes", "must be >= 1")
    world = nodes * site.gpus_per_node
    stage = step.rsplit(".", 1)[-1]
    parallel = cfg.stage_parallel(stage)
    parallel.check_against(cfg.model, world)
    schedule = getattr(cfg, stage).schedule
    try:
        parallel.check_batch(world, schedule.global_batch_size, schedule.micro_batch_size, where=f"{stage}.schedule")
    except ConfigError as err:
        raise ConfigError(f"{err} ({nodes} node(s) x {site.gpus_per_node} GPUs; or change --nodes)") from None
    return JobResources(kind, nodes, site.gpus_per_node, site.gpus_per_node, site.partition,
                        site.cpus_per_task, site.image, site.exclusive)


def study_command(recipe: str, study: Path, overrides: Sequence[str], step: str) -> list[str]:
    cmd = ["alignpt", "study", "run", "--recipe", recipe, "--output-dir", str(study)]
    for item in overrides:
        cmd += ["--set", item]
    return cmd + ["--only", step]


def _q(value: object) -> str:
    return shlex.quote(str(value))


def _sbatch_lines(cfg, step: str, res: JobResources, site: SiteConfig, study: Path) -> list[str]:
    lines = [f"--job-name=alignpt.{cfg.name}.{step}", f"--nodes={res.nodes}", "--ntasks-per-node=1"]
    if res.gpus_per_node:
        lines.append(f"--gpus-per-node={res.gpus_per_node}")
    if res.cpus_per_task:
        lines.append(f"--cpus-per-task={res.cpus_per_task}")
    if res.partition:
        lines.append(f"--partition={res.partition}")
    if site.account:
        lines.append(f"--account={site.account}")
    lines += [f"--time={site.time}", f"--output={log_pattern(study, step)}", "--open-mode=append",
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


def _header(cfg, step: str, res: JobResources, recipe: str, overrides: Sequence[str], site: SiteConfig) -> list[str]:
    from megatron_alignpt.provenance import code_version

    code = code_version()
    commit = code.get("git_commit") or code.get("package")
    lines = [
        f"# alignpt batch job: study {cfg.name!r}, step {step} ({res.kind})",
        f"# recipe {recipe}" + (f", overrides: {' '.join(overrides)}" if overrides else ""),
        f"# code: {commit}{' (uncommitted changes)' if code.get('git_dirty') else ''}",
    ]
    if res.kind == "train":
        par = cfg.stage_parallel(step.rsplit(".", 1)[-1])
        world = res.nodes * res.nproc_per_node
        lines.append(f"# layout: {res.nodes} node(s) x {res.nproc_per_node} GPUs = {world} ranks; "
                     f"TP {par.tensor_parallel} x CP {par.context_parallel} x PP {par.pipeline_parallel} x "
                     f"DP {par.data_parallel_size(world)}; precision {par.precision}")
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


def render_batch_script(cfg, step: str, recipe: str, overrides: Sequence[str], site: SiteConfig,
                        res: JobResources) -> str:
    """A self-contained bash batch script for one step (no secret values: see SiteConfig.container_env)."""
    study = study_dir(cfg)
    if re.search(r"\s", str(study)):
        raise ConfigError(f"output_dir {study}: Slurm log paths cannot contain whitespace; choose another directory")
    lines = ["#!/bin/bash"] + _header(cfg, step, res, recipe, overrides, site)
    lines += [f"#SBATCH {opt}" for opt in _sbatch_lines(cfg, step, res, site, study)]
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
    command = study_command(recipe, study, overrides, step)
    srun = " \\\n  ".join(_wrap(_step_command(res, site, command)))
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


def write_study_json(cfg, rerun_changed: bool = False) -> None:
    """What `alignpt study status --study DIR` reads before the job itself writes it. As in a local run,
    finished steps made with other settings are refused first (or, with ``rerun_changed``, reopened)."""
    from megatron_alignpt.study.fingerprint import settle

    settle(cfg, rerun_changed)


def resolve_step(steps: Sequence[str], step: Optional[str]) -> str:
    """`step` checked against the study's steps; None picks the first training step."""
    if step is None:
        train = [s for s in steps if step_kind(s) == "train"]
        return train[0]
    if step not in steps:
        raise ConfigError(f"--step {step!r}: not a step of this study; steps: {', '.join(steps)}")
    return step


def launch_step(cfg, recipe: str, overrides: Sequence[str], site: SiteConfig, step: Optional[str] = None,
                nodes: int = 1, dry_run: bool = False, dependencies: Sequence[str] = (), sbatch: str = "sbatch") -> str:
    """Render one step's job; with dry_run return the script, else submit it and return a summary line."""
    from megatron_alignpt.launch.jobs import record_job
    from megatron_alignpt.study.runner import plan_steps

    cfg.output_dir = study_dir(cfg)
    site.check_writable(cfg.output_dir)
    step = resolve_step([s.name for s in plan_steps(cfg)], step)
    res = step_resources(cfg, step, site, nodes)
    text = render_batch_script(cfg, step, recipe, overrides, site, res)
    if dry_run:
        return text
    study = study_dir(cfg)
    path = write_script(study, step, text)
    write_study_json(cfg)
    job_id = sbatch_submit(path, dependencies, sbatch=sbatch)
    record_job(study, step, job_id, path, dependencies)
    return f"{step}: job {job_id}; script {path}; log {job_log(study, step, job_id)}"
