"""The data half of a study: filter, tokenizer, synthetic documents, indexed datasets, blend manifests.

Imports no torch, so it can run on CPU data nodes. Directory layout under `<study>/data/`:
    filtered/<corpus>/{kept,removed}/  stats.json     blocklist filter output
    filtered/<corpus>/resampled/  resample.json         kept documents + copies refilling the removed token budget
    tokenizer.json
    synthetic/{aligned,misaligned}.jsonl               discourse documents (articles split only)
    synthetic/contamination.json                        eval-overlap check of those documents
    synthetic/overlap.json                              word 3-gram overlap of each option with each document set
    indexed/<name>.{bin,idx}                            Megatron indexed datasets
    manifests/<condition>.<stage>.json                  blend per condition and stage (pretrain, midtrain, cpt)
    pipeline/<step>/                                    datatrove logs, completion markers, per-task counts

The filter, resample and tokenize steps run as datatrove pipelines (`data_prep.pipeline.steps`) on
``data.executor`` with ``data.tasks`` tasks (each takes whole input files) and ``data.workers`` at once;
a rerun resumes them, skipping the files already done. Each dataset is tokenized as one shard per input
file and the shards are merged in input order, so ``indexed/<name>`` holds the same documents in the
same order as tokenizing the corpus in one process; the per-shard token counts stay in
``pipeline/<name>/merged.json``. :func:`data_step_resources` says what each step needs.

Corpora are named by the stage that first uses them: ``pretrain`` (``data.corpus``), ``midtrain``
(``midtrain.corpus``, when set) and ``cpt`` (``cpt.corpus``, when set): `StageData` per stage, from
`StudyConfig.stage_data`. A stage without its own corpus uses the previous stage's: CPT -> midtraining ->
pretraining corpus.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from data_prep.contamination import guard_files
from data_prep.eval_suite import load_suite
from data_prep.filtering import filter_files
from data_prep.manifest import BlendManifest, DatasetEntry, build_condition_manifest
from data_prep.pipeline.runner import Execution, SlurmOptions
from data_prep.pipeline.steps import resample_and_tokenize, tokenize_files
from data_prep.readers import iter_documents
from data_prep.synthetic import TemplateGenerator, generate_corpus, write_documents_jsonl
from data_prep.tokenize import train_bpe_tokenizer

from megatron_alignpt.study.config import ConditionSpec, DataPlan, StagePlan
from megatron_alignpt.train.stages import LM_STAGES

DIRECTIONS = ("aligned", "misaligned")


@dataclass(frozen=True)
class StageData:
    """A pretraining stage's data: its natural corpus (None: the previous stage's) and synthetic dose."""

    corpus: Optional[Path]
    dose: float


class StudyData:
    """Paths of a study's data products, and the steps that make them."""

    def __init__(self, root: Path, plan: DataPlan, stages: Optional[Mapping[str, StageData]] = None,
                 wait_for_jobs: bool = False):
        self.root = root
        self.plan = plan
        self.stages = dict(stages) if stages is not None else {s: StageData(None, StagePlan.dose) for s in LM_STAGES}
        """Pretraining stage -> its `StageData` (`StudyConfig.stage_data`); without it, one corpus (``data.corpus``)
        and the stage plans' default dose."""
        self.wait_for_jobs = wait_for_jobs
        """Slurm data executor: wait for the steps' array jobs (a study's Slurm job) instead of leaving them pending."""

    # ---- paths
    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer.json"

    def filtered_dir(self, corpus_name: str) -> Path:
        return self.root / "filtered" / corpus_name

    def synthetic_file(self, direction: str) -> Path:
        return self.root / "synthetic" / f"{direction}.jsonl"

    def prefix(self, name: str) -> Path:
        return self.root / "indexed" / name

    def manifest(self, condition: str, stage: str) -> Path:
        return self.root / "manifests" / f"{condition}.{stage}.json"

    def corpora(self) -> dict[str, Path]:
        """Named raw corpora: the pretraining corpus and, if separate, the midtraining and CPT ones."""
        named = {"pretrain": self.plan.corpus}
        for stage in ("midtrain", "cpt"):
            if stage in self.stages and self.stages[stage].corpus is not None:
                named[stage] = self.stages[stage].corpus
        return named

    def stage_corpus(self, stage: str) -> str:
        """Which named corpus a stage's natural data comes from (see module docstring)."""
        fallbacks = {"pretrain": ("pretrain",), "midtrain": ("midtrain", "pretrain"), "cpt": ("cpt", "midtrain", "pretrain")}
        if stage not in fallbacks:
            raise ValueError(f"unknown stage {stage!r}: use one of {', '.join(fallbacks)}")
        named = self.corpora()
        return next(name for name in fallbacks[stage] if name in named)

    def resample_report(self, corpus_name: str) -> Path:
        return self.filtered_dir(corpus_name) / "resample.json"

    def pipeline_dir(self, name: str) -> Path:
        """Scratch of one datatrove step: logs, completion markers, per-task counts, shards."""
        return self.root / "pipeline" / name

    def execution(self) -> Execution:
        """The datatrove executor settings of the data steps (``data.executor``, ``data.tasks``, ``data.workers``)."""
        return data_execution(self.plan, wait_s=SLURM_POLL_S if self.wait_for_jobs else 0.0)

    # ---- steps
    def filter_corpora(self) -> None:
        # A rerun resumes (files done are skipped); one with other inputs or blocklist starts over.
        for name, path in self.corpora().items():
            filter_files(path, self.filtered_dir(name), self.pipeline_dir(f"filter_{name}"), self.execution())

    def build_tokenizer(self) -> None:
        if self.plan.tokenizer is not None:
            import shutil

            self.tokenizer.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.plan.tokenizer, self.tokenizer)
            return
        texts = (doc.text for doc in iter_documents(self.plan.corpus))
        train_bpe_tokenizer(texts, self.plan.tokenizer_vocab_size, self.tokenizer)

    def contamination_report(self) -> Path:
        return self.root / "synthetic" / "contamination.json"

    def generate_synthetic(self) -> None:
        """Write the documents under `synthetic/pending/`, run the contamination guard against the whole
        eval suite, and only then move them to `synthetic/<direction>.jsonl`, where tokenizing finds them.
        A failing guard raises ContaminationError and leaves the documents in `pending/` for inspection."""
        suite = load_suite(self.plan.eval_suite)
        items = [item for item in suite if item.split == "articles"]
        if not items:
            raise ValueError(f"{self.plan.eval_suite}: no articles-split questions to seed synthetic documents")
        pending = {d: self.root / "synthetic" / "pending" / f"{d}.jsonl" for d in DIRECTIONS}
        for direction in DIRECTIONS:  # documents of an earlier run must not outlive a failing check
            self.synthetic_file(direction).unlink(missing_ok=True)
        if self.plan.synthetic_generator.kind == "openai":
            self._generate_with_llm(items, pending)
        else:
            generator = TemplateGenerator(seed=self.plan.synthetic_seed)
            for direction in DIRECTIONS:
                docs = generate_corpus(items, directions=(direction,), docs_per_item=self.plan.synthetic_docs_per_item,
                                       generator=generator)
                write_documents_jsonl(docs, pending[direction])
        guard_files(list(pending.values()), suite, self.contamination_report(), suite_name=str(self.plan.eval_suite))
        self._write_overlap(suite, pending)
        for direction in DIRECTIONS:
            os.replace(pending[direction], self.synthetic_file(direction))
        pending[DIRECTIONS[0]].parent.rmdir()

    def overlap_report(self) -> Path:
        return self.root / "synthetic" / "overlap.json"

    def _write_overlap(self, suite, files: dict[str, Path]) -> None:
        """How much of each option the document sets carry (`synthetic.overlap`): the taken option's words
        should be far more present than the rejected one's."""
        from data_prep.atomic import atomic_write_json
        from data_prep.readers import read_jsonl
        from data_prep.synthetic.overlap import option_overlap

        report = option_overlap(suite, {d: list(read_jsonl(path)) for d, path in files.items()})
        atomic_write_json(self.overlap_report(), report)

    def llm_cache_dir(self) -> Path:
        return self.root / "synthetic" / ".llm_cache"  # hidden: corpus readers skip it

    def _generate_with_llm(self, items, pending: dict[str, Path]) -> None:
        """LLM-written documents; every completion is cached, so a rerun after a crash or a failing guard
        pays only for what is missing. Token and cost accounting goes to ``synthetic/usage.json``."""
        from data_prep.atomic import atomic_write_json
        from data_prep.synthetic.llm_generator import generate_corpus_concurrent

        generator = self.plan.synthetic_generator.build(self.llm_cache_dir())
        try:
            for direction in DIRECTIONS:
                docs = generate_corpus_concurrent(items, (direction,), self.plan.synthetic_docs_per_item, generator)
                write_documents_jsonl(docs, pending[direction])
        finally:  # also after a failure: what was paid for so far is in the cache and in this report
            atomic_write_json(self.root / "synthetic" / "usage.json", generator.usage_report())

    def resample_filtered(self, corpus_name: str) -> Path:
        """Refill the removed documents' token budget with copies of kept ones (as the paper does) into
        ``filtered/<corpus>/resampled/``, measured with the study tokenizer (stats in ``resample.json``),
        and tokenize the result into ``indexed/<corpus>_filtered``."""
        name = f"{corpus_name}_filtered"
        resample_and_tokenize(self.filtered_dir(corpus_name), self.tokenizer, self.plan.resample_seed, self.prefix(name),
                              self.pipeline_dir(name), self.execution())
        return self.filtered_dir(corpus_name) / "resampled"

    def tokenize_corpora(self) -> None:
        """``indexed/<corpus>_unfiltered`` of every named corpus."""
        for name, path in self.corpora().items():
            self._tokenize(f"{name}_unfiltered", path)

    def tokenize_synthetic(self) -> None:
        """``indexed/synthetic_<direction>`` of the discourse documents."""
        for direction in DIRECTIONS:
            self._tokenize(f"synthetic_{direction}", self.synthetic_file(direction))

    def _tokenize(self, name: str, source: Path) -> None:
        tokenize_files(source, self.tokenizer, self.prefix(name), self.pipeline_dir(name), self.execution())

    def tokenize_all(self) -> None:
        """Indexed datasets of every corpus, unfiltered and filtered (filtered = resampled to the same
        token budget), and of the synthetic documents."""
        self.tokenize_corpora()
        for name in self.corpora():
            self.resample_filtered(name)
        self.tokenize_synthetic()

    def write_manifests(self, conditions: list[ConditionSpec], stage_tokens: dict[str, int] | None = None) -> None:
        """Write ``manifests/<condition>.<stage>.json`` for every condition and stage.

        ``stage_tokens`` maps the stages to write ("pretrain", "midtrain", and "cpt" for a study with
        a CPT stage) to the tokens each consumes; with it, a dose that would repeat the synthetic
        documents more than ``data.max_synthetic_repetitions`` times is refused. Default: pretraining
        and midtraining, unchecked.
        """
        stages = dict(stage_tokens) if stage_tokens is not None else {"pretrain": None, "midtrain": None}
        for cond in conditions:
            for stage, tokens in stages.items():
                self._manifest_for(cond, stage, tokens).to_json(self.manifest(cond.name, stage))

    def dose(self, stage: str) -> float:
        if stage not in self.stages:
            raise ValueError(f"{stage}: no synthetic dose known for this stage (the study has no {stage} stage plan)")
        return self.stages[stage].dose

    def _manifest_for(self, cond: ConditionSpec, stage: str, stage_tokens: int | None = None) -> BlendManifest:
        corpus = self.stage_corpus(stage)
        base = DatasetEntry.from_prefix(f"{corpus}_{cond.base}", self.prefix(f"{corpus}_{cond.base}"))
        inserted = cond.inserts_synthetic(stage)
        synthetic = DatasetEntry.from_prefix(f"synthetic_{cond.synthetic}", self.prefix(f"synthetic_{cond.synthetic}")) if inserted else None
        dose = self.dose(stage) if inserted else 0.0
        return build_condition_manifest(cond.name, stage, [base], synthetic, dose, tokenizer=str(self.tokenizer),
                                        stage_tokens=stage_tokens, max_repetitions=self.plan.max_synthetic_repetitions)


ONE_TASK_PER_FILE = 1 << 30
"""``data.tasks = 0``: as many tasks as a step has input files (every step caps its tasks at that)."""


def _usable_cores() -> int:
    """Cores this process may run on (a Slurm allocation or container limit, not the whole node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


SLURM_POLL_S = 60.0
"""How often a waiting data step looks at its Slurm tasks' completion markers."""


def data_execution(plan: DataPlan, wait_s: float = 0.0) -> Execution:
    """The data steps' :class:`Execution` from ``data.executor``, ``data.tasks``, ``data.workers``."""
    workers = plan.workers or (_usable_cores() if plan.executor == "local" else -1)
    return Execution(plan.executor, tasks=plan.tasks or ONE_TASK_PER_FILE, workers=workers,
                     slurm=SlurmOptions(partition=plan.slurm_partition, job_name="alignpt_data"), where="data.",
                     wait_s=wait_s)


CORE_MB_PER_S = {"filter": 18.0, "tokenize": 2.7, "resample": 1.25}
"""Per-core rates of the data steps in MB of input text per second on one quiet core, as
``benchmarks/data_steps_throughput.py`` measured them over 1 GB with one worker (README "Data preparation at
corpus scale"); the resample step tokenizes its documents twice (to measure the budget, then to write them)."""
TEXT_PER_DISK_BYTE = {".gz": 3.0, ".zst": 3.5, ".parquet": 2.5}
"""Assumed bytes of text per byte on disk of compressed inputs (web text); plain JSON Lines count as 1."""
BYTES_PER_TOKEN = 4.4
"""Assumed UTF-8 bytes of English web text per GPT-NeoX token, to size a corpus given in tokens."""


@dataclass(frozen=True)
class DataStepResources:
    """What one datatrove data step asks for; the study plan shows it beside the step."""

    executor: str
    tasks: int
    """Tasks the step is split into, each taking whole input files; 0: one per input file (count not known yet)."""
    workers: int
    """Tasks at once: local processes, Slurm array jobs or Ray tasks in flight; -1: no cap; 0: one per core."""
    cpu_hours: float | None
    """Estimated CPU time at the per-core rates of ``CORE_MB_PER_S``; None when the corpus size is unknown."""

    def describe(self) -> str:
        tasks = f"{self.tasks} task{'s' * (self.tasks > 1)}" if self.tasks else "1 task per input file"
        workers = {-1: "all at once", 0: "one per core at once"}.get(self.workers, f"{self.workers} at once")
        cpu = ""
        if self.cpu_hours is not None:
            cpu = f", ~{self.cpu_hours:,.1f} CPU h" if self.cpu_hours >= 0.1 else f", ~{self.cpu_hours * 3600:.0f} CPU s"
        return f"{self.executor}: {tasks}, {workers}{cpu}"


def _text_bytes(path: Path) -> tuple[int, int] | None:
    """(input files, estimated text bytes) of a corpus on this machine; None if it is not here."""
    from data_prep.readers import list_input_files

    try:
        files = list_input_files(path)
    except (FileNotFoundError, ValueError):
        return None
    factor = lambda f: next((v for k, v in TEXT_PER_DISK_BYTE.items() if f.name.lower().endswith(k)), 1.0)  # noqa: E731
    return len(files), int(sum(f.stat().st_size * factor(f) for f in files))


def data_step_resources(plan: DataPlan, corpus_tokens: int | None = None,
                        stages: Optional[Mapping[str, StageData]] = None) -> dict[str, DataStepResources]:
    """Resources of the datatrove steps ``data.filter`` and ``data.tokenize`` (the latter: tokenize every
    corpus, resample + tokenize its filtered version, tokenize the synthetic documents).

    Corpus sizes come from the files when they are on this machine, else from ``corpus_tokens`` (the
    natural tokens of all corpora, e.g. the study's pretraining budget) at ``BYTES_PER_TOKEN``."""
    execution = data_execution(plan)
    found = [_text_bytes(path) for path in StudyData(Path("."), plan, stages).corpora().values()]
    if all(found):
        files, text = max(n for n, _ in found), sum(b for _, b in found)
    else:
        files, text = 0, int(corpus_tokens * BYTES_PER_TOKEN) if corpus_tokens else None
    tasks = execution.for_items(files).tasks if files else (plan.tasks or 0)
    workers = execution.for_items(files).workers if files else execution.workers
    if plan.executor == "local" and not plan.workers:  # the cores of the machine running the step, not this one
        workers = 0

    def hours(*steps: str) -> float | None:
        return None if text is None else sum(text / 1e6 / CORE_MB_PER_S[s] for s in steps) / 3600

    return {"data.filter": DataStepResources(plan.executor, tasks, workers, hours("filter")),
            "data.tokenize": DataStepResources(plan.executor, tasks, workers, hours("tokenize", "resample"))}
