"""Single training stages as configs, for `alignpt train` outside a study.

    alignpt train --example-config > out/stage.json     # this file's `example_stage`, with each field explained on stderr
    alignpt train --config out/stage.json

`example_stage` pretrains the tiny demo model for 20 steps on the blend manifest and tokenizer that the
README's CLI walkthrough writes under `out/` (`prep tokenizer`, `prep manifest`), in about a minute on a CPU.
"""
from __future__ import annotations

from pathlib import Path

from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig
from recipes.tiny_cpu import tiny_model


def example_stage(root: Path = Path("out")) -> StageConfig:
    return StageConfig(
        name="example.pretrain",
        kind="pretrain",
        model=tiny_model(),
        optimizer=OptimizerConfig(lr=2e-3, min_lr=2e-4, warmup_fraction=0.05),
        schedule=ScheduleConfig(train_iters=20, global_batch_size=8, micro_batch_size=8, log_interval=5),
        tokenizer=root / "tokenizer.json",
        data=root / "align.pretrain.json",
        output_dir=root / "train" / "align.pretrain",
    )
