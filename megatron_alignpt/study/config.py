"""A study: data conditions x stages (pretrain -> midtrain -> SFT -> DPO) x evaluations."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Optional

from megatron_alignpt.config_base import ConfigError, check_fields, require
from megatron_alignpt.eval.em_probe import DEFAULT_QUESTIONS as EM_QUESTIONS
from megatron_alignpt.eval.judges import JudgeConfig
from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.posttrain.config import DPOConfig, SFTConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig
from megatron_alignpt.train.stages import STAGES, StageKind, check_stage_layout, stage_kind

Direction = Literal["aligned", "misaligned"]
Insertion = Literal["e2e", "mid", "cpt"]


@dataclass
class ConditionSpec:
    """One data condition: a base corpus, optionally with upsampled discourse documents."""

    name: str
    base: Literal["unfiltered", "filtered"] = "unfiltered"
    synthetic: Optional[Direction] = None
    """Which synthetic documents to upsample (None: natural data only)."""
    insertion: Insertion = "e2e"
    """e2e: pretraining and midtraining; mid: midtraining only (the final ~10%); cpt: only a continued
    pretraining stage after midtraining (needs the study's ``cpt`` stage)."""

    def __post_init__(self) -> None:
        # The name is a directory name (models/, evals/) and part of step and Slurm job names; nothing
        # parses it back, so '.', '@' and the like are fine.
        require(bool(self.name) and not self.name.startswith(".") and not set("/%") & set(self.name)
                and not any(c.isspace() for c in self.name), "conditions[].name",
                f"must be non-empty, not start with '.', without '/', '%' or whitespace, got {self.name!r}")
        require(self.base in ("unfiltered", "filtered"), f"conditions[{self.name}].base", "use unfiltered or filtered")
        require(self.synthetic in (None, "aligned", "misaligned"), f"conditions[{self.name}].synthetic", "use aligned, misaligned or null")
        require(self.insertion in ("e2e", "mid", "cpt"), f"conditions[{self.name}].insertion", "use e2e, mid or cpt")

    def inserts_synthetic(self, stage: str) -> bool:
        """Whether this condition's blend for ``stage`` carries the synthetic documents."""
        if self.synthetic is None:
            return False
        return {"e2e": ("pretrain", "midtrain"), "mid": ("midtrain",), "cpt": ("cpt",)}[self.insertion].count(stage) > 0

    def lineage(self, stages: tuple[str, ...], stage: str) -> tuple:
        """What decides the weights after ``stage``: the base corpus and, for every stage up to it,
        which synthetic documents (if any) its blend carried. Conditions with equal lineage share
        that checkpoint (a Mid condition's pretraining is its base condition's pretraining)."""
        upto = stages[: stages.index(stage) + 1]
        return (self.base,) + tuple((s, self.synthetic if self.inserts_synthetic(s) else None) for s in upto)


PAPER_TOKENS_PER_DOCUMENT = 11_000_000_000 / 14_900_000
"""The paper's final run: ~11B tokens in ~14.9M synthetic documents (SPEC section 4), ~738 per document."""
PAPER_USD_PER_BILLION_TOKENS = 500.0
"""The paper's generation cost: ~$500 per 1B tokens (SPEC section 6)."""


@dataclass
class SyntheticGeneratorPlan:
    """Who writes the discourse documents: the offline template generator (tests, the demo) or an LLM
    behind any OpenAI-compatible chat-completions endpoint (vLLM, hosted APIs), as the paper did. The API
    key is read from the environment variable named here, never from the config."""

    kind: Literal["template", "openai"] = "template"
    base_url: str = ""
    """e.g. http://vllm-host:8000/v1"""
    model: str = ""
    temperature: float = 0.7
    max_tokens: int = 2048
    concurrency: int = 8
    """Requests in flight at once."""
    api_key_env: str = "OPENAI_API_KEY"
    """"" sends no key (a local server without authentication)."""
    max_retries: int = 6
    timeout: float = 300.0
    """Seconds per request."""
    price_per_1k_prompt: float = 0.0
    price_per_1k_completion: float = 0.0
    estimate_tokens_per_document: float = PAPER_TOKENS_PER_DOCUMENT
    """For the compute estimate (`study run --dry-run`): average document length in tokens."""
    estimate_usd_per_billion_tokens: float = PAPER_USD_PER_BILLION_TOKENS
    """For the compute estimate: API price per 1B document tokens written."""

    def __post_init__(self) -> None:
        require(self.kind in ("template", "openai"), "data.synthetic_generator.kind", "use template or openai")
        require(self.estimate_tokens_per_document > 0, "data.synthetic_generator.estimate_tokens_per_document", "must be > 0")
        require(self.estimate_usd_per_billion_tokens >= 0, "data.synthetic_generator.estimate_usd_per_billion_tokens", "must be >= 0")
        if self.kind == "openai":
            require(bool(self.base_url), "data.synthetic_generator.base_url", "set the endpoint, e.g. http://host:8000/v1")
            require(bool(self.model), "data.synthetic_generator.model", "set the model name the endpoint serves")
        require(self.concurrency >= 1, "data.synthetic_generator.concurrency", "must be >= 1")
        require(0 <= self.temperature <= 2, "data.synthetic_generator.temperature", "must be in [0, 2]")
        require(self.max_retries >= 0, "data.synthetic_generator.max_retries", "must be >= 0")
        require(self.timeout > 0, "data.synthetic_generator.timeout", "must be > 0")

    def build(self, cache_dir: Path):
        """The LLM document writer this plan describes (``kind: openai``), caching every completion in ``cache_dir``."""
        from data_prep.synthetic.llm_generator import OpenAICompatibleGenerator

        require(self.kind == "openai", "data.synthetic_generator.kind", "only the openai kind is built here; "
                "the template generator needs no client")
        return OpenAICompatibleGenerator(
            self.base_url, self.model, temperature=self.temperature, max_tokens=self.max_tokens,
            concurrency=self.concurrency, max_retries=self.max_retries, cache_dir=cache_dir,
            api_key_env=self.api_key_env or None, price_per_1k_prompt=self.price_per_1k_prompt,
            price_per_1k_completion=self.price_per_1k_completion, timeout=self.timeout,
        )


@dataclass
class DataPlan:
    corpus: Path
    """Base pretraining corpus: a jsonl/jsonl.gz/jsonl.zst/parquet file or directory (e.g. DCLM shards)."""
    eval_suite: str
    """Eval questions: a file/dir in the HF or raw schema, or an HF dataset name."""
    tokenizer: Optional[Path] = None
    """An existing tokenizer.json (e.g. GPT-NeoX's); None trains a BPE on the corpus."""
    tokenizer_vocab_size: int = 4096
    synthetic_docs_per_item: int = 4
    """Documents per articles-split question and direction."""
    synthetic_seed: int = 0
    synthetic_generator: SyntheticGeneratorPlan = field(default_factory=SyntheticGeneratorPlan)
    resample_seed: int = 0
    """Seed of the resampling that refills the filtered corpus to the unfiltered token budget."""
    max_synthetic_repetitions: float = 50.0
    """Cap on how many times a stage may repeat the synthetic documents (epochs over them); a dose that
    needs more is refused when manifests are written, naming the stage and the tokens missing."""
    executor: str = "local"
    """Where the filter, resample and tokenize steps run their datatrove tasks: ``local`` (processes on the
    machine running the step), ``slurm`` (array jobs; needs ``slurm_partition``) or ``ray``."""
    tasks: int = 0
    """Tasks per data step, each taking whole input files; 0: one per input file."""
    workers: int = 0
    """Tasks at once: local processes (0: one per CPU core), Slurm array jobs or Ray tasks in flight (0: no cap)."""
    slurm_partition: str = ""
    """Partition of the data steps' Slurm jobs (``executor: slurm``)."""

    def __post_init__(self) -> None:
        from data_prep.pipeline.runner import EXECUTORS

        require(self.executor in EXECUTORS, "data.executor", f"must be one of {list(EXECUTORS)}, got {self.executor!r}")
        require(self.tasks >= 0, "data.tasks", "must be >= 0 (0: one task per input file)")
        require(self.workers >= 0, "data.workers", "must be >= 0 (0: one per CPU core locally, no cap on Slurm/Ray)")
        require(self.executor != "slurm" or bool(self.slurm_partition), "data.slurm_partition",
                "the slurm data executor needs a partition")
        require(self.tokenizer_vocab_size >= 300, "data.tokenizer_vocab_size", "must be >= 300 (byte alphabet + merges)")
        require(self.synthetic_docs_per_item > 0, "data.synthetic_docs_per_item", "must be > 0")
        require(self.max_synthetic_repetitions >= 1, "data.max_synthetic_repetitions", "must be >= 1 (1 = no repetition)")


@dataclass
class StagePlan:
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    seq_length: int = 0
    """0 keeps the model's seq_length (midtraining may raise it up to max_position_embeddings)."""
    data: Optional[Path] = None
    """SFT / DPO data file; unused by pretraining stages."""
    corpus: Optional[Path] = None
    """Pretraining stages (midtrain, cpt): the natural data of this stage's blend; None reuses the previous
    stage's corpus (CPT -> midtraining -> ``data.corpus``). Pretraining itself reads ``data.corpus``."""
    dose: float = 0.01
    """Pretraining stages: share of this stage's tokens drawn from the synthetic documents, for the conditions
    that insert them here (the paper: ~1%)."""
    parallel: Optional[ParallelConfig] = None
    """This stage's layout; None uses the study's ``parallel`` (e.g. DPO needs pipeline_parallel=1)."""


BASE_MODEL_SCORINGS = ("logprob", "cloze")
"""Scorings of a checkpoint by its next-token probabilities; `eval.config.SCORING_METHODS` describes them."""


@dataclass
class TamperPlan:
    """Further fine-tuning of every post-trained (DPO) model of the listed conditions: continued SFT on ``data``
    (any SFT chat format) for ``tokens`` tokens, once per seed, evaluated every ``eval_every_tokens``. Benign
    tampering and narrow emergent-misalignment fine-tunes are both just data; ``em`` marks the latter, whose
    final checkpoints the EM probe scores (with ``eval.em_probe``). Hyperparameters are the study's SFT ones
    (the paper's choice) unless ``optimizer`` is given; batch and sequence length are SFT's."""

    name: str
    data: Path
    tokens: int
    """Tokens of tampering (iterations x global batch x sequence length; padded positions count)."""
    eval_every_tokens: int
    """A checkpoint is kept and evaluated every this many tokens (rounded to whole iterations)."""
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    conditions: list[str] = field(default_factory=list)
    """Conditions whose post-trained models are tampered with; empty: all of them."""
    em: bool = False
    scorings: list[str] = field(default_factory=list)
    """How each checkpoint is scored (logprob, cloze, generate); empty: as the post-trained models are."""
    optimizer: Optional[OptimizerConfig] = None

    def __post_init__(self) -> None:
        where = f"tampering[{self.name}]"
        allowed = BASE_MODEL_SCORINGS + ("generate",)
        require(all(s in allowed for s in self.scorings) and len(set(self.scorings)) == len(self.scorings),
                f"{where}.scorings", f"list distinct scorings from {list(allowed)}, got {self.scorings}")
        require(bool(self.name) and not set("/%. @") & set(self.name), f"{where}.name",
                "must be non-empty, without '/', '%', '.', '@' or spaces (it names directories and steps)")
        require(self.tokens > 0, f"{where}.tokens", "must be > 0")
        require(0 < self.eval_every_tokens <= self.tokens, f"{where}.eval_every_tokens", "must be in (0, tokens]")
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds) and all(s >= 0 for s in self.seeds),
                f"{where}.seeds", f"list distinct non-negative integers, got {self.seeds}")


@dataclass
class EMProbePlan:
    """The free-form emergent-misalignment probe (`eval.em_probe`): scored on every post-trained model and on
    the final checkpoint of every ``em`` tampering run."""

    questions: Path = EM_QUESTIONS
    samples_per_question: int = 8
    temperature: float = 1.0
    max_new_tokens: int = 256
    system_prompt: str = ""
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    def __post_init__(self) -> None:
        require(self.samples_per_question > 0, "eval.em_probe.samples_per_question", "must be > 0")
        require(self.max_new_tokens > 0, "eval.em_probe.max_new_tokens", "must be > 0")
        require(self.temperature > 0 or self.samples_per_question == 1, "eval.em_probe.samples_per_question",
                "greedy decoding (temperature 0) gives identical samples; use 1 sample or a temperature > 0")


@dataclass
class PersonalityPlan:
    """TRAIT-style personality questions (`eval.personality`), scored on the base and post-trained models."""

    data: str
    """A file or directory in TRAIT's schema, or an HF dataset name (``mirlab/TRAIT``)."""
    base_syntaxes: str = "base"
    """Syntaxes for base models (the paper: six)."""
    post_syntaxes: str = "chat"
    """Syntaxes for post-trained models, in the chat template (the paper: three)."""
    max_items_per_trait: Optional[int] = None

    def __post_init__(self) -> None:
        from megatron_alignpt.eval.personality import parse_syntaxes

        require(bool(str(self.data).strip()), "eval.personality.data", "give a question file, directory or HF dataset name")
        for name in ("base_syntaxes", "post_syntaxes"):
            try:
                parse_syntaxes(getattr(self, name))
            except ValueError as err:
                raise ConfigError(f"eval.personality.{name}: {err}") from None


@dataclass
class EvalPlan:
    formats: str = "default"
    system_prompts: str = "none"
    batch_size: int = 32
    base_scorings: list[str] = field(default_factory=lambda: ["logprob"])
    """How the base (pretrained) checkpoint is scored: ``logprob`` (answer letters; step ``<run>.eval_base``)
    and/or ``cloze`` (option texts; step ``<run>.eval_base_cloze``), for models too small to answer by letter."""
    post_scorings: list[str] = field(default_factory=lambda: ["logprob"])
    """The same for the post-trained checkpoint (``eval_post``, ``eval_post_cloze``); generated replies are ``post_generate``."""
    post_generate: bool = True
    """Also score post-trained (chat) models as the paper does: greedy reply, answer letter parsed,
    with the non-match and normalised rates (step ``<condition>.eval_post_generate``)."""
    generate_system_prompts: str = "none"
    """System prompts for the generate pass (it costs a decode per item, so it may use fewer)."""
    generate_max_new_tokens: int = 32
    capability_tasks: str = ""
    """lm-eval tasks scored after DPO (step ``<condition>.eval_capabilities``): "paper" for the paper's
    benchmarks and shots, a comma list of task names, or "" for none. Tasks whose data cannot be loaded
    (e.g. offline) are skipped and recorded as such."""
    em_probe: Optional[EMProbePlan] = None
    """Free-form emergent-misalignment probe after DPO and after ``em`` tampering runs; None: not run."""
    personality: Optional[PersonalityPlan] = None
    """TRAIT-style personality questions on base and post-trained models; None: not run."""

    def __post_init__(self) -> None:
        require(self.batch_size > 0, "eval.batch_size", "must be > 0")
        for name in ("base_scorings", "post_scorings"):
            values = list(getattr(self, name))
            require(all(v in BASE_MODEL_SCORINGS for v in values) and len(set(values)) == len(values), f"eval.{name}",
                    f"list distinct scorings from {list(BASE_MODEL_SCORINGS)} (generated replies: eval.post_generate), got {values}")
        require(bool(self.base_scorings), "eval.base_scorings", "score the base checkpoint at least one way")
        require(self.generate_max_new_tokens > 0, "eval.generate_max_new_tokens", "must be > 0")


@dataclass(frozen=True)
class ResolvedStage:
    """One training stage of a study as it runs: `StudyConfig.resolve_stage`."""

    name: str
    kind: StageKind
    plan: StagePlan
    model: ModelConfig
    """The study's model at this stage's sequence length (positions sized for the longest stage)."""
    parallel: ParallelConfig
    schedule: ScheduleConfig

    @property
    def seq_length(self) -> int:
        return self.model.seq_length

    @property
    def tokens_per_iteration(self) -> int:
        return self.schedule.global_batch_size * self.seq_length

    @property
    def tokens(self) -> int:
        """Tokens one run of the stage consumes: iterations x global batch x sequence length."""
        return self.schedule.train_iters * self.tokens_per_iteration


@dataclass
class StudyConfig:
    MOVED_FIELDS: ClassVar[dict[str, str]] = {
        "data.pretrain_dose": "pretrain.dose", "data.midtrain_dose": "midtrain.dose", "data.cpt_dose": "cpt.dose",
        "data.midtrain_corpus": "midtrain.corpus", "data.cpt_corpus": "cpt.corpus",
    }
    """Where the per-stage data settings went; configs, ``--set`` keys and study.json files written before still load."""

    name: str
    output_dir: Path
    data: DataPlan
    conditions: list[ConditionSpec]
    model: ModelConfig
    pretrain: StagePlan
    midtrain: StagePlan
    sft: StagePlan
    dpo: StagePlan
    cpt: Optional[StagePlan] = None
    """Continued pretraining after midtraining, run by the conditions with insertion "cpt" (their
    post-training starts from it); required when any condition uses it."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    sft_options: SFTConfig = field(default_factory=SFTConfig)
    dpo_options: DPOConfig = field(default_factory=DPOConfig)
    eval: EvalPlan = field(default_factory=EvalPlan)
    seeds: list[int] = field(default_factory=list)
    """Training seeds: each condition is trained once per seed, as run ``<condition>@seed<k>`` whose stages all
    use seed k (initialisation and data order). Empty: one run per condition, named after it, with each
    stage's own ``schedule.seed``. The data (corpora, synthetic documents, blends) is the same for every seed."""
    posttrain: bool = True
    """Run SFT and DPO and their evaluations; False ends each run at its base (pretrained) model."""
    tampering: list[TamperPlan] = field(default_factory=list)
    """Tampering / emergent-misalignment fine-tunes of the post-trained models (needs ``posttrain``)."""

    def __post_init__(self) -> None:
        check_fields(self)  # types, finiteness and integrality of every field, nested ones included
        require(len(set(self.seeds)) == len(self.seeds) and all(s >= 0 for s in self.seeds), "seeds",
                f"list distinct non-negative integers, got {self.seeds}")
        require(bool(self.conditions), "conditions", "list at least one data condition")
        names = [c.name for c in self.conditions]
        require(len(set(names)) == len(names), "conditions", f"names must be unique, got {names}")
        require(self.sft.data is not None, "sft.data", "set the SFT chat data file")
        require(self.dpo.data is not None, "dpo.data", "set the DPO preference data file")
        for stage in self.stage_names():
            if stage_kind(stage).is_lm:
                require(0 <= getattr(self, stage).dose < 1, f"{stage}.dose", "must be in [0, 1)")
                require(stage != "pretrain" or getattr(self, stage).corpus is None, "pretrain.corpus",
                        "pretraining reads data.corpus (the corpus filtered and tokenized first); set that instead")
        needs_synthetic = any(c.synthetic for c in self.conditions)
        require(
            not needs_synthetic or self.midtrain.dose > 0,
            "midtrain.dose",
            "conditions with synthetic documents need a dose > 0",
        )
        uses_cpt = [c.name for c in self.conditions if c.insertion == "cpt"]
        require(not uses_cpt or self.cpt is not None, "cpt",
                f"conditions {uses_cpt} insert synthetic data at CPT: add a cpt stage plan")
        require(
            not any(c.synthetic and c.insertion == "cpt" for c in self.conditions) or self.cpt.dose > 0,
            "cpt.dose",
            "conditions inserting synthetic documents at CPT need a dose > 0",
        )
        for stage in self.stage_names():
            length = getattr(self, stage).seq_length or self.model.seq_length
            require(
                length <= self.model.max_positions,
                f"{stage}.seq_length",
                f"{length} exceeds model.max_position_embeddings={self.model.max_positions}; raise the latter",
            )
        names = [t.name for t in self.tampering]
        require(len(set(names)) == len(names), "tampering", f"names must be unique, got {names}")
        require(not self.tampering or self.posttrain, "tampering", "tampering continues the post-trained models; set posttrain")
        known = {c.name for c in self.conditions}
        for t in self.tampering:
            unknown = [c for c in t.conditions if c not in known]
            require(not unknown, f"tampering[{t.name}].conditions", f"not conditions of this study: {unknown}")
        self.check_layouts()

    def stage_names(self) -> tuple[str, ...]:
        """The training stages this study has a plan for, in order (CPT only with a ``cpt`` plan)."""
        return tuple(name for name in STAGES if getattr(self, name) is not None)

    def resolve_stage(self, name: str) -> ResolvedStage:
        """A stage's model (at its sequence length), layout (its own, else the study's) and schedule,
        worked out here only."""
        import dataclasses

        plan: Optional[StagePlan] = getattr(self, stage_kind(name).name)
        if plan is None:
            raise ConfigError(f"{name}: this study has no {name} stage plan")
        model = dataclasses.replace(self.model, seq_length=plan.seq_length or self.model.seq_length,
                                    max_position_embeddings=self.model.max_positions)
        return ResolvedStage(name, stage_kind(name), plan, model, plan.parallel or self.parallel, plan.schedule)

    def stage_data(self) -> dict:
        """Each pretraining stage's natural corpus (None: the previous stage's) and synthetic dose, for `StudyData`."""
        from megatron_alignpt.study.data_steps import StageData

        return {name: StageData(self.data.corpus if name == "pretrain" else getattr(self, name).corpus, getattr(self, name).dose)
                for name in self.stage_names() if stage_kind(name).is_lm}

    def tamper_plan(self, name: str) -> TamperPlan:
        found = [t for t in self.tampering if t.name == name]
        if not found:
            raise ConfigError(f"tampering: this study has no tampering run {name!r}")
        return found[0]

    def resolve_tamper(self, name: str) -> ResolvedStage:
        """A tampering run as a training stage: SFT's model, layout and batch, SFT's optimizer unless the run
        gives one, as many iterations as its tokens need, a checkpoint every ``eval_every_tokens``."""
        import dataclasses
        import math

        tamper, sft = self.tamper_plan(name), self.resolve_stage("sft")
        per_iteration = sft.tokens_per_iteration
        schedule = dataclasses.replace(sft.schedule, train_iters=math.ceil(tamper.tokens / per_iteration),
                                       save_interval=max(1, round(tamper.eval_every_tokens / per_iteration)))
        plan = dataclasses.replace(sft.plan, optimizer=tamper.optimizer or sft.plan.optimizer, schedule=schedule, data=tamper.data)
        return ResolvedStage("tamper", sft.kind, plan, sft.model, sft.parallel, schedule)

    def stage_parallel(self, stage: str) -> ParallelConfig:
        """The layout ``stage`` trains with: its own, else the study's."""
        return self.resolve_stage(stage).parallel

    def check_layouts(self) -> None:
        """Each stage's layout against the model at that stage's length, before anything runs (the world
        size is only known at launch, where the batch rules are checked). Imports no megatron, so a study
        config still loads on a torch-free data node."""
        for name in self.stage_names():
            stage = self.resolve_stage(name)
            where = f"{name}.parallel" if stage.plan.parallel is not None else "parallel"
            try:
                stage.parallel.check_model(stage.model)
                check_stage_layout(name, stage.parallel, where)
            except ConfigError as err:
                raise ConfigError(f"{name}: {err}") from None

    def layouts(self, world_size: Optional[int] = None) -> dict:
        """`train.layout.stage_layout` for every training stage (each with its own sequence length and batch)."""
        from megatron_alignpt.train.layout import stage_layout

        self.check_layouts()
        out = {}
        for name in self.stage_names():
            stage = self.resolve_stage(name)
            try:
                out[name] = stage_layout(stage.model, stage.parallel, stage.schedule, world_size)
            except ConfigError as err:  # name the stage whose plan breaks the layout
                raise ConfigError(f"{name}: {err}") from None
        return out
