"""Build and run the filter -> (resample) -> write/tokenize pipeline on a datatrove executor.

Layout of ``output_dir``:

    kept/<stem>.jsonl              documents that passed the blocklist (input records, all fields)
    removed/<stem>.jsonl           every removed document with ``id`` and ``filter_reason``
    resampled/<stem>.jsonl         with ``resample``: kept documents + drawn copies (``resample_copy``)
    indexed/<stem>.bin/.idx        with ``tokenizer``: Megatron datasets of the final documents, one per input
    indexed/datasets.json          their prefixes, documents and tokens (merge with data_prep.indexed.merge_indexed)
    stats/<block>/<rank>.json      per-task counts of every block
    pipeline_stats.json            those counts summed per block (written when all tasks are done)
    logs/<stage>/                  datatrove logs, stats and completion markers (a rerun skips completed tasks)

The same pipeline runs on every executor: ``local`` (processes on this machine), ``slurm``
(datatrove's SlurmPipelineExecutor: one array job per stage, the resample stage depending on the
filter stage) and ``ray`` (datatrove's RayPipelineExecutor; needs ``pip install ray``). Slurm returns
after submitting; run the same command again once the jobs are done to write ``pipeline_stats.json``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from data_prep.atomic import atomic_write_json, check_output

EXECUTORS = ("local", "slurm", "ray")


@dataclass
class SlurmOptions:
    """What SlurmPipelineExecutor needs to submit a stage (see datatrove's docs for the rest)."""

    partition: str = ""
    time: str = "12:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    job_name: str = "alignpt_prep"
    venv_path: Optional[str] = None
    sbatch_args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Execution:
    """Where the tasks of a pipeline stage run, and how many at once; validated on construction."""

    executor: str = "local"
    tasks: int = 1
    """Shards of the work: task ``rank`` takes input files ``rank, rank + tasks, ...``."""
    workers: int = 1
    """Local: tasks run at once (processes); Ray: tasks in flight; Slurm: array jobs at once (-1: no cap)."""
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    where: str = ""
    """Prefix of the field names in error messages (e.g. ``data.``)."""
    wait_s: float = 0.0
    """Slurm: poll every ``wait_s`` seconds until the stage's array job is over (a study's data-step job, whose
    dependents start when it ends); 0 returns once submitted, leaving the stage pending."""

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"{self.where}executor: {self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.tasks < 1:
            raise ValueError(f"{self.where}tasks: must be >= 1, got {self.tasks}")
        if self.workers == 0 or self.workers < -1:
            raise ValueError(f"{self.where}workers: must be >= 1 or -1 (no cap), got {self.workers}")
        if self.wait_s < 0:
            raise ValueError(f"{self.where}wait_s: must be >= 0, got {self.wait_s}")
        if self.executor == "slurm" and not self.slurm.partition:
            raise ValueError(f"{self.where}slurm.partition: the slurm executor needs a partition (--slurm-partition)")

    def for_items(self, items: int) -> "Execution":
        """At most one task per work item (input file), and no more local workers than tasks."""
        tasks = max(1, min(self.tasks, items))
        workers = min(self.workers, tasks) if self.executor == "local" and self.workers != -1 else self.workers
        return replace(self, tasks=tasks, workers=workers)


@dataclass
class PipelineConfig:
    """One pipeline run; validated on construction."""

    inputs: list[Path]
    output_dir: Path
    text_field: str = "text"
    id_field: str = "id"
    blocklist_dir: Optional[Path] = None
    resample: bool = False
    """Refill each file's removed budget with copies of retained documents (see data_prep.resample)."""
    seed: int = 0
    tokenizer: Optional[Path] = None
    """Tokenize the final documents into indexed/; with ``resample`` it also makes the budget count tokens."""
    executor: str = "local"
    tasks: int = 1
    workers: int = 1
    """Local: tasks run at once (processes); Ray: tasks in flight; Slurm: array jobs at once (-1: no cap)."""
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def __post_init__(self) -> None:
        self.inputs = [Path(p) for p in self.inputs]
        self.output_dir = Path(self.output_dir)
        self.tokenizer = Path(self.tokenizer) if self.tokenizer is not None else None
        self.blocklist_dir = Path(self.blocklist_dir) if self.blocklist_dir is not None else None
        if not self.inputs:
            raise ValueError("PipelineConfig.inputs: give at least one input file or directory")
        self.execution  # validates executor, tasks, workers and slurm
        if self.tokenizer is not None and not self.tokenizer.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {self.tokenizer}")

    @property
    def execution(self) -> Execution:
        return Execution(self.executor, self.tasks, self.workers, self.slurm, where="PipelineConfig.")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def build_stages(cfg: PipelineConfig) -> dict[str, list]:
    """The pipeline as datatrove blocks: ``{"filter": [...], "resample": [...]}`` (resample only if asked)."""
    from data_prep.pipeline.blocks import IndexedTokenizerStep, JsonlRowWriter, ResampleStep

    out = cfg.output_dir
    stats = out / "stats"
    stages = {"filter": filter_stage(cfg.inputs, out, stats, cfg.blocklist_dir, cfg.text_field, cfg.id_field)}
    if cfg.resample:
        stages["resample"] = [
            ResampleStep(out, seed=cfg.seed, tokenizer=cfg.tokenizer, text_field=cfg.text_field, stats_dir=stats),
            JsonlRowWriter(out / "resampled", block="write_resampled", stats_dir=stats),
        ]
    if cfg.tokenizer is not None:
        stages["resample" if cfg.resample else "filter"].append(IndexedTokenizerStep(out / "indexed", cfg.tokenizer, stats_dir=stats))
    return stages


def filter_stage(inputs: list, out: Path, stats_dir: Path, blocklist_dir: Path | None = None,
                 text_field: str = "text", id_field: str = "id") -> list:
    """The blocklist filter as datatrove blocks: read -> filter (removed/ with reasons) -> kept/.

    The one filter implementation: ``prep filter``, ``prep pipeline`` and the study's filter step run it."""
    from data_prep.pipeline.blocks import BlocklistFilterStep, DocumentReader, JsonlRowWriter

    return [
        DocumentReader(inputs, text_field=text_field, id_field=id_field, stats_dir=stats_dir),
        BlocklistFilterStep(exclusion_writer=JsonlRowWriter(out / "removed", block="write_removed", stats_dir=stats_dir),
                            blocklist_dir=blocklist_dir, stats_dir=stats_dir),
        JsonlRowWriter(out / "kept", block="write_kept", stats_dir=stats_dir),
    ]


def make_executor(execution: Execution, logging_dir: Path, pipeline: list, depends=None):
    """A datatrove executor for one stage; logs and completion markers live in ``logging_dir``."""
    logging_dir = str(logging_dir)
    if execution.executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(pipeline, tasks=execution.tasks, workers=execution.workers, logging_dir=logging_dir,
                                     depends=depends, skip_completed=True)
    if execution.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        s = execution.slurm
        return SlurmPipelineExecutor(pipeline, tasks=execution.tasks, workers=execution.workers, time=s.time,
                                     partition=s.partition, cpus_per_task=s.cpus_per_task, mem_per_cpu_gb=s.mem_per_cpu_gb,
                                     job_name=f"{s.job_name}_{Path(logging_dir).name}", venv_path=s.venv_path,
                                     sbatch_args=dict(s.sbatch_args) or None, logging_dir=logging_dir,
                                     depends=depends, skip_completed=True)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError("the ray executor needs Ray: pip install 'ray>=2.9' (or use --executor local/slurm)") from None
    from datatrove.executor import RayPipelineExecutor

    return RayPipelineExecutor(pipeline, tasks=execution.tasks, workers=execution.workers, logging_dir=logging_dir,
                               depends=depends, skip_completed=True)


def incomplete_tasks(logging_dir: Path, tasks: int) -> list[int]:
    """Tasks of the stage logged in ``logging_dir`` without a completion marker."""
    done = Path(logging_dir) / "completions"
    return [rank for rank in range(tasks) if not (done / f"{rank:05d}").is_file()]


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any] | None:
    """Run (or resume) every stage; returns the summed stats, or None while Slurm/Ray tasks are pending."""
    # An existing output directory is resumed (see _check_same_config); one overlapping an input never is.
    check_output(cfg.output_dir, cfg.inputs, overwrite=cfg.output_dir.is_dir())
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    _check_same_config(cfg)
    stages = build_stages(cfg)
    previous = None
    for name, pipeline in stages.items():
        executor = make_executor(cfg.execution, cfg.output_dir / "logs" / name, pipeline, depends=previous)
        if cfg.executor == "local" and previous is not None:
            executor.depends = None  # the previous stage ran to completion just above
        executor.run()
        previous = executor
    if any(incomplete_tasks(cfg.output_dir / "logs" / name, cfg.tasks) for name in stages):
        return None
    return finish(cfg, list(stages))


def finish(cfg: PipelineConfig, stages: list[str]) -> dict[str, Any]:
    """Sum per-task stats into ``pipeline_stats.json`` and list the indexed datasets."""
    summary = collect_stats(cfg.output_dir / "stats")
    summary["stages"] = stages
    summary["config"] = cfg.to_dict()
    if cfg.tokenizer is not None:
        summary["indexed"] = list_indexed(cfg.output_dir / "indexed")
    atomic_write_json(cfg.output_dir / "pipeline_stats.json", summary)
    return summary


def _check_same_config(cfg: PipelineConfig) -> None:
    """Refuse to resume an output directory made with another configuration (the outputs would mix)."""
    path = cfg.output_dir / "pipeline_config.json"
    current = cfg.to_dict()
    comparable = {k: v for k, v in current.items() if k not in ("executor", "workers", "slurm")}
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        before = {k: v for k, v in previous.items() if k not in ("executor", "workers", "slurm")}
        if before != comparable:
            changed = sorted(k for k in set(before) | set(comparable) if before.get(k) != comparable.get(k))
            raise ValueError(f"{cfg.output_dir} was made with a different pipeline configuration ({', '.join(changed)} "
                             "changed); use a new output directory or delete this one")
        return
    atomic_write_json(path, current)


def _add(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
            total.setdefault(key, value)
        elif isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value


def collect_stats(stats_dir: Path) -> dict[str, Any]:
    """``{block: summed counts}`` over ``stats_dir/<block>/<rank>.json`` (ratios are recomputed)."""
    blocks: dict[str, Any] = {}
    for block_dir in sorted(p for p in Path(stats_dir).iterdir() if p.is_dir()) if Path(stats_dir).is_dir() else []:
        total: dict[str, Any] = {"tasks": 0}
        for part in sorted(block_dir.glob("*.json")):
            data = json.loads(part.read_text(encoding="utf-8"))
            data.get("resample", {}).pop("files", None)  # per-file detail stays in the per-task files
            _add(total, data)
            total["tasks"] += 1
        if "resample" in total:
            r = total["resample"]
            r["total"] = r.get("retained", 0) + r.get("added", 0)
            r["total_over_budget"] = r["total"] / r["budget"] if r.get("budget") else 0.0
        if "documents_in" in total:
            total["flag_rate"] = total.get("removed", 0) / total["documents_in"] if total["documents_in"] else 0.0
        blocks[block_dir.name] = total
    return {"blocks": blocks}


def list_indexed(folder: Path) -> list[dict[str, Any]]:
    """Prefixes (relative to ``folder``), documents and tokens of the datasets in ``folder``; also
    written to ``folder/datasets.json``."""
    from data_prep.indexed import read_index

    rows = []
    for idx in sorted(Path(folder).glob("*.idx")) if Path(folder).is_dir() else []:
        prefix = idx.with_suffix("")
        lengths = read_index(prefix).lengths
        rows.append({"prefix": prefix.name, "documents": int(lengths.size), "tokens": int(lengths.sum(dtype="int64"))})
    if rows:
        atomic_write_json(Path(folder) / "datasets.json", rows)
    return rows
