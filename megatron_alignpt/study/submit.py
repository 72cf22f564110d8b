"""Submit a whole study to Slurm: one job per step, chained with `afterok` dependencies.

    alignpt study submit --recipe paper_6p9b --output-dir /lustre/runs/paper --site site.toml --nodes 32
    alignpt study submit --recipe tiny_cpu --dry-run          # the plan, nothing submitted

The stage graph: data.filter -> data.tokenizer -> data.synthetic -> data.tokenize -> data.manifests;
per run (a condition, or a condition and a seed): pretrain -> midtrain [-> cpt] -> {eval_base[_cloze], sft};
sft -> dpo -> {eval_post[_cloze], eval_post_generate};
`results` waits for
every evaluation and `report` for `results`. Capability evaluations (`OPTIONAL_STEPS`) are waited for with
`afterany`: one that cannot run records why and ends, and even one that crashes never cancels the results
and report jobs (the report notes what is missing). Steps whose `steps/<step>.done` marker exists are skipped
(their dependents do not wait for them), and steps whose recorded job is still queued or running are
reused, so submitting again after a failure resubmits only what is missing. Job ids go to
`<study>/jobs.json`; `alignpt study status` reads them back.
"""
from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from megatron_alignpt.launch.jobs import read_jobs, record_job
from megatron_alignpt.launch.site import SiteConfig
from megatron_alignpt.launch.slurm import (
    JobResources, write_study_json, render_batch_script, sbatch_submit, step_kind, step_resources, study_dir,
    write_script,
)
from megatron_alignpt.study.config import ConditionSpec, StudyConfig
from megatron_alignpt.study.runner import (
    POSTTRAIN_STAGES, StudyLayout, eval_suffix, plan_steps, pretraining_stages, previous_stage, study_runs,
)



def condition_edges(cfg: StudyConfig, cond: ConditionSpec) -> dict[str, tuple[str, ...]]:
    """Dependencies within one condition's chain (suffix -> suffixes it waits for)."""
    edges: dict[str, tuple[str, ...]] = {}
    for stage in pretraining_stages(cfg, cond) + POSTTRAIN_STAGES:
        before = previous_stage(cfg, cond, stage)
        edges[stage] = (before,) if before else ()
    for scoring in ("logprob", "cloze"):
        edges[eval_suffix("base", scoring)] = (pretraining_stages(cfg, cond)[-1],)
        edges[eval_suffix("post", scoring)] = ("dpo",)
    edges["eval_post_generate"] = ("dpo",)
    edges["eval_capabilities"] = ("dpo",)
    return edges


def step_graph(cfg: StudyConfig) -> dict[str, list[str]]:
    """Each step of the study (in run order) -> the steps it must wait for."""
    steps = [s.name for s in plan_steps(cfg)]
    edges = {c.name: condition_edges(cfg, c) for c in study_runs(cfg)}
    data = [s for s in steps if s.startswith("data.")]
    evals = [s for s in steps if step_kind(s) == "eval"]
    layout = StudyLayout(cfg)
    graph: dict[str, list[str]] = {}
    for i, step in enumerate(steps):
        cond, _, suffix = step.rpartition(".")
        if step in data:
            j = data.index(step)
            graph[step] = data[j - 1: j] if j else []
        elif cond in edges and suffix in edges[cond]:
            graph[step] = [f"{layout.stage_owner(cond, s)}.{s}" for s in edges[cond][suffix]] or data[-1:]
        elif step == "results":
            graph[step] = evals
        else:  # report, or a step added later: wait for the step before it
            graph[step] = steps[i - 1: i]
    for step, deps in graph.items():
        unknown = [d for d in deps if d not in graph]
        assert not unknown, f"{step} depends on unknown steps {unknown}"
    return graph


OPTIONAL_STEPS = ("eval_capabilities",)
"""Step suffixes whose failure must not cancel the steps after them (they are waited for with afterany)."""


def is_optional(step: str) -> bool:
    return step.rpartition(".")[2] in OPTIONAL_STEPS


@dataclass
class PlannedJob:
    step: str
    waits_for: list[str]
    resources: JobResources
    script: str


def queued_jobs(squeue: str = "squeue") -> set[str]:
    """Ids of this user's jobs that Slurm still knows as queued or running."""
    try:
        res = subprocess.run([squeue, "-h", "-u", getpass.getuser(), "-o", "%i"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return set()
    return set(res.stdout.split()) if res.returncode == 0 else set()


def plan_jobs(cfg: StudyConfig, recipe: str, overrides: Sequence[str], site: SiteConfig, nodes: int = 1,
              nodes_for: Optional[dict[str, int]] = None) -> list[PlannedJob]:
    """Render every step's script first, so a bad layout fails before anything is submitted."""
    graph = step_graph(cfg)
    jobs = []
    for step, deps in graph.items():
        stage = step.rsplit(".", 1)[-1]
        res = step_resources(cfg, step, site, (nodes_for or {}).get(stage, nodes))
        jobs.append(PlannedJob(step, deps, res, render_batch_script(cfg, step, recipe, overrides, site, res)))
    return jobs


def submit_study(cfg: StudyConfig, recipe: str, overrides: Sequence[str], site: SiteConfig, nodes: int = 1,
                 nodes_for: Optional[dict[str, int]] = None, dry_run: bool = False, sbatch: str = "sbatch",
                 squeue: str = "squeue", echo: Callable[[str], None] = print, rerun_changed: bool = False) -> dict[str, str]:
    """Submit the steps not yet done; returns step -> job id (dry run: step -> a placeholder).
    Finished steps made with other settings are refused, or with ``rerun_changed`` submitted again."""
    cfg.output_dir = study_dir(cfg)
    site.check_writable(cfg.output_dir)
    layout = StudyLayout(cfg)
    planned = plan_jobs(cfg, recipe, overrides, site, nodes, nodes_for)
    recorded = read_jobs(layout.root)
    alive = queued_jobs(squeue) if recorded and not dry_run else set()
    if not dry_run:
        write_study_json(cfg, rerun_changed)  # lets `study status --study` read the plan before any job starts
    ids: dict[str, str] = {}
    for job in planned:
        if layout.marker(job.step).is_file():
            echo(f"{job.step}: done, skipped")
            continue
        previous = recorded.get(job.step, {}).get("job_id")
        if previous in alive:
            ids[job.step] = previous
            echo(f"{job.step}: already queued as job {previous}")
            continue
        deps = [ids[d] for d in job.waits_for if d in ids and not is_optional(d)]
        any_deps = [ids[d] for d in job.waits_for if d in ids and is_optional(d)]
        where = f"{job.resources.nodes} node(s)" + (f" x {job.resources.gpus_per_node} GPUs" if job.resources.gpus_per_node else ", CPU")
        after = f" after {', '.join(d + (' (any outcome)' if is_optional(d) else '') for d in job.waits_for if d in ids)}" \
            if deps or any_deps else ""
        if dry_run:
            ids[job.step] = f"<{job.step}>"
            echo(f"{job.step}: would submit ({where}){after}")
            continue
        path = write_script(layout.root, job.step, job.script)
        ids[job.step] = sbatch_submit(path, deps, sbatch=sbatch, any_dependencies=any_deps)
        record_job(layout.root, job.step, ids[job.step], path, deps + any_deps)
        echo(f"{job.step}: job {ids[job.step]} ({where}){after}")
    return ids
