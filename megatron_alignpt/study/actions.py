"""What running one plan step does, per step kind: the work both executors end up calling (locally in
turn, or on Slurm as `alignpt study run --only <step>` in the step's job). GPU code is imported only
when a step runs."""
from __future__ import annotations

import os
from typing import Callable

from megatron_alignpt.study.plan import PlanStep, StudyPlan, stage_tokens


def is_global_rank0() -> bool:
    """Under torchrun every rank runs the step; only one writes the study's shared files."""
    return int(os.environ.get("RANK", "0")) == 0


def _data(plan: StudyPlan, step: PlanStep, wait_for_jobs: bool = False) -> None:
    from megatron_alignpt.study.data_steps import StudyData

    cfg = plan.cfg
    data = StudyData(plan.layout.data.root, cfg.data, cfg.stage_data(), wait_for_jobs=wait_for_jobs)
    run = {
        "data.filter": data.filter_corpora,
        "data.tokenizer": data.build_tokenizer,
        "data.synthetic": data.generate_synthetic,
        "data.tokenize": data.tokenize_all,
        "data.manifests": lambda: data.write_manifests(cfg.conditions, stage_tokens(cfg)),
    }[step.kind]
    run()


def _train(plan: StudyPlan, step: PlanStep) -> None:
    from megatron_alignpt.train.trainer import run_stage

    run_stage(plan.train_config(step))


def _evaluate(plan: StudyPlan, step: PlanStep) -> None:
    """Score one checkpoint; ``when`` is the results-table stage (base / post), the directory adds the
    scoring (``_cloze``, ``_generate``) so every scoring of one checkpoint sits side by side."""
    from megatron_alignpt.eval.run import evaluate_misalignment

    if step.tamper:
        _evaluate_tampering(plan, step)
        return
    evaluate_misalignment(plan.checkpoint_of(step), plan.eval_config(step),
                          tensor_parallel=plan.cfg.parallel.tensor_parallel)


def _evaluate_tampering(plan: StudyPlan, step: PlanStep) -> None:
    """Score every kept checkpoint of a tampering run, each into ``tokens_<N>/`` labelled with the tokens of
    tampering it had seen; a rerun skips the checkpoints already scored (their summary.json exists)."""
    from megatron_alignpt.eval.misalignment import SUMMARY_FILE
    from megatron_alignpt.eval.run import evaluate_misalignment
    from megatron_alignpt.train.checkpoint import iteration_dir
    from megatron_alignpt.train.run_dir import checkpoint_root, saved_iterations

    run_dir = plan.checkpoint_of(step)
    per_iteration = plan.resolved(step).tokens_per_iteration
    iterations = saved_iterations(run_dir)
    if not iterations:
        raise FileNotFoundError(f"{checkpoint_root(run_dir)}: no checkpoints of tampering run {step.tamper} (seed {step.tamper_seed})")
    for iteration in iterations:
        cfg = plan.tamper_eval_config(step, iteration, iteration * per_iteration)
        if (cfg.out_dir / SUMMARY_FILE).is_file():
            continue
        evaluate_misalignment(iteration_dir(checkpoint_root(run_dir), iteration), cfg,
                              tensor_parallel=plan.cfg.parallel.tensor_parallel)


def _personality(plan: StudyPlan, step: PlanStep) -> None:
    from megatron_alignpt.eval.personality import evaluate_personality

    evaluate_personality(plan.checkpoint_of(step), plan.personality_config(step), tensor_parallel=plan.cfg.parallel.tensor_parallel)


def _em_probe(plan: StudyPlan, step: PlanStep) -> None:
    from megatron_alignpt.eval.em_probe import evaluate_em_probe

    evaluate_em_probe(plan.checkpoint_of(step), plan.em_probe_config(step), tensor_parallel=plan.cfg.parallel.tensor_parallel)


def _capabilities(plan: StudyPlan, step: PlanStep) -> None:
    from pathlib import Path

    from data_prep.atomic import atomic_write_json
    from megatron_alignpt.eval.capabilities import TaskDataUnavailable, run_capabilities

    cfg, out_dir = plan.cfg, Path(step.outputs[0])
    try:
        run_capabilities(checkpoint=plan.layout.stage_dir(step.run, step.stage), tasks=cfg.eval.capability_tasks,
                         out_dir=out_dir, tensor_parallel=cfg.parallel.tensor_parallel, skip_unavailable=True,
                         labels={**plan.run_labels(step.run), "run": step.run, "stage": step.when})
    except (TaskDataUnavailable, ImportError) as err:
        # No task could run here (offline, lm-eval or a task's packages missing): record why and finish the
        # step, so results and report still run; the notebooks show the reasons.
        reasons = err.reasons if isinstance(err, TaskDataUnavailable) else {"lm-eval": str(err)}
        if is_global_rank0():
            atomic_write_json(out_dir / "unavailable.json", {"tasks": cfg.eval.capability_tasks, "reasons": reasons})
        print(f"capabilities for {step.run} not run: {err}", flush=True)


def _results(plan: StudyPlan, step: PlanStep) -> None:
    from megatron_alignpt.study.results import write_results_table

    write_results_table(plan.layout.root)


def _report(plan: StudyPlan, step: PlanStep) -> None:
    from megatron_alignpt.study.report import write_report

    print(f"report: {write_report(plan.layout.root)}", flush=True)


ACTIONS: dict[str, Callable[[StudyPlan, PlanStep], None]] = {
    "data.filter": _data, "data.tokenizer": _data, "data.synthetic": _data, "data.tokenize": _data,
    "data.manifests": _data, "train": _train, "eval": _evaluate, "capabilities": _capabilities,
    "results": _results, "report": _report, "personality": _personality, "em_probe": _em_probe,
}
"""Step kind (`plan.STEP_KINDS`) -> what running a step of it does."""


def run_step(plan: StudyPlan, step: PlanStep, wait_for_data_jobs: bool = False) -> None:
    """Run one step. ``wait_for_data_jobs``: a data step on the Slurm data executor waits for its array jobs
    (as a study's Slurm job must, its dependents starting when it ends) instead of stopping as pending."""
    if step.kind_info.data:
        _data(plan, step, wait_for_data_jobs)
    else:
        ACTIONS[step.kind](plan, step)
