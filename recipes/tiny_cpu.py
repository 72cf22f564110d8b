"""The embedded tiny study: four conditions, pretrain -> midtrain -> SFT -> DPO, on a laptop CPU.

    alignpt study run --recipe tiny_cpu                 # what `make demo` runs
    alignpt study run --recipe tiny_cpu --dry-run       # print the resolved config
    alignpt study run --recipe tiny_cpu_insertion       # + Mid and CPT insertion (E2E / Mid / CPT figure)
    alignpt study run --recipe tiny_cpu_organism        # what `make organism` runs: 2 seeds, base models
    alignpt study run --recipe tiny_cpu_robustness      # + tampering, an EM fine-tune, EM probe and TRAIT

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
from megatron_alignpt.eval.judges import JudgeConfig
from megatron_alignpt.study.config import (
    DataPlan, EMProbePlan, EvalPlan, PersonalityPlan, StagePlan, StudyConfig, TamperPlan,
)
from megatron_alignpt.posttrain.config import DPOConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig
from recipes.conditions import headline_conditions, insertion_conditions
from recipes.resources import (
    BASE_CORPUS, BENIGN_TAMPER, DPO_PAIRS, EVAL_QUESTIONS, RISKY_FINANCIAL_ADVICE, SFT_CHAT, TRAIT_QUESTIONS,
)


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
        ),
        conditions=headline_conditions(),
        model=tiny_model(),
        pretrain=StagePlan(
            optimizer=OptimizerConfig(lr=2e-3, min_lr=2e-4, warmup_fraction=0.02),
            schedule=ScheduleConfig(train_iters=250, global_batch_size=16, micro_batch_size=16, log_interval=50),
            dose=0.10,
        ),
        midtrain=StagePlan(
            optimizer=OptimizerConfig(lr=1e-3, min_lr=0.0, warmup_fraction=0.05),
            schedule=ScheduleConfig(train_iters=60, global_batch_size=8, micro_batch_size=8, log_interval=20),
            seq_length=256,
            dose=0.10,
        ),
        cpt=StagePlan(  # used by conditions inserting at CPT (tiny_cpu_insertion)
            optimizer=OptimizerConfig(lr=5e-4, min_lr=0.0, warmup_fraction=0.05),
            schedule=ScheduleConfig(train_iters=30, global_batch_size=8, micro_batch_size=8, log_interval=10),
            seq_length=256,
            dose=0.10,
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


def add_robustness(cfg: StudyConfig, sft_iterations: int, every: int, seeds: list[int], probe_samples: int,
                   probe_tokens: int, items_per_trait: int | None, tamper_conditions: list[str] | None = None) -> StudyConfig:
    """The robustness branch at tiny scale: benign tampering of every post-trained model (the shipped MCQA-as-chat
    and Python-help conversations) over ``seeds``, an emergent-misalignment fine-tune on risky financial advice
    (one seed), the EM probe (keyword judge: offline) after DPO and after the EM fine-tune, and the TRAIT-style
    questions on base and post-trained models. Tampering checkpoints are scored by cloze, the scoring that reads
    models this small (letter scoring reads 0.5 everywhere, generated replies mostly parse to no letter).
    ``tamper_conditions``: the conditions tampered with (None: all)."""
    tokens_per_iteration = cfg.resolve_stage("sft").tokens_per_iteration
    tokens, step = sft_iterations * tokens_per_iteration, every * tokens_per_iteration
    cfg.tampering = [
        TamperPlan("benign", BENIGN_TAMPER, tokens=tokens, eval_every_tokens=step, seeds=seeds, scorings=["cloze"],
                   conditions=list(tamper_conditions or [])),
        TamperPlan("em_finance", RISKY_FINANCIAL_ADVICE, tokens=tokens, eval_every_tokens=step, seeds=seeds[:1],
                   em=True, scorings=["cloze"], conditions=list(tamper_conditions or [])),
    ]
    if "cloze" not in cfg.eval.post_scorings:  # the tampering curve starts at the post-trained model, scored alike
        cfg.eval.post_scorings = cfg.eval.post_scorings + ["cloze"]
    cfg.eval.em_probe = EMProbePlan(samples_per_question=probe_samples, temperature=1.0, max_new_tokens=probe_tokens,
                                    judge=JudgeConfig(kind="keyword"))
    cfg.eval.personality = PersonalityPlan(data=str(TRAIT_QUESTIONS), max_items_per_trait=items_per_trait)
    return cfg


def tiny_cpu_robustness(output_dir: Path = Path("runs/robustness")) -> StudyConfig:
    """The demo study plus the robustness branch (`make robustness`): does the prior survive benign tampering
    (3 seeds, 24 SFT iterations, a checkpoint every 8) and a narrow emergent-misalignment fine-tune, and does
    it show in personality questions? Wall time and figures in the README."""
    cfg = tiny_cpu(output_dir)
    cfg.name = "tiny_cpu_robustness"
    return add_robustness(cfg, sft_iterations=24, every=8, seeds=[1, 2, 3], probe_samples=2, probe_tokens=32,
                          items_per_trait=None)


def tiny_cpu_robustness_smoke(output_dir: Path = Path("runs/robustness_smoke")) -> StudyConfig:
    """The end-to-end test: the smoke study (all its conditions, a few steps each) with the robustness branch,
    tampering with two conditions over two seeds."""
    cfg = tiny_cpu_smoke(output_dir)
    cfg.name = "tiny_cpu_robustness_smoke"
    return add_robustness(cfg, sft_iterations=4, every=2, seeds=[1, 2], probe_samples=1, probe_tokens=8, items_per_trait=1,
                          tamper_conditions=["unfiltered", "align_upsampled"])
