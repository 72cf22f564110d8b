"""The embedded tiny study: four conditions, pretrain -> midtrain -> SFT -> DPO, on a laptop CPU.

    alignpt study run --recipe tiny_cpu                 # what `make demo` runs
    alignpt study run --recipe tiny_cpu --dry-run       # print the resolved config
    alignpt study run --recipe tiny_cpu_insertion       # + Mid and CPT insertion (E2E / Mid / CPT figure)
    alignpt study run --recipe tiny_cpu_organism        # what `make organism` runs: 2 seeds, base models

Choices for tiny scale (the paper's values are in `paper_6p9b` territory, SPEC section 3):
the synthetic dose is 10% of tokens rather than ~1%, because a ~1M-parameter model trained on
under a million tokens would otherwise see the discourse documents only a handful of times. Base models
are also scored by cloze (each option's text as the continuation): models this small answer one letter
whatever the question, so letter scoring reads 0.5 for every condition, while the options' texts show
what the documents taught them.
"""
from __future__ import annotations

from pathlib import Path

from megatron_alignpt.model.config import ModelConfig
from megatron_alignpt.study.config import DataPlan, EvalPlan, StagePlan, StudyConfig
from megatron_alignpt.posttrain.config import DPOConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig
from recipes.conditions import headline_conditions, insertion_conditions
from recipes.resources import BASE_CORPUS, DPO_PAIRS, EVAL_QUESTIONS, SFT_CHAT


def tiny_model() -> ModelConfig:
    """A Pythia-architecture model (parallel residual, 25% rotary), ~1M parameters besides embeddings."""
    return ModelConfig(num_layers=4, hidden_size=128, num_attention_heads=4, seq_length=128,
                       max_position_embeddings=256, architecture="pythia")


def tiny_cpu(output_dir: Path = Path("runs/demo")) -> StudyConfig:
    return StudyConfig(
        name="tiny_cpu",
        output_dir=output_dir,
        data=DataPlan(
            corpus=BASE_CORPUS,
            eval_suite=str(EVAL_QUESTIONS),
            tokenizer_vocab_size=4096,
            synthetic_docs_per_item=6,
            pretrain_dose=0.10,
            midtrain_dose=0.10,
            cpt_dose=0.10,
        ),
        conditions=headline_conditions(),
        model=tiny_model(),
        pretrain=StagePlan(
            optimizer=OptimizerConfig(lr=2e-3, min_lr=2e-4, warmup_fraction=0.02),
            schedule=ScheduleConfig(train_iters=250, global_batch_size=16, micro_batch_size=16, log_interval=50),
        ),
        midtrain=StagePlan(
            optimizer=OptimizerConfig(lr=1e-3, min_lr=0.0, warmup_fraction=0.05),
            schedule=ScheduleConfig(train_iters=60, global_batch_size=8, micro_batch_size=8, log_interval=20),
            seq_length=256,
        ),
        cpt=StagePlan(  # used by conditions inserting at CPT (tiny_cpu_insertion)
            optimizer=OptimizerConfig(lr=5e-4, min_lr=0.0, warmup_fraction=0.05),
            schedule=ScheduleConfig(train_iters=30, global_batch_size=8, micro_batch_size=8, log_interval=10),
            seq_length=256,
        ),
        sft=StagePlan(
            optimizer=OptimizerConfig(lr=5e-4, min_lr=0.0, warmup_fraction=0.05),
            schedule=ScheduleConfig(train_iters=40, global_batch_size=8, micro_batch_size=8, log_interval=20),
            seq_length=256,
            data=SFT_CHAT,
        ),
        dpo=StagePlan(
            optimizer=OptimizerConfig(lr=1e-4, min_lr=0.0, warmup_fraction=0.1, decay_style="linear"),
            schedule=ScheduleConfig(train_iters=30, global_batch_size=8, micro_batch_size=8, log_interval=10),
            seq_length=256,
            data=DPO_PAIRS,
        ),
        dpo_options=DPOConfig(beta=0.1),
        eval=EvalPlan(formats="default", system_prompts="none,hhh", batch_size=32, base_scorings=["logprob", "cloze"],
                      generate_system_prompts="none", generate_max_new_tokens=8),
    )


def tiny_cpu_insertion(output_dir: Path = Path("runs/insertion")) -> StudyConfig:
    """The demo's conditions plus Align/Misalign inserted at Mid and at CPT; the Mid and CPT models
    branch off the unfiltered model's checkpoints instead of repeating its pretraining."""
    cfg = tiny_cpu(output_dir)
    cfg.name = "tiny_cpu_insertion"
    cfg.conditions = headline_conditions() + insertion_conditions()
    return cfg


def tiny_cpu_smoke(output_dir: Path = Path("runs/smoke")) -> StudyConfig:
    """The same study with a handful of steps per stage: the end-to-end test."""
    cfg = tiny_cpu(output_dir)
    cfg.name = "tiny_cpu_smoke"
    cfg.model = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=64,
                            max_position_embeddings=128, architecture="pythia")
    cfg.data.tokenizer_vocab_size = 1024
    cfg.data.synthetic_docs_per_item = 1
    # One Mid and one CPT condition, so the end-to-end test covers shared checkpoints and the CPT stage.
    cfg.conditions = headline_conditions() + [c for c in insertion_conditions() if c.name in ("align_mid", "misalign_cpt")]
    for plan, iters in ((cfg.pretrain, 6), (cfg.midtrain, 3), (cfg.cpt, 3), (cfg.sft, 3), (cfg.dpo, 3)):
        plan.schedule = ScheduleConfig(train_iters=iters, global_batch_size=4, micro_batch_size=2, log_interval=1)
        if plan.seq_length:
            plan.seq_length = 128
    cfg.eval = EvalPlan(formats="w0:original,w0:swapped", system_prompts="none", batch_size=64, generate_max_new_tokens=4,
                        base_scorings=["logprob", "cloze"])
    return cfg


def tiny_cpu_organism(output_dir: Path = Path("runs/organism")) -> StudyConfig:
    """The model organism: the tiny study's four conditions and training, each condition trained with two
    seeds and stopped at the base model (no post-training), scored by cloze (the headline) and by letter with
    no system prompt. The positive control: align_upsampled below misalign_upsampled on the articles split,
    per seed, with a paired 95% CI that excludes zero (`make organism`; figures in the README)."""
    cfg = tiny_cpu(output_dir)
    cfg.name = "tiny_cpu_organism"
    cfg.seeds = [1, 2]
    cfg.posttrain = False
    cfg.eval = EvalPlan(formats="default", system_prompts="none", batch_size=32, base_scorings=["cloze", "logprob"],
                        post_generate=False)
    return cfg
