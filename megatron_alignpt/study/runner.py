"""Run a whole study locally, step by step, resuming where a previous run stopped.

Each finished step leaves `steps/<step>.done` (with its wall time and fingerprint); a rerun skips
those, and a training stage interrupted mid-way resumes from its last checkpoint. A rerun with other
settings is refused before anything is rewritten (`study.fingerprint`), and lock files keep two runs
from working on the same study or step (`study.lock`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from data_prep.atomic import atomic_write_json
from megatron_alignpt.study.config import ConditionSpec, StagePlan, StudyConfig
from megatron_alignpt.study.data_steps import StudyData

POSTTRAIN_STAGES = ("sft", "dpo")
SEED_MARK = "@seed"


@dataclass(frozen=True)
class Run:
    """One condition trained with one seed: what the runner trains and evaluates. It reads like its
    ``ConditionSpec`` (name, base, synthetic, insertion, ...); its lineage includes the seed, so runs of
    different seeds never share a checkpoint."""

    spec: ConditionSpec
    seed: Optional[int] = None
    """None: a study without ``seeds``; the run is named after its condition and keeps each stage's seed."""

    @property
    def name(self) -> str:
        return self.spec.name if self.seed is None else f"{self.spec.name}{SEED_MARK}{self.seed}"

    @property
    def condition(self) -> str:
        return self.spec.name

    def __getattr__(self, attr: str):  # base, synthetic, insertion, inserts_synthetic
        return getattr(self.spec, attr)

    def lineage(self, stages: tuple[str, ...], stage: str) -> tuple:
        return (self.seed,) + self.spec.lineage(stages, stage)


def study_runs(cfg: StudyConfig) -> list[Run]:
    """Each condition once per seed (seed-major: every condition of the first seed, then the next seed),
    or once with the stages' own seeds when the study lists none."""
    if not cfg.seeds:
        return [Run(c) for c in cfg.conditions]
    return [Run(c, seed) for seed in cfg.seeds for c in cfg.conditions]


def pretraining_stages(cfg: StudyConfig, cond: ConditionSpec | None = None) -> tuple[str, ...]:
    """Next-token stages on blended data, in order. CPT belongs to the conditions that insert their
    documents there; without ``cond``, the stages any condition runs."""
    with_cpt = any(c.insertion == "cpt" for c in cfg.conditions) if cond is None else cond.insertion == "cpt"
    return ("pretrain", "midtrain", "cpt") if with_cpt else ("pretrain", "midtrain")


def previous_stage(cfg: StudyConfig, cond: ConditionSpec, stage: str) -> str | None:
    """The stage whose final checkpoint ``stage`` starts from."""
    chain = pretraining_stages(cfg, cond) + POSTTRAIN_STAGES
    i = chain.index(stage)
    return chain[i - 1] if i else None


def stage_tokens(cfg: StudyConfig) -> dict[str, int]:
    """Tokens each pretraining stage consumes: iterations x global batch x sequence length."""
    out = {}
    for stage in pretraining_stages(cfg):
        plan: StagePlan = getattr(cfg, stage)
        out[stage] = plan.schedule.train_iters * plan.schedule.global_batch_size * (plan.seq_length or cfg.model.seq_length)
    return out


@dataclass
class Step:
    name: str
    run: Callable[[], None]


class StudyLayout:
    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.root = Path(cfg.output_dir)
        self.data = StudyData(self.root / "data", cfg.data)

    def stage_owner(self, condition: str, stage: str) -> str:
        """The run that trains ``stage`` for run ``condition``: the first one listed with the same
        lineage (seed included), so identical pretraining runs happen once (post-training is never shared)."""
        if stage in POSTTRAIN_STAGES:
            return condition
        runs = study_runs(self.cfg)
        conds = {c.name: c for c in runs}
        key = conds[condition].lineage(pretraining_stages(self.cfg, conds[condition]), stage)
        return next(c.name for c in runs
                    if stage in pretraining_stages(self.cfg, c) and c.lineage(pretraining_stages(self.cfg, c), stage) == key)

    def stage_dir(self, condition: str, stage: str) -> Path:
        return self.root / "models" / self.stage_owner(condition, stage) / stage

    def eval_dir(self, condition: str, when: str) -> Path:
        return self.root / "evals" / condition / when

    def marker(self, step: str) -> Path:
        return self.root / "steps" / f"{step}.done"


def stage_config(cfg: StudyConfig, layout: StudyLayout, cond: Run | ConditionSpec, stage: str):
    from megatron_alignpt.train.config import StageConfig

    cond = cond if isinstance(cond, Run) else Run(cond)
    plan: StagePlan = getattr(cfg, stage)
    kind = stage if stage in POSTTRAIN_STAGES else "pretrain"
    previous = previous_stage(cfg, cond, stage)
    model = dataclasses.replace(cfg.model, seq_length=plan.seq_length or cfg.model.seq_length,
                                max_position_embeddings=cfg.model.max_positions)
    data = layout.data.manifest(cond.condition, stage) if kind == "pretrain" else plan.data  # blends are per condition
    schedule = plan.schedule if cond.seed is None else dataclasses.replace(plan.schedule, seed=cond.seed)
    return StageConfig(
        name=f"{cond.name}.{stage}",
        kind=kind,
        model=model,
        optimizer=plan.optimizer,
        schedule=schedule,
        tokenizer=layout.data.tokenizer,
        data=Path(data),
        output_dir=layout.stage_dir(cond.name, stage),
        parallel=cfg.stage_parallel(stage),
        init_from=layout.stage_dir(cond.name, previous) if previous else None,
        sft=cfg.sft_options,
        dpo=cfg.dpo_options,
    )


def _train(cfg, layout, cond, stage) -> Callable[[], None]:
    def run() -> None:
        from megatron_alignpt.train.trainer import run_stage

        run_stage(stage_config(cfg, layout, cond, stage))

    return run


def eval_suffix(when: str, scoring: str) -> str:
    """Step suffix and evaluation directory of one scoring of a checkpoint: ``eval_base`` / ``base`` for
    letter scoring, ``eval_base_cloze`` / ``base_cloze``, ``eval_post_generate`` / ``post_generate`` ..."""
    return f"eval_{when}" if scoring == "logprob" else f"eval_{when}_{scoring}"


def run_labels(cfg: StudyConfig, cond: Run) -> dict:
    """What every result row of a run is labelled with: its condition and the seed its stages trained with."""
    return {"condition": cond.condition, "seed": cond.seed if cond.seed is not None else cfg.pretrain.schedule.seed}


def _evaluate(cfg, layout, cond, stage, when, scoring: str = "logprob") -> Callable[[], None]:
    """Score one checkpoint; ``when`` is the results-table stage (base / post), the directory adds the
    scoring (``_cloze``, ``_generate``) so every scoring of one checkpoint sits side by side."""

    def run() -> None:
        from megatron_alignpt.eval.run import evaluate_misalignment

        generate = scoring == "generate"
        evaluate_misalignment(
            checkpoint=layout.stage_dir(cond.name, stage),
            data=cfg.data.eval_suite,
            out_dir=layout.eval_dir(cond.name, eval_suffix(when, scoring).removeprefix("eval_")),
            formats=cfg.eval.formats,
            system_prompts=cfg.eval.generate_system_prompts if generate else cfg.eval.system_prompts,
            tensor_parallel=cfg.parallel.tensor_parallel,
            batch_size=cfg.eval.batch_size,
            labels={**run_labels(cfg, cond), "run": cond.name, "stage": when, "checkpoint_stage": stage, "scoring": scoring},
            scoring=scoring,
            max_new_tokens=cfg.eval.generate_max_new_tokens if generate else None,
        )

    return run


def _capabilities(cfg, layout, cond) -> Callable[[], None]:
    def run() -> None:
        from data_prep.atomic import atomic_write_json
        from megatron_alignpt.eval.capabilities import TaskDataUnavailable, run_capabilities

        out_dir = layout.eval_dir(cond.name, "post_capabilities")
        try:
            run_capabilities(checkpoint=layout.stage_dir(cond.name, "dpo"), tasks=cfg.eval.capability_tasks,
                             out_dir=out_dir, tensor_parallel=cfg.parallel.tensor_parallel, skip_unavailable=True,
                             labels={**run_labels(cfg, cond), "run": cond.name, "stage": "post"})
        except (TaskDataUnavailable, ImportError) as err:
            # No task could run here (offline, lm-eval or a task's packages missing): record why and finish the
            # step, so results and report still run; the notebooks show the reasons.
            reasons = err.reasons if isinstance(err, TaskDataUnavailable) else {"lm-eval": str(err)}
            if _is_global_rank0():
                atomic_write_json(out_dir / "unavailable.json", {"tasks": cfg.eval.capability_tasks, "reasons": reasons})
            print(f"capabilities for {cond.name} not run: {err}", flush=True)

    return run


def plan_steps(cfg: StudyConfig) -> list[Step]:
    layout = StudyLayout(cfg)
    data = layout.data
    steps = [
        Step("data.filter", data.filter_corpora),
        Step("data.tokenizer", data.build_tokenizer),
        Step("data.synthetic", data.generate_synthetic),
        Step("data.tokenize", data.tokenize_all),
        Step("data.manifests", lambda: data.write_manifests(cfg.conditions, stage_tokens(cfg))),
    ]
    for cond in study_runs(cfg):
        last_base = pretraining_stages(cfg, cond)[-1]
        for stage in pretraining_stages(cfg, cond):
            if layout.stage_owner(cond.name, stage) == cond.name:  # else shared with an earlier condition
                steps.append(Step(f"{cond.name}.{stage}", _train(cfg, layout, cond, stage)))
        for scoring in cfg.eval.base_scorings:
            steps.append(Step(f"{cond.name}.{eval_suffix('base', scoring)}", _evaluate(cfg, layout, cond, last_base, "base", scoring)))
        if not cfg.posttrain:
            continue
        for stage in POSTTRAIN_STAGES:
            steps.append(Step(f"{cond.name}.{stage}", _train(cfg, layout, cond, stage)))
        for scoring in cfg.eval.post_scorings:
            steps.append(Step(f"{cond.name}.{eval_suffix('post', scoring)}", _evaluate(cfg, layout, cond, "dpo", "post", scoring)))
        if cfg.eval.post_generate:
            steps.append(Step(f"{cond.name}.eval_post_generate", _evaluate(cfg, layout, cond, "dpo", "post", "generate")))
        if cfg.eval.capability_tasks:
            steps.append(Step(f"{cond.name}.eval_capabilities", _capabilities(cfg, layout, cond)))
    steps.append(Step("results", lambda: _collect(layout)))
    steps.append(Step("report", lambda: _report(layout)))
    return steps


def _collect(layout: StudyLayout) -> None:
    from megatron_alignpt.study.results import write_results_table

    write_results_table(layout.root)


def _report(layout: StudyLayout) -> None:
    from megatron_alignpt.study.report import write_report

    print(f"report: {write_report(layout.root)}", flush=True)


def _is_global_rank0() -> bool:
    """Under torchrun every rank runs the step; only one writes the study's shared files."""
    return int(os.environ.get("RANK", "0")) == 0


def run_study(cfg: StudyConfig, only: list[str] | None = None, rerun_changed: bool = False,
              force_unlock: bool = False) -> dict[str, float]:
    """Run every step not yet done; returns wall seconds per step run now.

    Finished steps made with other settings are refused (`fingerprint.settle`) unless
    ``rerun_changed``; ``force_unlock`` takes locks whose holders cannot be shown to be gone.
    """
    from data_prep.atomic import remove_stale_temps
    from megatron_alignpt.study.fingerprint import settle
    from megatron_alignpt.study.lock import hold_study, hold_step

    layout = StudyLayout(cfg)
    layout.root.mkdir(parents=True, exist_ok=True)
    rank0 = _is_global_rank0()
    timings: dict[str, float] = {}
    with hold_study(layout.root, whole=not only, force=force_unlock, active=rank0):
        prints, rerun = settle(cfg, rerun_changed, write=rank0)
        if rank0 and not only:  # the whole study is ours: what killed runs left can go
            for stale in remove_stale_temps(layout.root, recursive=True):
                print(f"removed {stale.relative_to(layout.root)}, left by an interrupted run", flush=True)
        steps = plan_steps(cfg)
        for n, step in enumerate(steps, 1):
            if only and not selected(step.name, only, {s.name for s in steps}):
                continue
            marker = layout.marker(step.name)
            if marker.is_file() and step.name not in rerun:
                print(f"[{n}/{len(steps)}] {step.name}: done earlier, skipped", flush=True)
                continue
            with hold_step(layout.root, step.name, force=force_unlock, active=rank0):
                if marker.is_file() and step.name not in rerun:  # finished by another run while we waited
                    _finished_meanwhile(step.name)
                    continue
                if rank0 and only and step.name.startswith("data."):  # data steps run one at a time: data/ is ours
                    remove_stale_temps(layout.data.root, recursive=True)
                print(f"[{n}/{len(steps)}] {step.name} ...", flush=True)
                start = time.perf_counter()
                step.run()
                timings[step.name] = time.perf_counter() - start
                if rank0:
                    atomic_write_json(marker, {"step": step.name, "seconds": round(timings[step.name], 3),
                                               **dataclasses.asdict(prints[step.name])})
            print(f"[{n}/{len(steps)}] {step.name}: {timings[step.name]:.1f}s", flush=True)
    return timings


def selected(step: str, only: list[str], steps: set[str]) -> bool:
    """Whether ``--only`` picks ``step``: a step's full name picks that step alone (a Slurm job runs
    ``x.eval_base`` without ``x.eval_base_cloze``); anything else is a prefix (``data.``, ``align_upsampled``)."""
    return any(step == p if p in steps else step.startswith(p) for p in only)


def _finished_meanwhile(step: str) -> None:
    """Alone, skip the step; with other ranks, which took no lock and will run it, stop instead."""
    from megatron_alignpt.study.lock import LockHeld

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise LockHeld(f"step {step} was finished by another run while this one started; run this one again")
    print(f"{step}: finished by another run meanwhile, skipped", flush=True)


def study_timings(root: Path) -> dict[str, float]:
    return {p.name[: -len(".done")]: json.loads(p.read_text())["seconds"] for p in sorted((root / "steps").glob("*.done"))}
