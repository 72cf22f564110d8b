"""A study's plan: every step, built once from its config, with what it is, what it waits for, what it
reads and writes and what it needs to run.

    alignpt study plan --recipe tiny_cpu [--json]

Executors run the plan (`study.local` one step after another, `study.submit` as dependent Slurm jobs);
status, results, fingerprints and the compute estimate read its fields. Nothing parses a step's name:
the name is a label, unique in the plan, built as ``<run>.<suffix>`` for run steps.

Step kinds (`STEP_KINDS`, the one table of them): the data steps (``data.filter`` -> ``data.tokenizer`` ->
``data.synthetic`` -> ``data.tokenize`` -> ``data.manifests``); per run (a condition, or a condition and a
seed) ``train`` steps pretrain -> midtrain [-> cpt] -> sft -> dpo, ``eval`` steps scoring the base
checkpoint (after the last pretraining stage) and the post-trained one (after DPO), an optional
``capabilities`` step; then ``results`` (after every evaluation) and ``report``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator, Literal, Optional

from megatron_alignpt.config_base import ConfigError
from megatron_alignpt.study.config import ConditionSpec, StudyConfig
from megatron_alignpt.study.data_steps import StudyData
from megatron_alignpt.train.stages import LM_STAGES, POSTTRAIN_STAGES, STAGE_KINDS, previous_stage

SEED_MARK = "@seed"
Role = Literal["cpu", "train", "eval"]


@dataclass(frozen=True)
class Resources:
    """What one step needs. Training steps may be spread over more nodes by the Slurm executor
    (``--nodes``, ``--nodes-for``); ``gpus`` is the least that holds one model replica."""

    nodes: int = 1
    gpus: int = 0
    """GPUs the step needs at least (0: a CPU step)."""
    tasks: int = 1
    """Processes of a CPU step (a data step's executor tasks)."""
    time: str = ""
    """Wall-time limit (Slurm's --time); "" leaves it to the site."""
    executor: str = ""
    """Data steps run on datatrove: its executor (local / slurm / ray); "" for every other step."""
    workers: int = 0
    """Data steps: datatrove tasks at once (-1: no cap)."""
    cpu_hours: Optional[float] = None
    """Data steps: estimated CPU time at the measured per-core rates (None: corpus size unknown)."""

    def describe_data(self) -> str:
        from megatron_alignpt.study.data_steps import DataStepResources

        return DataStepResources(self.executor, self.tasks, self.workers, self.cpu_hours).describe()


@dataclass(frozen=True)
class StepKind:
    name: str
    role: Role
    """cpu: one process, no GPU; train: torchrun over the GPUs of one or more nodes; eval: one node."""
    optional: bool = False
    """Its failure never cancels the steps after it (Slurm: they wait with afterany)."""
    data: bool = False
    """A data step: torch-free, reads the corpora and writes under ``data/`` (the data image on Slurm)."""
    about: str = ""


STEP_KINDS: dict[str, StepKind] = {k.name: k for k in (
    StepKind("data.filter", "cpu", data=True, about="blocklist filter of every corpus (kept / removed)"),
    StepKind("data.tokenizer", "cpu", data=True, about="the study tokenizer (copied or trained)"),
    StepKind("data.synthetic", "cpu", data=True, about="synthetic discourse documents, contamination-checked"),
    StepKind("data.tokenize", "cpu", data=True, about="indexed datasets of every corpus and document set"),
    StepKind("data.manifests", "cpu", data=True, about="blend manifest per condition and pretraining stage"),
    StepKind("train", "train", about="one training stage of a run"),
    StepKind("eval", "eval", about="misalignment suite on a checkpoint, one scoring"),
    StepKind("capabilities", "eval", optional=True, about="lm-eval capability tasks on the DPO checkpoint"),
    StepKind("personality", "eval", about="TRAIT-style personality questions on a checkpoint"),
    StepKind("em_probe", "eval", about="free-form emergent-misalignment probe, answers judged"),
    StepKind("results", "cpu", about="the study's results tables"),
    StepKind("report", "cpu", about="report.html"),
)}
DATA_KINDS = tuple(name for name, kind in STEP_KINDS.items() if kind.data)


def data_resources(kind: str, found: dict) -> Resources:
    """Resources of a data step: the datatrove steps (filter, tokenize) with their executor, tasks, workers and
    CPU estimate (``found``: `data_steps.data_step_resources`); the others are one process."""
    if kind not in found:
        return Resources()
    r = found[kind]
    return Resources(tasks=r.tasks, executor=r.executor, workers=r.workers, cpu_hours=r.cpu_hours)


@dataclass(frozen=True)
class EvalPass:
    """One scoring of one checkpoint: ``when`` is the results table's stage (base / post)."""

    when: Literal["base", "post"]
    scoring: str
    """logprob, cloze or generate (`eval.config.SCORING_METHODS`)."""

    @property
    def dir_name(self) -> str:
        """``evals/<run>/<dir_name>``: every scoring of a checkpoint side by side."""
        return self.when if self.scoring == "logprob" else f"{self.when}_{self.scoring}"

    @property
    def suffix(self) -> str:
        return f"eval_{self.dir_name}"


CAPABILITIES_DIR = "post_capabilities"
EVAL_DIR_STAGES = {EvalPass(w, s).dir_name: w for w in ("base", "post") for s in ("logprob", "cloze", "generate")}
EVAL_DIR_STAGES[CAPABILITIES_DIR] = "post"
"""Evaluation directory name -> results-table stage, for results written before rows carried labels."""


@dataclass(frozen=True)
class Run:
    """One condition trained with one seed: what the plan trains and evaluates. Its lineage includes the
    seed, so runs of different seeds never share a checkpoint."""

    spec: ConditionSpec
    seed: Optional[int] = None
    """None: a study without ``seeds``; the run is named after its condition and keeps each stage's seed."""

    @property
    def name(self) -> str:
        return self.spec.name if self.seed is None else f"{self.spec.name}{SEED_MARK}{self.seed}"

    @property
    def condition(self) -> str:
        return self.spec.name

    def lineage(self, stages: tuple[str, ...], stage: str) -> tuple:
        return (self.seed,) + self.spec.lineage(stages, stage)


def study_runs(cfg: StudyConfig) -> list[Run]:
    """Each condition once per seed (seed-major: every condition of the first seed, then the next seed),
    or once with the stages' own seeds when the study lists none."""
    if not cfg.seeds:
        return [Run(c) for c in cfg.conditions]
    return [Run(c, seed) for seed in cfg.seeds for c in cfg.conditions]


def pretraining_stages(cfg: StudyConfig, cond: ConditionSpec | Run | None = None) -> tuple[str, ...]:
    """Next-token stages on blended data, in order. CPT belongs to the conditions that insert their
    documents there; without ``cond``, the stages any condition runs."""
    specs = cfg.conditions if cond is None else [cond.spec if isinstance(cond, Run) else cond]
    # an optional stage runs where a condition inserts its documents there (CPT)
    return tuple(s for s in LM_STAGES if not STAGE_KINDS[s].optional or any(c.insertion == s for c in specs))


def stage_tokens(cfg: StudyConfig) -> dict[str, int]:
    """Tokens each pretraining stage consumes, for the stages any condition runs."""
    return {stage: cfg.resolve_stage(stage).tokens for stage in pretraining_stages(cfg)}


class StudyLayout:
    """Where a study's products live."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.root = Path(cfg.output_dir)
        self.data = StudyData(self.root / "data", cfg.data, cfg.stage_data())
        self._runs = {r.name: r for r in study_runs(cfg)}

    def run(self, name: str) -> Run:
        return self._runs[name]

    def stage_owner(self, run: str, stage: str) -> str:
        """The run that trains ``stage`` for ``run``: the first one listed with the same lineage (seed
        included), so identical pretraining runs happen once (post-training is never shared)."""
        if stage in POSTTRAIN_STAGES:
            return run
        me = self._runs[run]
        key = me.lineage(pretraining_stages(self.cfg, me), stage)
        return next(r.name for r in self._runs.values()
                    if stage in pretraining_stages(self.cfg, r) and r.lineage(pretraining_stages(self.cfg, r), stage) == key)

    def stage_dir(self, run: str, stage: str) -> Path:
        return self.root / "models" / self.stage_owner(run, stage) / stage

    def eval_dir(self, run: str, dir_name: str) -> Path:
        return self.root / "evals" / run / dir_name

    def tamper_dir(self, run: str, tamper: str, seed: int) -> Path:
        return self.root / "models" / run / "tamper" / tamper / f"seed{seed}"

    def marker(self, step: str) -> Path:
        return self.root / "steps" / f"{step}.done"


@dataclass(frozen=True)
class PlanStep:
    name: str
    kind: str
    """A key of `STEP_KINDS`."""
    after: tuple[str, ...] = ()
    """Steps it waits for."""
    condition: Optional[str] = None
    run: Optional[str] = None
    """The run (condition, or condition and seed) it trains or evaluates."""
    seed: Optional[int] = None
    stage: Optional[str] = None
    """train: the stage it trains; eval / capabilities: the stage whose checkpoint it scores."""
    scoring: Optional[str] = None
    when: Optional[str] = None
    """eval / capabilities / personality / em_probe: the results table's stage (base / post / tamper)."""
    tamper: Optional[str] = None
    """Tampering steps (stage ``tamper``): the tampering run's name (`TamperPlan.name`) ..."""
    tamper_seed: Optional[int] = None
    """... and its seed."""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)

    @property
    def kind_info(self) -> StepKind:
        return STEP_KINDS[self.kind]

    @property
    def role(self) -> Role:
        return self.kind_info.role

    @property
    def optional(self) -> bool:
        return self.kind_info.optional


@dataclass
class StudyPlan:
    cfg: StudyConfig
    layout: StudyLayout
    steps: list[PlanStep]

    def __post_init__(self) -> None:
        self._by_name = {s.name: s for s in self.steps}
        assert len(self._by_name) == len(self.steps), "step names must be unique"
        for step in self.steps:
            unknown = [d for d in step.after if d not in self._by_name]
            assert not unknown, f"{step.name} depends on unknown steps {unknown}"

    def __iter__(self) -> Iterator[PlanStep]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def step(self, name: str) -> PlanStep:
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(f"{name!r}: not a step of this study; steps: {', '.join(self.names)}") from None

    def graph(self) -> dict[str, list[str]]:
        """Each step (in run order) -> the steps it waits for."""
        return {s.name: list(s.after) for s in self.steps}

    def selects(self, step: PlanStep, only: list[str]) -> bool:
        """Whether ``--only`` picks ``step``: a step's name picks that step alone (a Slurm job runs
        ``x.eval_base`` without ``x.eval_base_cloze``); a run, condition or kind name picks its steps
        (``align_upsampled``, ``data.filter``, ``eval``); anything else is a prefix (``data.``)."""
        fields = (step.run, step.condition, step.kind, step.role)
        return any(step.name == p if p in self._by_name else (p in fields or step.name.startswith(p)) for p in only)

    def resolved(self, step: PlanStep):
        """The `ResolvedStage` a training step runs (a tampering run resolves as SFT continued)."""
        return self.cfg.resolve_tamper(step.tamper) if step.tamper else self.cfg.resolve_stage(step.stage)

    def checkpoint_of(self, step: PlanStep) -> Path:
        """The stage directory whose checkpoint an evaluation step scores (a tampering run: its final one)."""
        if step.tamper:
            return self.layout.tamper_dir(step.run, step.tamper, step.tamper_seed)
        return self.layout.stage_dir(step.run, step.stage)

    def train_config(self, step: PlanStep):
        """The `StageConfig` of a training step."""
        if not step.tamper:
            return self.stage_config(step.run, step.stage)
        from megatron_alignpt.train.config import StageConfig

        cfg, layout = self.cfg, self.layout
        resolved = self.resolved(step)
        return StageConfig(
            name=step.name, kind="sft", model=resolved.model, optimizer=resolved.plan.optimizer,
            schedule=replace(resolved.schedule, seed=step.tamper_seed), tokenizer=layout.data.tokenizer,
            data=Path(resolved.plan.data), output_dir=Path(step.outputs[0]), parallel=resolved.parallel,
            init_from=layout.stage_dir(step.run, "dpo"), sft=cfg.sft_options, dpo=cfg.dpo_options,
        )

    def stage_config(self, run: str, stage: str):
        """The `StageConfig` of ``run``'s ``stage``: its resolved model, layout and schedule, its data (the
        run's blend for pretraining stages), and the checkpoint it starts from."""
        from megatron_alignpt.train.config import StageConfig

        cfg, layout = self.cfg, self.layout
        me = layout.run(run)
        resolved = cfg.resolve_stage(stage)
        previous = previous_stage(pretraining_stages(cfg, me) + POSTTRAIN_STAGES, stage)
        data = layout.data.manifest(me.condition, stage) if resolved.kind.is_lm else resolved.plan.data
        schedule = resolved.schedule if me.seed is None else replace(resolved.schedule, seed=me.seed)
        return StageConfig(
            name=f"{run}.{stage}",
            kind="pretrain" if resolved.kind.is_lm else stage,  # midtrain and CPT train as pretraining from init_from
            model=resolved.model,
            optimizer=resolved.plan.optimizer,
            schedule=schedule,
            tokenizer=layout.data.tokenizer,
            data=Path(data),
            output_dir=layout.stage_dir(run, stage),
            parallel=resolved.parallel,
            init_from=layout.stage_dir(run, previous) if previous else None,
            sft=cfg.sft_options,
            dpo=cfg.dpo_options,
        )

    def eval_config(self, step: PlanStep):
        """The `EvalConfig` of an evaluation step: the study's eval settings for its scoring, its output
        directory, and the labels every result row carries."""
        from megatron_alignpt.eval.config import EvalConfig

        ev, generate = self.cfg.eval, step.scoring == "generate"
        return EvalConfig(
            data=str(self.cfg.data.eval_suite), out_dir=Path(step.outputs[0]), formats=ev.formats,
            system_prompts=ev.generate_system_prompts if generate else ev.system_prompts, batch_size=ev.batch_size,
            labels={**self.run_labels(step.run), "run": step.run, "stage": step.when, "checkpoint_stage": step.stage,
                    "scoring": step.scoring},
            scoring=step.scoring, max_new_tokens=ev.generate_max_new_tokens if generate else None,
        )

    def tamper_eval_config(self, step: PlanStep, iteration: int, tokens: int):
        """The `EvalConfig` of one tampering checkpoint: rows labelled with the run, seed and tokens seen."""
        from megatron_alignpt.eval.config import EvalConfig

        base = self.eval_config(step)
        return replace(base, out_dir=Path(step.outputs[0]) / f"tokens_{tokens:015d}",
                       labels={**base.labels, "tamper": step.tamper, "tamper_seed": step.tamper_seed,
                               "tamper_tokens": tokens, "tamper_iteration": iteration})

    def personality_config(self, step: PlanStep):
        from megatron_alignpt.eval.personality import PersonalityConfig

        plan = self.cfg.eval.personality
        return PersonalityConfig(
            data=plan.data, out_dir=Path(step.outputs[0]), batch_size=self.cfg.eval.batch_size,
            syntaxes=plan.base_syntaxes if step.when == "base" else plan.post_syntaxes,
            max_items_per_trait=plan.max_items_per_trait,
            labels={**self.run_labels(step.run), "run": step.run, "stage": step.when, "checkpoint_stage": step.stage})

    def em_probe_config(self, step: PlanStep):
        from megatron_alignpt.eval.em_probe import EMProbeConfig

        plan = self.cfg.eval.em_probe
        labels = {**self.run_labels(step.run), "run": step.run, "stage": step.when, "checkpoint_stage": step.stage}
        if step.tamper:  # it scores the run's final checkpoint
            labels |= {"tamper": step.tamper, "tamper_seed": step.tamper_seed, "tamper_tokens": self.resolved(step).tokens}
        return EMProbeConfig(
            out_dir=Path(step.outputs[0]), questions=plan.questions, samples_per_question=plan.samples_per_question,
            temperature=plan.temperature, max_new_tokens=plan.max_new_tokens, system_prompt=plan.system_prompt,
            batch_size=self.cfg.eval.batch_size, judge=plan.judge, seed=labels["seed"] or 0, labels=labels)

    def run_labels(self, run: str) -> dict:
        """What every result row of a run is labelled with: its condition and the seed its stages trained with."""
        me = self.layout.run(run)
        return {"condition": me.condition, "seed": me.seed if me.seed is not None else self.cfg.pretrain.schedule.seed}

    # ---- showing the plan
    def to_dict(self) -> dict:
        return {"study": self.cfg.name, "output_dir": str(self.layout.root),
                "kinds": {k: asdict(v) for k, v in STEP_KINDS.items()},
                "steps": [asdict(s) for s in self.steps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def graph_text(self) -> str:
        """The dependency graph as text: one line per step in run order, indented by its depth (the
        longest chain of steps before it), with what it waits for unless that is the line above."""
        depth: dict[str, int] = {}
        lines, above = [], None
        for step in self.steps:
            depth[step.name] = 1 + max((depth[d] for d in step.after), default=-1)
            label = "  " * depth[step.name] + step.name
            waits = "" if list(step.after) == ([above] if above else []) else \
                ("  <- " + ", ".join(step.after) if len(step.after) <= 3 else f"  <- {len(step.after)} steps")
            lines.append(f"{label}{waits}")
            above = step.name
        return "\n".join(lines)

    def describe(self) -> str:
        """A table of the steps (kind, run, stage, resources), then the graph."""
        rows = [("step", "kind", "run", "stage", "needs")]
        for s in self.steps:
            r = s.resources
            needs = f"{r.nodes} node(s)" + (f", {r.gpus} GPU(s)" if r.gpus else f", {r.tasks} task(s)") + (f", {r.time}" if r.time else "")
            if r.executor:
                needs = f"datatrove {r.describe_data()}"
            rows.append((s.name, s.kind, s.run or "-", s.stage or "-", needs))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        table = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
        return "\n".join(table) + f"\n\n{len(self.steps)} steps; dependency graph:\n" + self.graph_text()


def build_plan(cfg: StudyConfig) -> StudyPlan:
    """Every step of the study, in the order a local run takes them."""
    layout = StudyLayout(cfg)
    data, root = layout.data, layout.root
    steps: list[PlanStep] = []
    data_io = {
        "data.filter": ([str(p) for p in data.corpora().values()], [str(data.filtered_dir(n)) for n in data.corpora()]),
        "data.tokenizer": ([str(cfg.data.tokenizer or cfg.data.corpus)], [str(data.tokenizer)]),
        "data.synthetic": ([str(cfg.data.eval_suite)], [str(data.synthetic_file(d)) for d in ("aligned", "misaligned")]),
        "data.tokenize": ([str(data.tokenizer)], [str(data.root / "indexed")]),
        "data.manifests": ([str(data.root / "indexed")], [str(data.root / "manifests")]),
    }
    from megatron_alignpt.study.data_steps import data_step_resources

    datatrove = data_step_resources(cfg.data, sum(stage_tokens(cfg).values()), cfg.stage_data())
    for kind in DATA_KINDS:
        inputs, outputs = data_io[kind]
        steps.append(PlanStep(kind, kind, tuple(steps[-1].name for _ in steps[-1:]), inputs=tuple(inputs),
                              outputs=tuple(outputs), resources=data_resources(kind, datatrove)))
    last_data = steps[-1].name
    evals: list[str] = []
    for run in study_runs(cfg):
        common = dict(condition=run.condition, run=run.name, seed=run.seed)

        def stage_step(stage: str) -> str:
            return f"{layout.stage_owner(run.name, stage)}.{stage}"

        def evaluation(name: str, kind: str, stage: str, when: str, scoring: Optional[str], out: Path) -> None:
            inputs = (str(layout.stage_dir(run.name, stage)),) + ((str(cfg.data.eval_suite),) if kind == "eval" else ())
            inputs += {"personality": (str(cfg.eval.personality.data),) if cfg.eval.personality else (),
                       "em_probe": (str(cfg.eval.em_probe.questions),) if cfg.eval.em_probe else ()}.get(kind, ())
            gpus = cfg.parallel.tensor_parallel
            steps.append(PlanStep(f"{run.name}.{name}", kind, (stage_step(stage),), stage=stage, when=when,
                                  scoring=scoring, inputs=inputs, outputs=(str(out),), resources=Resources(gpus=gpus), **common))
            evals.append(steps[-1].name)

        def train(stage: str) -> None:
            previous = previous_stage(pretraining_stages(cfg, run) + POSTTRAIN_STAGES, stage)
            resolved = cfg.resolve_stage(stage)
            inputs = (str(data.manifest(run.condition, stage)) if resolved.kind.is_lm else str(resolved.plan.data),)
            inputs += (str(layout.stage_dir(run.name, previous)),) if previous else ()
            steps.append(PlanStep(f"{run.name}.{stage}", "train", (stage_step(previous),) if previous else (last_data,),
                                  stage=stage, inputs=inputs, outputs=(str(layout.stage_dir(run.name, stage)),),
                                  resources=Resources(gpus=resolved.parallel.model_parallel_size), **common))

        for stage in pretraining_stages(cfg, run):
            if layout.stage_owner(run.name, stage) == run.name:  # else trained by an earlier run of the same lineage
                train(stage)
        for scoring in cfg.eval.base_scorings:
            p = EvalPass("base", scoring)
            evaluation(p.suffix, "eval", pretraining_stages(cfg, run)[-1], "base", scoring, layout.eval_dir(run.name, p.dir_name))
        if cfg.eval.personality is not None:
            evaluation("personality_base", "personality", pretraining_stages(cfg, run)[-1], "base", None,
                       layout.eval_dir(run.name, "base_personality"))
        if not cfg.posttrain:
            continue
        for stage in POSTTRAIN_STAGES:
            train(stage)
        passes = [EvalPass("post", s) for s in cfg.eval.post_scorings] + ([EvalPass("post", "generate")] if cfg.eval.post_generate else [])
        for p in passes:
            evaluation(p.suffix, "eval", "dpo", "post", p.scoring, layout.eval_dir(run.name, p.dir_name))
        if cfg.eval.personality is not None:
            evaluation("personality_post", "personality", "dpo", "post", None, layout.eval_dir(run.name, "post_personality"))
        if cfg.eval.capability_tasks:
            evaluation("eval_capabilities", "capabilities", "dpo", "post", None, layout.eval_dir(run.name, CAPABILITIES_DIR))
        if cfg.eval.em_probe is not None:
            evaluation("em_probe_post", "em_probe", "dpo", "post", None, layout.eval_dir(run.name, "post_em_probe"))
        for t in cfg.tampering:
            if t.conditions and run.condition not in t.conditions:
                continue
            for seed in t.seeds:
                label = f"tamper_{t.name}_seed{seed}"
                tamper = dict(tamper=t.name, tamper_seed=seed)
                out = layout.tamper_dir(run.name, t.name, seed)
                resolved = cfg.resolve_tamper(t.name)
                steps.append(PlanStep(f"{run.name}.{label}", "train", (stage_step("dpo"),), stage="tamper",
                                      inputs=(str(t.data), str(layout.stage_dir(run.name, "dpo"))), outputs=(str(out),),
                                      resources=Resources(gpus=resolved.parallel.model_parallel_size), **tamper, **common))
                trained = steps[-1].name
                # every kept checkpoint of the run is scored, each scoring as in the post-trained evaluation
                for p in [EvalPass("post", s) for s in t.scorings] or passes:
                    steps.append(PlanStep(f"{run.name}.{label}.eval_{p.scoring}", "eval", (trained,), stage="tamper",
                                          when="tamper", scoring=p.scoring, inputs=(str(out), str(cfg.data.eval_suite)),
                                          outputs=(str(layout.eval_dir(run.name, f"{label}_{p.scoring}")),),
                                          resources=Resources(gpus=cfg.parallel.tensor_parallel), **tamper, **common))
                    evals.append(steps[-1].name)
                if t.em and cfg.eval.em_probe is not None:
                    steps.append(PlanStep(f"{run.name}.{label}.em_probe", "em_probe", (trained,), stage="tamper",
                                          when="tamper", inputs=(str(out),), outputs=(str(layout.eval_dir(run.name, f"{label}_em_probe")),),
                                          resources=Resources(gpus=cfg.parallel.tensor_parallel), **tamper, **common))
                    evals.append(steps[-1].name)
    steps.append(PlanStep("results", "results", tuple(evals), inputs=(str(root / "evals"),), outputs=(str(root / "results"),)))
    steps.append(PlanStep("report", "report", ("results",), inputs=(str(root / "results"),), outputs=(str(root / "report.html"),)))
    return StudyPlan(cfg, layout, steps)


def step_graph(cfg: StudyConfig) -> dict[str, list[str]]:
    """Each step of the study (in run order) -> the steps it waits for."""
    return build_plan(cfg).graph()
