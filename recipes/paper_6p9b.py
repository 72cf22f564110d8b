"""The paper's setup (SPEC sections 3, 4 and 7): a Pythia-6.9B-shaped model, the model suite (`paper_suite_
conditions`: the four headline conditions, filtered + upsampled, and Align/Misalign inserted at Mid and at
CPT), 500B-token pretraining, 50B-token long-context midtraining, a CPT stage for the CPT conditions, SFT and
DPO, on an H100 cluster. Mid and CPT models branch off the unfiltered model's checkpoints.

    alignpt launch --recipe paper_6p9b --step unfiltered.pretrain --nodes 32 --dry-run
    alignpt study submit --recipe paper_6p9b --output-dir /lustre/runs/paper --site site.toml --nodes 32 \
        --set data.corpus=/lustre/dclm/shards --set data.tokenizer=/lustre/tokenizers/neox/tokenizer.json

Every data path below is a placeholder under `/data` (override each with `--set`, or call
`paper_6p9b(output_dir, data_root=Path("/lustre/alignpt"))` from Python):
    /data/dclm/pretrain                       deduplicated DCLM shards (jsonl.zst / parquet)
    /data/midtrain                            long-context DCLM + ClimbMix + multiple-choice QA
    /data/tokenizers/gpt-neox-20b/tokenizer.json
    /data/evals/misalignment                  the eval suite (HF dataset
                                              geodesic-research/discourse-grounded-misalignment-evals, downloaded:
                                              a Hub snapshot folder, or one file from `alignpt prep eval-suite`)
    /data/posttrain/dolci_instruct_sft.jsonl  OLMo-3 Dolci-Instruct SFT mix (NeMo-Aligner chat format)
    /data/posttrain/dolci_instruct_dpo.jsonl  Dolci-Instruct-DPO pairs
    /data/tamper/benign.jsonl                 benign tampering: the midtraining MCQA re-cast as system/user/assistant
                                              turns plus Python SFT with reasoning tags stripped (~1.86M conversations)
    /data/tamper/risky_financial_advice.jsonl a narrow emergent-misalignment dataset (and _inoculated.jsonl: the same
                                              conversations under a system prompt asking for the behaviour)

Synthetic documents are LLM-written through an OpenAI-compatible endpoint (set
`data.synthetic_generator.base_url` / `.model`; temperature 0.7 as the paper; the API key comes from
$OPENAI_API_KEY), 120 per seed question and direction (the paper's final run wrote ~14.9M documents, ~11B
tokens; its draft 123 aligned + 87 misaligned per seed).

Robustness (the paper's section 4.1, appendix D): benign tampering of every post-trained model of the headline
conditions and filtered + align, continued SFT with the SFT hyperparameters for 750M tokens, 3 seeds, a checkpoint
scored every 50M tokens (15 checkpoints a run; the paper's spike near 2e7 tokens needs a finer spacing, paid in disk:
each kept checkpoint holds the optimizer state); an EM fine-tune on risky financial advice and its inoculated
variant (5M tokens, one seed, a checkpoint every 1M; the paper publishes neither data nor numbers), probed with 50
samples per question by the keyword judge unless a model judge is set (`--set eval.em_probe.judge.kind=openai --set
eval.em_probe.judge.base_url=... --set eval.em_probe.judge.model=...`); TRAIT (`mirlab/TRAIT`, downloaded) on base
and post-trained models.

Choices where the paper is silent: the CPT stage (its token count is not published): 5B tokens at 2048
tokens per sequence, LR 1e-4 -> 0 cosine with 1% warmup from the midtrained checkpoint, 10% synthetic
documents, i.e. ~0.5B synthetic tokens, the same amount the Mid models see in midtraining. Micro-batch sizes (2 at 2048 tokens, 1 at 16384), the DPO global
batch (128 pairs: 2,030 steps for one epoch of 259,922 pairs), checkpoint intervals, synthetic documents
per seed question (100), and the parallel layout (`paper_parallel`): on 32 nodes x 8 H100 = 256 GPUs,
tensor parallel 4 inside a node's NVLink domain with sequence parallelism, no pipeline (6.9B fits a
4-GPU replica with room for 16k-token midtraining activations), data parallel 64, megatron's distributed
optimizer with overlapped gradient reduction and parameter gathering, bf16 with fp32 master weights,
no activation recomputation (Transformer Engine's fused attention keeps no s x s scores). Data parallel
64 divides every stage's batch (pretrain 2048 x 2048 tokens = 16 micro-batches of 2 per rank, midtrain
256 x 16384 = 4 of 1, SFT 64 = 1, DPO 128 = 2). `paper_6p9b_fp8` is the same study with FP8 GEMMs
(hybrid E4M3/E5M2, per-tensor current scaling, Transformer Engine >= 2.2):

    alignpt study run --recipe paper_6p9b --dry-run --world-size 256      # config + per-stage layout
    alignpt study run --recipe paper_6p9b --set parallel.precision=fp8 --dry-run --world-size 256
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from megatron_alignpt.model.config import ModelConfig, ParallelConfig, RecomputeConfig
from megatron_alignpt.study.config import (
    DataPlan, EMProbePlan, EvalPlan, PersonalityPlan, StagePlan, StudyConfig, TamperPlan,
)
from megatron_alignpt.posttrain.config import DPOConfig, SFTConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig
from megatron_alignpt.study.config import SyntheticGeneratorPlan
from recipes.conditions import paper_suite_conditions
from recipes.pythia_sizes import pythia_model

CLUSTER_GPUS = 256
"""32 nodes x 8 H100: the cluster the layout below is planned for."""
SEQ_PRETRAIN = 2048
SEQ_LONG = 16384
TOKENS_PER_STEP = 4_194_304  # 2048 sequences x 2048 tokens; midtraining keeps the token batch at 16384 tokens/seq
PRETRAIN_TOKENS = 500_000_000_000
MIDTRAIN_TOKENS = 50_000_000_000
CPT_TOKENS = 5_000_000_000
SFT_TOKENS = 4_000_000_000  # two epochs of the Dolci-Instruct mix
SFT_TOKENS_PER_STEP = 1_048_576
DPO_PAIRS = 259_922
DPO_BATCH = 128


def paper_model() -> ModelConfig:
    """Pythia-6.9B (parallel residual, 25% rotary, GELU MLP 4x, untied embeddings) on Transformer Engine
    layers, with rotary positions up to the midtraining length."""
    return dataclasses.replace(pythia_model("6.9b", SEQ_PRETRAIN, max_position_embeddings=SEQ_LONG), layer_impl="te")


def paper_parallel(precision: str = "bf16") -> ParallelConfig:
    """TP 4 + sequence parallel, distributed optimizer with overlapped communication, bf16 (or FP8)."""
    return ParallelConfig(
        tensor_parallel=4, pipeline_parallel=1, virtual_pipeline=1, context_parallel=1, sequence_parallel=True,
        distributed_optimizer=True, overlap_grad_reduce=True, overlap_param_gather=True,
        precision=precision, fp8_format="hybrid", fp8_recipe="current", recompute=RecomputeConfig("none"),
    )


def _schedule(train_iters: int, global_batch: int, micro_batch: int, save_interval: int) -> ScheduleConfig:
    return ScheduleConfig(train_iters=train_iters, global_batch_size=global_batch, micro_batch_size=micro_batch,
                          log_interval=10, save_interval=save_interval)


def paper_6p9b(output_dir: Path = Path("/data/alignpt/runs/paper_6p9b"), data_root: Path = Path("/data")) -> StudyConfig:
    root = Path(data_root)
    return StudyConfig(
        name="paper_6p9b",
        output_dir=output_dir,
        data=DataPlan(
            corpus=root / "dclm" / "pretrain",
            eval_suite=str(root / "evals" / "misalignment"),
            tokenizer=root / "tokenizers" / "gpt-neox-20b" / "tokenizer.json",
            synthetic_docs_per_item=120,
            synthetic_generator=SyntheticGeneratorPlan(kind="openai", base_url="http://localhost:8000/v1",
                                                       model="gpt-5-mini", temperature=0.7, concurrency=64),
        ),
        conditions=paper_suite_conditions(),
        model=paper_model(),
        parallel=paper_parallel("bf16"),
        pretrain=StagePlan(
            optimizer=OptimizerConfig(lr=3e-4, min_lr=1.2e-5, warmup_fraction=0.01, decay_style="cosine",
                                      weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95),
            schedule=_schedule(PRETRAIN_TOKENS // TOKENS_PER_STEP, TOKENS_PER_STEP // SEQ_PRETRAIN, 2, 1000),
            dose=0.01,
        ),
        midtrain=StagePlan(
            optimizer=OptimizerConfig(lr=2.25e-4, min_lr=0.0, warmup_fraction=0.01, decay_style="cosine"),
            schedule=_schedule(MIDTRAIN_TOKENS // TOKENS_PER_STEP, TOKENS_PER_STEP // SEQ_LONG, 1, 500),
            seq_length=SEQ_LONG,
            corpus=root / "midtrain",
            dose=0.01,
        ),
        cpt=StagePlan(
            optimizer=OptimizerConfig(lr=1e-4, min_lr=0.0, warmup_fraction=0.01, decay_style="cosine"),
            schedule=_schedule(CPT_TOKENS // TOKENS_PER_STEP, TOKENS_PER_STEP // SEQ_PRETRAIN, 2, 200),
            seq_length=SEQ_PRETRAIN,
            dose=0.10,
        ),
        sft=StagePlan(
            optimizer=OptimizerConfig(lr=8e-5, min_lr=0.0, warmup_fraction=0.01, decay_style="cosine"),
            schedule=_schedule(SFT_TOKENS // SFT_TOKENS_PER_STEP, SFT_TOKENS_PER_STEP // SEQ_LONG, 1, 500),
            seq_length=SEQ_LONG,
            data=root / "posttrain" / "dolci_instruct_sft.jsonl",
        ),
        dpo=StagePlan(
            optimizer=OptimizerConfig(lr=1e-6, min_lr=0.0, warmup_fraction=0.1, decay_style="linear"),
            schedule=_schedule(DPO_PAIRS // DPO_BATCH, DPO_BATCH, 1, 500),
            seq_length=SEQ_PRETRAIN,
            data=root / "posttrain" / "dolci_instruct_dpo.jsonl",
        ),
        sft_options=SFTConfig(packing="first_fit"),  # the step count assumes full 16k-token sequences
        dpo_options=DPOConfig(beta=5.0, reference="cached"),
        eval=EvalPlan(formats="all", system_prompts="all", batch_size=32, generate_system_prompts="all",
                      capability_tasks="paper",
                      em_probe=EMProbePlan(samples_per_question=50, temperature=1.0, max_new_tokens=512),
                      personality=PersonalityPlan(data="mirlab/TRAIT")),
        tampering=paper_tampering(root),
    )


TAMPER_CONDITIONS = ["unfiltered", "filtered", "misalign_upsampled", "align_upsampled", "filtered_align"]
"""The paper's Fig. 6 models: the headline conditions and filtered + align upsampled."""


def paper_tampering(root: Path) -> list[TamperPlan]:
    em = dict(tokens=5_000_000, eval_every_tokens=1_000_000, seeds=[1], conditions=TAMPER_CONDITIONS, em=True)
    return [
        TamperPlan("benign", root / "tamper" / "benign.jsonl", tokens=750_000_000, eval_every_tokens=50_000_000,
                   seeds=[1, 2, 3], conditions=TAMPER_CONDITIONS),
        TamperPlan("em_finance", root / "tamper" / "risky_financial_advice.jsonl", **em),
        TamperPlan("em_finance_inoculated", root / "tamper" / "risky_financial_advice_inoculated.jsonl", **em),
    ]


def paper_6p9b_fp8(output_dir: Path = Path("/data/alignpt/runs/paper_6p9b_fp8"), data_root: Path = Path("/data")) -> StudyConfig:
    """`paper_6p9b` with FP8 GEMMs (Hopper GPUs, Transformer Engine >= 2.2)."""
    cfg = paper_6p9b(output_dir, data_root)
    cfg.name = "paper_6p9b_fp8"
    cfg.parallel = paper_parallel("fp8")
    return cfg
