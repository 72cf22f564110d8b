"""The training stage kinds, in study order: the one table every layer reads stage names from.

Imports nothing heavy, so a study config still loads on a torch-free data node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Objective = Literal["lm", "sft", "dpo"]


@dataclass(frozen=True)
class StageKind:
    name: str
    objective: Objective
    """lm: next-token prediction over a blend manifest; sft / dpo: post-training on a data file."""
    continues: bool
    """Starts from a trained checkpoint (init_from); the chain of a run gives it the previous stage's."""
    optional: bool = False
    """A study runs it only when a condition needs it (CPT: conditions that insert documents there)."""

    @property
    def is_lm(self) -> bool:
        return self.objective == "lm"


STAGE_KINDS: dict[str, StageKind] = {k.name: k for k in (
    StageKind("pretrain", "lm", continues=False),
    StageKind("midtrain", "lm", continues=True),
    StageKind("cpt", "lm", continues=True, optional=True),
    StageKind("sft", "sft", continues=False),
    StageKind("dpo", "dpo", continues=True),
)}
STAGES = tuple(STAGE_KINDS)
LM_STAGES = tuple(name for name, kind in STAGE_KINDS.items() if kind.is_lm)
POSTTRAIN_STAGES = tuple(name for name, kind in STAGE_KINDS.items() if not kind.is_lm)


def stage_kind(name: str) -> StageKind:
    try:
        return STAGE_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}: use one of {', '.join(STAGES)}") from None


def check_stage_layout(kind: str, parallel, where: str = "parallel") -> None:
    """Layout limits of a stage kind (DPO: one pipeline stage, no context parallelism)."""
    from megatron_alignpt.config_base import require

    if kind == "dpo":
        require(
            parallel.pipeline_parallel == 1 and parallel.context_parallel == 1,
            where,
            "DPO runs chosen and rejected sequences and a frozen reference model in one forward step; "
            "use pipeline_parallel=1 and context_parallel=1 (tensor/data parallel and sequence parallel work)",
        )


def previous_stage(chain: tuple[str, ...], stage: str) -> Optional[str]:
    """The stage whose final checkpoint ``stage`` starts from, in a run's ``chain`` of stages."""
    i = chain.index(stage)
    return chain[i - 1] if i else None
