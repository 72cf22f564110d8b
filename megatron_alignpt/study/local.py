"""The local executor: run a study's plan here, one step after another, resuming where a previous run stopped.

Each finished step leaves `steps/<step>.done` (with its wall time and fingerprint); a rerun skips
those, and a training stage interrupted mid-way resumes from its last checkpoint. A rerun with other
settings is refused before anything is rewritten (`study.fingerprint`), and lock files keep two runs
from working on the same study or step (`study.lock`). ``only`` runs some steps by hand (a step's name,
a run, a kind: `StudyPlan.selects`); each Slurm job of `study.submit` is such a run of one step.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Optional

from data_prep.atomic import atomic_write_json
from megatron_alignpt.study.actions import is_global_rank0, run_step
from megatron_alignpt.study.config import StudyConfig
from megatron_alignpt.study.plan import PlanStep, StudyPlan, build_plan


class StudyPending(RuntimeError):
    """A data step handed its tasks to Slurm and they are not all done: nothing after it can run yet."""


class LocalExecutor:
    def __init__(self, plan: StudyPlan, wait_for_data_jobs: bool = False):
        self.plan = plan
        self.wait_for_data_jobs = wait_for_data_jobs

    def run(self, only: Optional[list[str]] = None, rerun_changed: bool = False, force_unlock: bool = False) -> dict[str, float]:
        """Run every selected step not yet done; returns wall seconds per step run now.

        Finished steps made with other settings are refused (`fingerprint.settle`) unless
        ``rerun_changed``; ``force_unlock`` takes locks whose holders cannot be shown to be gone.
        """
        from data_prep.atomic import remove_stale_temps
        from megatron_alignpt.study.fingerprint import settle
        from megatron_alignpt.study.lock import hold_study, hold_step

        plan, layout = self.plan, self.plan.layout
        layout.root.mkdir(parents=True, exist_ok=True)
        rank0 = is_global_rank0()
        timings: dict[str, float] = {}
        with hold_study(layout.root, whole=not only, force=force_unlock, active=rank0):
            prints, rerun = settle(plan.cfg, rerun_changed, write=rank0, plan=plan)
            if rank0 and not only:  # the whole study is ours: what killed runs left can go
                for stale in remove_stale_temps(layout.root, recursive=True):
                    print(f"removed {stale.relative_to(layout.root)}, left by an interrupted run", flush=True)
            total = len(plan)
            for n, step in enumerate(plan, 1):
                if only and not plan.selects(step, only):
                    continue
                marker = layout.marker(step.name)
                if marker.is_file() and step.name not in rerun:
                    print(f"[{n}/{total}] {step.name}: done earlier, skipped", flush=True)
                    continue
                with hold_step(layout.root, step.name, force=force_unlock, active=rank0):
                    if marker.is_file() and step.name not in rerun:  # finished by another run while we waited
                        _finished_meanwhile(step.name)
                        continue
                    if rank0 and only and step.kind_info.data:  # data steps run one at a time: data/ is ours
                        remove_stale_temps(layout.data.root, recursive=True)
                    print(f"[{n}/{total}] {step.name} ...", flush=True)
                    timings[step.name] = self._run_one(step)
                    if rank0:
                        atomic_write_json(marker, {"step": step.name, "seconds": round(timings[step.name], 3),
                                                   **dataclasses.asdict(prints[step.name])})
                print(f"[{n}/{total}] {step.name}: {timings[step.name]:.1f}s", flush=True)
        return timings

    def _run_one(self, step: PlanStep) -> float:
        from data_prep.pipeline.steps import StagePending

        start = time.perf_counter()
        try:
            run_step(self.plan, step, self.wait_for_data_jobs)
        except StagePending as err:  # no marker: the next run looks again and goes on once the tasks are done
            raise StudyPending(f"{step.name} is pending: {err}. Steps after it wait; run this command again "
                               "later (or with --wait-data-jobs to wait here)") from None
        return time.perf_counter() - start


def run_study(cfg: StudyConfig, only: list[str] | None = None, rerun_changed: bool = False,
              force_unlock: bool = False, wait_for_data_jobs: bool = False) -> dict[str, float]:
    """Build the study's plan and run it here (`LocalExecutor.run`)."""
    return LocalExecutor(build_plan(cfg), wait_for_data_jobs).run(only, rerun_changed, force_unlock)


def _finished_meanwhile(step: str) -> None:
    """Alone, skip the step; with other ranks, which took no lock and will run it, stop instead."""
    from megatron_alignpt.study.lock import LockHeld

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise LockHeld(f"step {step} was finished by another run while this one started; run this one again")
    print(f"{step}: finished by another run meanwhile, skipped", flush=True)


def study_timings(root: Path) -> dict[str, float]:
    return {p.name[: -len(".done")]: json.loads(p.read_text())["seconds"] for p in sorted((root / "steps").glob("*.done"))}
