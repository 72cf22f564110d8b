"""The Slurm executor: submit a study's plan as one job per step, chained by the plan's dependencies.

    alignpt study submit --recipe paper_6p9b --output-dir /lustre/runs/paper --site site.toml --nodes 32
    alignpt study submit --recipe tiny_cpu --dry-run          # the jobs, nothing submitted
    alignpt launch --recipe paper_6p9b --step unfiltered.pretrain --nodes 32 --dry-run   # one step's script

Every job runs `alignpt study run --recipe NAME --output-dir STUDY --only STEP` (plus the same `--set`
overrides), so step markers, checkpoints and resume behave as in a local run (`study.local`). A job waits
for the jobs of the steps its plan step waits for (`afterok`); steps of an optional kind (capability
evaluations) are waited for with `afterany`: one that cannot run records why and ends, and even one that
crashes never cancels the results and report jobs (the report notes what is missing). Steps whose
`steps/<step>.done` marker exists are skipped (their dependents do not wait for them), and steps whose
recorded job is still queued or running are reused, so submitting again after a failure resubmits only
what is missing. Job ids go to `<study>/jobs.json`; `alignpt study status` reads them back.
"""
from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from megatron_alignpt.config_base import ConfigError, require
from megatron_alignpt.launch.jobs import read_jobs, record_job
from megatron_alignpt.launch.site import SiteConfig
from megatron_alignpt.launch.slurm import (
    JobResources, job_log, render_batch_script, sbatch_submit, write_script,
)
from megatron_alignpt.study.config import StudyConfig
from megatron_alignpt.study.plan import PlanStep, StudyPlan, build_plan


def study_dir(cfg: StudyConfig) -> Path:
    """The study directory as every node sees it (absolute)."""
    return Path(cfg.output_dir).expanduser().resolve()


def step_resources(plan: StudyPlan, step: PlanStep, site: SiteConfig, nodes: int = 1) -> JobResources:
    """A step's job: the plan's resources on this site, checked against the stage's layout and batch sizes.
    Training steps spread over ``nodes`` nodes; evaluations take the GPUs they need on one node."""
    cfg, need = plan.cfg, step.resources
    if step.role == "cpu":
        image = (site.prep_image or site.image) if step.kind_info.data else site.image
        return JobResources("cpu", need.nodes, 0, 0, site.cpu_partition_or_default, site.cpu_cpus_per_task, image, False,
                            need.time)
    if step.role == "eval":
        require(need.gpus <= site.gpus_per_node, "parallel.tensor_parallel",
                f"evaluation needs {need.gpus} GPUs on one node; the site has gpus_per_node={site.gpus_per_node}")
        return JobResources("eval", 1, need.gpus, need.gpus, site.partition, site.cpus_per_task, site.image, False, need.time)
    require(nodes >= 1, "--nodes", "must be >= 1")
    world = nodes * site.gpus_per_node
    stage = plan.resolved(step)
    stage.parallel.check_against(cfg.model, world)
    try:
        stage.parallel.check_batch(world, stage.schedule.global_batch_size, stage.schedule.micro_batch_size,
                                   where=f"{step.stage}.schedule")
    except ConfigError as err:
        raise ConfigError(f"{err} ({nodes} node(s) x {site.gpus_per_node} GPUs; or change --nodes)") from None
    return JobResources("train", nodes, site.gpus_per_node, site.gpus_per_node, site.partition,
                        site.cpus_per_task, site.image, site.exclusive, need.time)


def study_command(recipe: str, study: Path, overrides: Sequence[str], step: str, wait_for_data_jobs: bool = False) -> list[str]:
    cmd = ["alignpt", "study", "run", "--recipe", recipe, "--output-dir", str(study)]
    for item in overrides:
        cmd += ["--set", item]
    # a data step on the Slurm data executor submits array jobs; its own job must last until they are done,
    # since the jobs after it start when it ends
    return cmd + ["--only", step] + (["--wait-data-jobs"] if wait_for_data_jobs else [])


def job_script(plan: StudyPlan, step: PlanStep, recipe: str, overrides: Sequence[str], site: SiteConfig,
               res: JobResources) -> str:
    """The batch script of one plan step."""
    study = study_dir(plan.cfg)
    notes = [f"recipe {recipe}" + (f", overrides: {' '.join(overrides)}" if overrides else "")]
    if step.role == "train":
        par = plan.resolved(step).parallel
        world = res.nodes * res.nproc_per_node
        notes.append(f"layout: {res.nodes} node(s) x {res.nproc_per_node} GPUs = {world} ranks; "
                     f"TP {par.tensor_parallel} x CP {par.context_parallel} x PP {par.pipeline_parallel} x "
                     f"DP {par.data_parallel_size(world)}; precision {par.precision}")
    waits = step.kind_info.data and plan.cfg.data.executor == "slurm"
    if step.resources.executor:
        notes.append(f"data executor: {step.resources.describe_data()}")
    return render_batch_script(study, plan.cfg.name, step.name, study_command(recipe, study, overrides, step.name, waits),
                               site, res, notes)


@dataclass
class PlannedJob:
    step: PlanStep
    resources: JobResources
    script: str

    @property
    def waits_for(self) -> tuple[str, ...]:
        return self.step.after


def queued_jobs(squeue: str = "squeue") -> set[str]:
    """Ids of this user's jobs that Slurm still knows as queued or running."""
    try:
        res = subprocess.run([squeue, "-h", "-u", getpass.getuser(), "-o", "%i"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return set()
    return set(res.stdout.split()) if res.returncode == 0 else set()


class SlurmExecutor:
    """Runs a plan as dependent Slurm jobs on ``site``: training steps over ``nodes`` nodes each (per stage:
    ``nodes_for``), the command line's recipe and overrides in every job."""

    def __init__(self, plan: StudyPlan, recipe: str, overrides: Sequence[str], site: SiteConfig, nodes: int = 1,
                 nodes_for: Optional[dict[str, int]] = None):
        self.plan, self.recipe, self.overrides, self.site = plan, recipe, list(overrides), site
        self.nodes, self.nodes_for = nodes, dict(nodes_for or {})

    def jobs(self) -> list[PlannedJob]:
        """Every step's job, rendered first, so a bad layout fails before anything is submitted."""
        jobs = []
        for step in self.plan:
            res = step_resources(self.plan, step, self.site, self.nodes_for.get(step.stage or "", self.nodes))
            jobs.append(PlannedJob(step, res, job_script(self.plan, step, self.recipe, self.overrides, self.site, res)))
        return jobs

    def submit(self, dry_run: bool = False, sbatch: str = "sbatch", squeue: str = "squeue",
               echo: Callable[[str], None] = print, rerun_changed: bool = False) -> dict[str, str]:
        """Submit the steps not yet done; returns step -> job id (dry run: step -> a placeholder).
        Finished steps made with other settings are refused, or with ``rerun_changed`` submitted again."""
        layout = self.plan.layout
        self.site.check_writable(layout.root)
        planned = self.jobs()
        recorded = read_jobs(layout.root)
        alive = queued_jobs(squeue) if recorded and not dry_run else set()
        if not dry_run:
            settle_study(self.plan, rerun_changed)  # lets `study status --study` read the plan before any job starts
        optional = {s.name for s in self.plan if s.optional}
        ids: dict[str, str] = {}
        for job in planned:
            name = job.step.name
            if layout.marker(name).is_file():
                echo(f"{name}: done, skipped")
                continue
            previous = recorded.get(name, {}).get("job_id")
            if previous in alive:
                ids[name] = previous
                echo(f"{name}: already queued as job {previous}")
                continue
            deps = [ids[d] for d in job.waits_for if d in ids and d not in optional]
            any_deps = [ids[d] for d in job.waits_for if d in ids and d in optional]
            where = f"{job.resources.nodes} node(s)" + (f" x {job.resources.gpus_per_node} GPUs" if job.resources.gpus_per_node else ", CPU")
            after = f" after {', '.join(d + (' (any outcome)' if d in optional else '') for d in job.waits_for if d in ids)}" \
                if deps or any_deps else ""
            if dry_run:
                ids[name] = f"<{name}>"
                echo(f"{name}: would submit ({where}){after}")
                continue
            path = write_script(layout.root, name, job.script)
            ids[name] = sbatch_submit(path, deps, sbatch=sbatch, any_dependencies=any_deps)
            record_job(layout.root, name, ids[name], path, deps + any_deps)
            echo(f"{name}: job {ids[name]} ({where}){after}")
        return ids

    def launch(self, step: Optional[str] = None, dry_run: bool = False, dependencies: Sequence[str] = (),
               sbatch: str = "sbatch") -> str:
        """One step's job (None: the first training step); with dry_run the script, else a summary line."""
        self.site.check_writable(self.plan.layout.root)
        chosen = self.plan.step(step) if step is not None else next(s for s in self.plan if s.role == "train")
        res = step_resources(self.plan, chosen, self.site, self.nodes)
        text = job_script(self.plan, chosen, self.recipe, self.overrides, self.site, res)
        if dry_run:
            return text
        study = self.plan.layout.root
        path = write_script(study, chosen.name, text)
        settle_study(self.plan)
        job_id = sbatch_submit(path, dependencies, sbatch=sbatch)
        record_job(study, chosen.name, job_id, path, dependencies)
        return f"{chosen.name}: job {job_id}; script {path}; log {job_log(study, chosen.name, job_id)}"


def settle_study(plan: StudyPlan, rerun_changed: bool = False) -> None:
    """What `alignpt study status --study DIR` reads before the job itself writes it. As in a local run,
    finished steps made with other settings are refused first (or, with ``rerun_changed``, reopened)."""
    from megatron_alignpt.study.fingerprint import settle

    settle(plan.cfg, rerun_changed, plan=plan)


def submit_study(cfg: StudyConfig, recipe: str, overrides: Sequence[str], site: SiteConfig, nodes: int = 1,
                 nodes_for: Optional[dict[str, int]] = None, dry_run: bool = False, sbatch: str = "sbatch",
                 squeue: str = "squeue", echo: Callable[[str], None] = print, rerun_changed: bool = False) -> dict[str, str]:
    """Build the study's plan and submit it (`SlurmExecutor.submit`)."""
    cfg.output_dir = study_dir(cfg)
    executor = SlurmExecutor(build_plan(cfg), recipe, overrides, site, nodes, nodes_for)
    return executor.submit(dry_run, sbatch, squeue, echo, rerun_changed)


def launch_step(cfg: StudyConfig, recipe: str, overrides: Sequence[str], site: SiteConfig, step: Optional[str] = None,
                nodes: int = 1, dry_run: bool = False, dependencies: Sequence[str] = (), sbatch: str = "sbatch") -> str:
    """Render one step's job; with dry_run return the script, else submit it and return a summary line."""
    cfg.output_dir = study_dir(cfg)
    return SlurmExecutor(build_plan(cfg), recipe, overrides, site, nodes).launch(step, dry_run, dependencies, sbatch)
