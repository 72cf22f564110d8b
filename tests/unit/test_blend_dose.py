"""The dose reaches the model: the share of synthetic tokens in the batches the trainer's forward step
receives equals the manifest's dose, at the paper's doses and at one far above the natural share.

Synthetic documents here are written in capitals and the base corpus in lower case, so every training
sequence shows which dataset it came from (a sample is a window of one dataset's token stream) without
asking megatron's blend index. The synthetic set is about a quarter of all tokens, so a trainer that drew
by dataset size instead of by weight would land far outside the tolerance, which comes from the number of
sequences seen: 3 binomial standard errors plus one sequence.
"""
from __future__ import annotations

import math
import random

import pytest

from data_prep.indexed import count_tokens
from data_prep.manifest import DatasetEntry, build_condition_manifest
from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig

SEQ_LENGTH = 8
GLOBAL_BATCH = 1024
ITERS = 8
WORDS = "the cat sat on a mat while dogs ran in parks and birds sang over green hills near old towns".split()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    from data_prep.tokenize import tokenize_to_indexed, train_bpe_tokenizer

    root = tmp_path_factory.mktemp("dose")
    rng = random.Random(1)
    base = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) + "." for _ in range(300)]
    synthetic = [" ".join(rng.choice(WORDS).upper() for _ in range(rng.randint(20, 60))) + "." for _ in range(100)]
    tokenizer = train_bpe_tokenizer(base + synthetic, 400, root / "tokenizer.json")
    tokenize_to_indexed(base, tokenizer, root / "base")
    tokenize_to_indexed(synthetic, tokenizer, root / "synthetic")
    natural = count_tokens(root / "synthetic") / (count_tokens(root / "synthetic") + count_tokens(root / "base"))
    return {"root": root, "tokenizer": tokenizer, "natural_share": natural}


def _is_synthetic(tokenizer, row: list[int]) -> bool:
    """A sequence is synthetic when its text is in capitals; a mix of both would be a broken sample."""
    text = tokenizer.detokenize(row).replace("<|endoftext|>", "")
    upper, lower = any(c.isupper() for c in text), any(c.islower() for c in text)
    assert upper != lower, f"a sequence mixes both datasets: {text!r}"
    return upper


@pytest.mark.parametrize("dose", [0.005, 0.01, 0.10])
def test_trainer_batches_carry_the_dose(corpora, dose, tmp_path, monkeypatch):
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.train import lm_task
    from megatron_alignpt.train.trainer import run_stage

    root = corpora["root"]
    manifest = build_condition_manifest(
        "align_upsampled", "pretrain", [DatasetEntry.from_prefix("base", root / "base")],
        DatasetEntry.from_prefix("synthetic_aligned", root / "synthetic", synthetic=True), dose,
        tokenizer=str(corpora["tokenizer"]))
    manifest.to_json(tmp_path / "manifest.json")

    received = []
    forward_step = lm_task.LMTask.forward_step

    def recording(data_iterator, model):
        batch = next(data_iterator)
        received.extend(batch["tokens"].tolist())
        return forward_step(iter([batch]), model)

    monkeypatch.setattr(lm_task.LMTask, "forward_step", staticmethod(recording))
    run_stage(StageConfig(
        name="dose", kind="pretrain",
        model=ModelConfig(num_layers=1, hidden_size=16, num_attention_heads=2, seq_length=SEQ_LENGTH),
        optimizer=OptimizerConfig(lr=1e-3, warmup_fraction=0.0),
        schedule=ScheduleConfig(train_iters=ITERS, global_batch_size=GLOBAL_BATCH, micro_batch_size=GLOBAL_BATCH // 2,
                                save_interval=0, log_interval=1000),
        tokenizer=corpora["tokenizer"], data=tmp_path / "manifest.json", output_dir=tmp_path / "run",
        parallel=ParallelConfig(),
    ))
    n = len(received)
    assert n == ITERS * GLOBAL_BATCH
    tokenizer = TextTokenizer(corpora["tokenizer"])
    synthetic_tokens = sum(len(row) for row in received if _is_synthetic(tokenizer, row))
    share = synthetic_tokens / sum(len(row) for row in received)
    tolerance = 3 * math.sqrt(dose * (1 - dose) / n) + 1 / n
    assert abs(corpora["natural_share"] - dose) > 10 * tolerance  # drawing by size could not pass
    assert share == pytest.approx(dose, abs=tolerance), (share, dose, tolerance)
