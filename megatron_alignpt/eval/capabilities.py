"""Capability benchmarks through lm-evaluation-harness (SPEC section 8), for our checkpoints.

    alignpt eval capabilities --checkpoint runs/demo/models/unfiltered/dpo --tasks paper --out runs/eval/caps
    alignpt eval capabilities --checkpoint DIR --tasks arc_easy,piqa --limit 50 --out DIR

``--tasks paper`` is the paper's set with its shots (`PAPER_SHOTS`): ARC-Easy 25, CUTE 5, GSM8K 10,
IFEval 0, MMLU 5, PIQA 10, PopQA 5, greedy generation where a task generates. Other lm-eval task,
group or tag names run with the task's own shots unless ``--num-fewshot`` overrides every task.
This package's task folder (`TASKS_DIR`: the misalignment suite as ``alignpt_misalignment*`` tasks)
is always on the include path; ``--include-path`` adds more folders of task YAMLs.

Before the model is loaded every task is built once, which downloads (or finds cached) its data.
A task lm-eval does not know, one whose Python packages or NLTK data are missing (`TASK_REQUIREMENTS`;
``pip install -e '.[eval]'`` brings the packages), or whose data cannot be loaded (no network, a
gated dataset) stops the run with one error naming each such task and why; ``skip_unavailable`` runs
the others and records the missing ones under ``skipped``. ``--offline`` (HF_DATASETS_OFFLINE /
HF_HUB_OFFLINE) uses only locally cached data and fails at once instead of retrying the Hub.
CUTE and PopQA, which lm-eval 0.4.13 does not ship, are task YAMLs in `TASKS_DIR` (``cute``,
``popqa``); ``alignpt_smoke`` runs one tiny offline task per benchmark family (`tasks/README.md`).

Output: ``<out>/capabilities.json`` with lm-eval's ``results`` / ``groups`` / ``n-shot`` /
``versions``, the ``skipped`` tasks, the checkpoint, the caller's ``labels`` and the code version.
A study keeps them at ``evals/<condition>/<stage>_capabilities/capabilities.json``, where its results
step collects them into ``results/capabilities.parquet``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

PAPER_SHOTS: dict[str, int] = {"arc_easy": 25, "cute": 5, "gsm8k": 10, "ifeval": 0, "mmlu": 5, "piqa": 10, "popqa": 5}
TASKS_DIR = Path(__file__).resolve().parent / "tasks"


@dataclass(frozen=True)
class TaskRequirements:
    """What a task needs besides lm-eval and its dataset."""

    modules: tuple[str, ...] = ()
    nltk_data: tuple[str, ...] = ()


_IFEVAL_MODULES = ("langdetect", "immutabledict", "nltk")  # lm-eval's `ifeval` extra
TASK_REQUIREMENTS: dict[str, TaskRequirements] = {
    "ifeval": TaskRequirements(_IFEVAL_MODULES, ("tokenizers/punkt_tab",)),
    "alignpt_smoke_ifeval": TaskRequirements(_IFEVAL_MODULES),  # its instructions need no sentence splitter
    "alignpt_smoke": TaskRequirements(_IFEVAL_MODULES),
}


def missing_requirements(name: str) -> Optional[str]:
    """Why ``name`` cannot run here (a package or NLTK resource it needs is absent), or None."""
    import importlib.util
    import os

    needs = TASK_REQUIREMENTS.get(name, TaskRequirements())
    absent = [m for m in needs.modules if importlib.util.find_spec(m) is None]
    if absent:
        return f"needs the Python package(s) {', '.join(absent)}: pip install -e '.[eval]'"
    for resource in needs.nltk_data:
        import nltk

        try:
            nltk.data.find(resource)
        except LookupError:
            fetched = os.environ.get("HF_HUB_OFFLINE") != "1" and nltk.download(resource.rsplit("/", 1)[-1], quiet=True)
            if not fetched:
                return (f"needs NLTK's {resource} data, not found (offline?): python -m nltk.downloader "
                        f"{resource.rsplit('/', 1)[-1]} where there is network (the training image has it)")
    return None


class TaskDataUnavailable(FileNotFoundError):
    """Some requested tasks are unknown to lm-eval or their data could not be loaded."""

    def __init__(self, reasons: dict[str, str]):
        self.reasons = reasons
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        super().__init__(f"cannot run task(s) {', '.join(reasons)}: {detail}")


def parse_tasks(spec: str | Sequence[str]) -> list[str]:
    """``paper`` (the paper's benchmarks) and/or comma-separated lm-eval task names, repeats dropped."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for part in (p.strip() for p in parts):
        if part == "paper":
            names.extend(PAPER_SHOTS)
        elif part:
            names.append(part)
    if not names:
        raise ValueError(f"no tasks in {spec!r}; use 'paper' or names such as arc_easy,piqa")
    return list(dict.fromkeys(names))


def _import_lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval.tasks import TaskManager
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("capability benchmarks need lm-evaluation-harness: pip install -e '.[eval]'") from err
    return TaskManager


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def build_tasks(names: list[str], task_manager, num_fewshot: Optional[int] = None) -> tuple[list[Any], dict[str, str], dict[str, int]]:
    """Build each task (loading its data) with its shots; (task objects, {name: why unavailable}, {name: shots})."""
    known = set(task_manager.all_tasks)
    built, unavailable, shots = [], {}, {}
    for name in names:
        if name not in known:
            unavailable[name] = "not a task, group or tag known to this lm-eval version or the include paths"
            continue
        why = missing_requirements(name)
        if why is not None:
            unavailable[name] = why
            continue
        try:
            loaded = task_manager.load([name])
        except ImportError as err:
            unavailable[name] = f"a package it needs is missing ({_one_line(err)}): pip install -e '.[eval]'"
            continue
        except Exception as err:  # datasets raises many kinds (ConnectionError, DatasetNotFoundError, ...)
            unavailable[name] = f"its data could not be loaded ({_one_line(err)})"
            continue
        n = num_fewshot if num_fewshot is not None else PAPER_SHOTS.get(name)
        for task in loaded["tasks"].values():
            if n is not None:
                task.set_config(key="num_fewshot", value=n)
            if PAPER_SHOTS.get(name) is not None and task.get_config("output_type") == "generate_until":
                task.set_config(key="generation_kwargs", value={"do_sample": False, "temperature": 0.0}, update=True)
        if n is not None:
            shots[name] = n
        group = loaded["groups"].get(name)
        built.extend([group] if group is not None else loaded["tasks"].values())
    return built, unavailable, shots


def run_capabilities(
    checkpoint: Optional[Path],
    tasks: str | Sequence[str],
    out_dir: Path,
    tensor_parallel: int = 1,
    batch_size: int = 16,
    num_fewshot: Optional[int] = None,
    limit: Optional[float] = None,
    include_path: Sequence[str | Path] = (),
    skip_unavailable: bool = False,
    model=None,
    bootstrap_iters: int = 1000,
    log_samples: bool = False,
    include_defaults: bool = True,
    labels: Optional[dict] = None,
) -> dict:
    """Run lm-eval's `simple_evaluate` on `checkpoint` (or a preloaded `AlignptLM` as ``model``); write capabilities.json.

    ``labels`` (e.g. ``{"condition": "filtered", "stage": "post"}``) are stored with the results; the
    study's results step (`study.results.load_capability_rows`) reads them from
    ``evals/<condition>/<stage>_capabilities/capabilities.json``."""
    from data_prep.atomic import atomic_write_json

    TaskManager = _import_lm_eval()
    from lm_eval import simple_evaluate

    from megatron_alignpt.eval.lm_eval_model import AlignptLM
    from megatron_alignpt.provenance import code_version
    from megatron_alignpt.runtime import is_rank0

    names = parse_tasks(tasks)
    manager = TaskManager(include_path=[str(TASKS_DIR), *map(str, include_path)], include_defaults=include_defaults)
    built, unavailable, shots = build_tasks(names, manager, num_fewshot)
    if unavailable and not (skip_unavailable and built):
        raise TaskDataUnavailable(unavailable)
    if limit is not None and limit >= 1:
        limit = int(limit)
    lm = model if model is not None else AlignptLM(pretrained=str(checkpoint), tensor_parallel=tensor_parallel, batch_size=batch_size)
    res = simple_evaluate(model=lm, tasks=built, task_manager=manager, limit=limit, bootstrap_iters=bootstrap_iters,
                          log_samples=log_samples)
    out = {
        "results": res.get("results", {}) if res else {},
        "groups": res.get("groups", {}) if res else {},
        "n-shot": res.get("n-shot", {}) if res else {},
        "versions": res.get("versions", {}) if res else {},
        "n-samples": res.get("n-samples", {}) if res else {},
        "paper_shots": shots,
        "skipped": unavailable,
        "checkpoint": str(getattr(lm, "checkpoint", checkpoint)),
        "limit": limit,
        "labels": labels or {},
        "code": code_version(),
    }
    path = Path(out_dir) / "capabilities.json"
    if is_rank0():
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, _jsonable(out))
    out["path"] = str(path)
    if log_samples and res:
        out["samples"] = res.get("samples", {})
    return out


def _jsonable(obj):
    """Results hold numpy scalars and the odd non-JSON value; keep numbers, stringify the rest."""
    import json
    import math

    def fix(x):
        if isinstance(x, dict):
            return {str(k): fix(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [fix(v) for v in x]
        if hasattr(x, "item") and callable(x.item):
            x = x.item()
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, (str, int, float, bool)) or x is None:
            return x
        return str(x)

    return json.loads(json.dumps(fix(obj)))
