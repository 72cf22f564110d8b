"""What a study will cost before it runs: FLOPs, GPU-hours and wall time per training run, and the
API tokens and price of its LLM-written synthetic documents.

    alignpt study run --recipe paper_6p9b --dry-run --world-size 256      # estimate on stderr
    alignpt study submit --recipe paper_6p9b --nodes 32 --dry-run          # the same, at the submitted node counts

Every figure says where it comes from:
- FLOPs per step: `train.telemetry.model_flops_per_step`, the formula the trainer logs MFU with (DPO steps
  count chosen and rejected sequences as the trainer does, plus one forward pass of the frozen reference
  over the same pairs, a third of a training step's FLOPs);
- throughput: a figure measured on that GPU (`MEASURED`, each with its benchmark), or ``--mfu`` given by
  the user against the GPU's dense peak;
- synthetic documents: seed questions x documents per seed x 2 directions, at the paper's average length
  and price per token (`config.SyntheticGeneratorPlan.estimate_*`, SPEC sections 4 and 6).
Not counted: evaluations (forward passes over a few thousand questions, small next to training), data
preparation on CPUs, checkpoint I/O, failed or preempted work, and inter-node communication beyond what
the single-GPU measurement holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

if TYPE_CHECKING:  # the CLI reads this module's GPU table while building its parser: keep it import-light
    from megatron_alignpt.study.config import StudyConfig

DPO_REFERENCE_SHARE = 1 / 3
"""The frozen reference's forward pass over each pair: forward is 1 of the 3 parts of a training step."""
GPT_NEOX_VOCAB = 50_277
"""Tokens of the GPT-NeoX-20B tokenizer (Pythia's, the paper's), used when the recipe's tokenizer file
cannot be read here (a cluster path)."""
RELEASED_ARTICLES_QUESTIONS = 2_671
"""Articles-split questions of the released eval suite (SPEC section 8), used when the recipe's eval
suite cannot be read here."""


@dataclass(frozen=True)
class Throughput:
    """Model TFLOP/s per GPU a stage is assumed to reach, and where that number comes from."""

    gpu: str
    tflops_per_gpu: float
    peak_tflops: float
    source: str

    @property
    def mfu(self) -> float:
        return self.tflops_per_gpu / self.peak_tflops


# Dense (no sparsity) peaks per precision: the MFU denominators the trainer uses (`train.telemetry`).
PEAK_TFLOPS: dict[str, dict[str, float]] = {"h100": {"bf16": 989.0, "fp8": 1979.0, "fp32": 67.0}}
GPU_NAMES = {"h100": "H100 80GB SXM"}
# Training throughput measured with `benchmarks/train_throughput.py` (bf16; a test checks the figure
# against the raw result file named here).
MEASURED: dict[str, Throughput] = {
    "h100": Throughput(
        gpu=GPU_NAMES["h100"], tflops_per_gpu=422.55, peak_tflops=989.0,
        source=("benchmarks/README.md, 'The same shape with Pythia's parallel residual' "
                "(benchmarks/results/h100_train_1p4b_pythia.json): Pythia-1.4B shape, seq 2048, micro-batch 8, "
                "bf16, SDPA attention, one H100 80GB, megatron-core 0.19.2, 2026-11-22"),
    ),
}


def throughput(gpu: str, precision: str, mfu: Optional[float] = None) -> Throughput:
    """The measured figure for ``gpu`` (bf16; also used, as an upper bound on time, for FP8, which was not
    measured), or ``mfu`` x the GPU's peak for the precision when the user gives one."""
    if gpu not in PEAK_TFLOPS:
        raise ValueError(f"--gpu {gpu!r}: no peak figures for it; known: {', '.join(PEAK_TFLOPS)}")
    peak = PEAK_TFLOPS[gpu][precision]
    if mfu is not None:
        if not 0 < mfu <= 1:
            raise ValueError(f"--mfu {mfu}: must be in (0, 1]")
        return Throughput(GPU_NAMES[gpu], mfu * peak, peak, f"--mfu {mfu:g} of the {precision} dense peak {peak:g} TFLOP/s")
    measured = MEASURED.get(gpu)
    if measured is None:
        raise ValueError(f"no measured throughput for {gpu}: pass --mfu")
    if precision == "fp32":
        raise ValueError("no fp32 throughput was measured: pass --mfu to estimate GPU time for an fp32 study")
    if precision == "fp8":  # measured in bf16; FP8 GEMMs only make steps faster
        return Throughput(measured.gpu, measured.tflops_per_gpu, PEAK_TFLOPS[gpu]["fp8"],
                          measured.source + "; measured in bf16 (FP8 was not measured), so FP8 time is an upper bound")
    return measured


@dataclass(frozen=True)
class RunEstimate:
    """One training run of the study (a condition's stage, trained once even where conditions share it)."""

    condition: str
    stage: str
    tokens: int
    flops: float
    gpus: Optional[int]
    gpu_hours: Optional[float]
    wall_hours: Optional[float]
    name: str = ""
    """The plan step's name (several tampering runs train stage ``tamper`` of one run)."""

    @property
    def step(self) -> str:
        return self.name or f"{self.condition}.{self.stage}"


@dataclass(frozen=True)
class SyntheticEstimate:
    generator: str
    seed_questions: int
    seed_source: str
    documents: int
    tokens: float
    usd: Optional[float]
    usd_per_billion: float
    tokens_per_document: float


@dataclass
class StudyEstimate:
    study: str
    runs: list[RunEstimate]
    synthetic: SyntheticEstimate
    throughput: Optional[Throughput]
    vocab_size: int
    vocab_source: str
    notes: list[str] = field(default_factory=list)

    @property
    def flops(self) -> float:
        return sum(r.flops for r in self.runs)

    @property
    def gpu_hours(self) -> Optional[float]:
        hours = [r.gpu_hours for r in self.runs]
        return None if not hours or None in hours else sum(hours)

    @property
    def wall_hours(self) -> Optional[float]:
        hours = [r.wall_hours for r in self.runs]
        return None if not hours or None in hours else sum(hours)


def _vocab(cfg: StudyConfig) -> tuple[int, str]:
    """Padded vocabulary of the study's tokenizer, as the trainer builds the model with it."""
    from megatron_alignpt.model.builder import padded_vocab_size

    tp = cfg.parallel.tensor_parallel
    if cfg.data.tokenizer is None:
        return padded_vocab_size(cfg.data.tokenizer_vocab_size, tp), f"data.tokenizer_vocab_size {cfg.data.tokenizer_vocab_size}"
    path = Path(cfg.data.tokenizer)
    if path.is_file():
        from data_prep.tokenize import load_tokenizer

        size = load_tokenizer(path).get_vocab_size(with_added_tokens=True)
        return padded_vocab_size(size, tp), f"{path} ({size} tokens)"
    return (padded_vocab_size(GPT_NEOX_VOCAB, tp),
            f"{path} is not readable here: assumed GPT-NeoX-20B's {GPT_NEOX_VOCAB} tokens (Pythia's tokenizer)")


def training_runs(cfg: StudyConfig) -> list[tuple[str, str]]:
    """(run, stage) of every training step of the study's plan, in run order; a stage shared by several
    runs (same data lineage) is trained once, by the run listed first."""
    from megatron_alignpt.study.plan import build_plan

    return [(step.run, step.stage) for step in build_plan(cfg) if step.kind == "train"]


def run_flops(cfg: StudyConfig, stage, vocab_size: int) -> tuple[int, float]:
    """(tokens, model FLOPs) of one run of ``stage`` (a name or a `ResolvedStage`): the trainer's FLOPs per
    step x its steps."""
    import dataclasses

    from megatron_alignpt.train.telemetry import model_flops_per_step

    resolved = cfg.resolve_stage(stage) if isinstance(stage, str) else stage
    seq, schedule = resolved.seq_length, resolved.schedule
    model = dataclasses.replace(cfg.model, seq_length=seq)
    dpo = resolved.kind.objective == "dpo"
    sequences = schedule.global_batch_size * (2 if dpo else 1)  # DPO: chosen + rejected
    flops = model_flops_per_step(model, vocab_size, sequences, seq) * schedule.train_iters
    if dpo:
        flops *= 1 + DPO_REFERENCE_SHARE
    return schedule.train_iters * sequences * seq, flops


def _seed_questions(cfg: StudyConfig) -> tuple[int, str]:
    source = Path(str(cfg.data.eval_suite))
    if source.exists():
        from data_prep.eval_suite import load_suite

        return len(load_suite(source, split="articles")), f"articles questions in {source}"
    return RELEASED_ARTICLES_QUESTIONS, f"{source} is not readable here: the released suite's articles split (SPEC section 8)"


def synthetic_estimate(cfg: StudyConfig) -> SyntheticEstimate:
    spec = cfg.data.synthetic_generator
    seeds, where = _seed_questions(cfg)
    documents = seeds * cfg.data.synthetic_docs_per_item * 2  # aligned and misaligned
    tokens = documents * spec.estimate_tokens_per_document
    usd = tokens / 1e9 * spec.estimate_usd_per_billion_tokens if spec.kind == "openai" else None
    return SyntheticEstimate(spec.kind, seeds, where, documents, tokens, usd, spec.estimate_usd_per_billion_tokens,
                             spec.estimate_tokens_per_document)


def estimate_study(cfg: StudyConfig, gpus_per_stage: Optional[Mapping[str, int]] = None, gpu: str = "h100",
                   mfu: Optional[float] = None) -> StudyEstimate:
    """FLOPs of every training run; with a throughput (a measured figure, or ``mfu``) GPU-hours, and with
    ``gpus_per_stage`` (stage -> GPUs a run of it gets) wall time, runs taken one after another."""
    vocab, vocab_source = _vocab(cfg)
    notes = []
    try:
        rate: Optional[Throughput] = throughput(gpu, cfg.parallel.precision, mfu)
    except ValueError as err:
        rate = None
        notes.append(f"GPU time not estimated: {err}")
    stage_precisions = {cfg.stage_parallel("sft" if s == "tamper" else s).precision for _, s in training_runs(cfg)}
    if rate is not None and len(stage_precisions) > 1:
        notes.append(f"stages use several precisions ({', '.join(sorted(stage_precisions))}); the throughput is the study's")
    from megatron_alignpt.study.plan import build_plan

    plan, runs = build_plan(cfg), []
    for step in plan:
        if step.kind != "train":
            continue
        stage = step.stage
        tokens, flops = run_flops(cfg, plan.resolved(step), vocab)
        gpus = (gpus_per_stage or {}).get(stage) or ((gpus_per_stage or {}).get("sft") if step.tamper else None)
        gpu_hours = flops / (rate.tflops_per_gpu * 1e12) / 3600 if rate else None
        wall = gpu_hours / gpus if gpu_hours is not None and gpus else None
        runs.append(RunEstimate(step.run, stage, tokens, flops, gpus, gpu_hours, wall, name=step.name))
    return StudyEstimate(cfg.name, runs, synthetic_estimate(cfg), rate, vocab, vocab_source, notes)


def _si(value: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def _duration(hours: Optional[float]) -> str:
    if hours is None:
        return "-"
    if hours >= 48:
        return f"{hours / 24:.1f} d"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.1f} min"


def _by_stage(runs: list[RunEstimate]) -> dict[str, list[RunEstimate]]:
    out: dict[str, list[RunEstimate]] = {}
    for r in runs:
        out.setdefault(r.stage, []).append(r)
    return out


def _hours(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def format_estimate(est: StudyEstimate) -> str:
    """A table for people: one line per training run, per stage and in total, then the synthetic documents."""
    lines = [f"compute estimate for study {est.study!r} (model FLOPs: train.telemetry.model_flops_per_step; "
             f"padded vocabulary {est.vocab_size}: {est.vocab_source})"]
    if est.throughput:
        t = est.throughput
        lines.append(f"  throughput: {t.tflops_per_gpu:.0f} TFLOP/s per {t.gpu} ({t.mfu:.1%} MFU of {t.peak_tflops:g}); "
                     f"source: {t.source}")
    width = max([len(r.step) for r in est.runs] + [len("all pretrain (99 runs)")])

    def row(name, tokens, flops, gpu_hours, gpus, wall) -> str:
        return (f"  {name:<{width}}  {_si(tokens):>8}  {flops:>9.3g}  {_hours(gpu_hours):>10}  {gpus or '-':>5}  "
                f"{_duration(wall):>8}")

    lines.append(f"  {'training run':<{width}}  {'tokens':>8}  {'FLOPs':>9}  {'GPU-hours':>10}  {'GPUs':>5}  {'wall':>8}")
    lines += [row(r.step, r.tokens, r.flops, r.gpu_hours, r.gpus, r.wall_hours) for r in est.runs]
    for stage, runs in _by_stage(est.runs).items():
        part = StudyEstimate(est.study, runs, est.synthetic, est.throughput, est.vocab_size, est.vocab_source)
        lines.append(row(f"all {stage} ({len(runs)} run{'s' if len(runs) > 1 else ''})", sum(r.tokens for r in runs),
                         part.flops, part.gpu_hours, "", part.wall_hours))
    lines.append(row("total", sum(r.tokens for r in est.runs), est.flops, est.gpu_hours, "", est.wall_hours))
    lines.append(f"  {len(est.runs)} training runs (a stage shared by several conditions is trained once); wall time "
                 "adds the runs one after another at the GPUs shown (runs of different conditions may overlap on more nodes).")
    if est.wall_hours is None and est.gpu_hours is not None:
        lines.append("  wall time: give --world-size (study run --dry-run) or --nodes (study submit --dry-run).")
    lines.append("  not counted: evaluations, data preparation, checkpoint I/O, preempted or failed work; multi-node "
                 "communication beyond the single-GPU measurement.")
    chain = [r for r in est.runs if r.condition == est.runs[0].condition] if est.runs else []
    if chain and all(r.gpu_hours is not None for r in chain):
        lines.append(f"  one condition end to end ({' -> '.join(r.stage for r in chain)}): "
                     f"{sum(r.gpu_hours for r in chain):,.0f} GPU-hours (the paper: ~20k H100-hours per run, SPEC section 3)")
    lines += [f"  note: {n}" for n in est.notes]
    s = est.synthetic
    per = s.documents // max(s.seed_questions * 2, 1)
    head = (f"synthetic documents: {s.seed_questions:,} seed questions ({s.seed_source}) x {per} per direction x 2 = "
            f"{s.documents:,} documents")
    if s.usd is None:
        lines.append(f"{head}; generator {s.generator!r}: written offline, no API cost")
    else:
        lines.append(f"{head}, ~{_si(s.tokens)} tokens at {s.tokens_per_document:.0f} per document "
                     "(data.synthetic_generator.estimate_tokens_per_document; SPEC section 4: ~11B tokens / ~14.9M documents)")
        lines.append(f"  API cost ~${s.usd:,.0f} at ${s.usd_per_billion:,.0f} per 1B tokens "
                     "(data.synthetic_generator.estimate_usd_per_billion_tokens; SPEC section 6: ~$500 per 1B tokens)")
    return "\n".join(lines)
