"""Settings of the post-training stages (SFT, DPO); torch-free, so study configs load anywhere."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from megatron_alignpt.config_base import require


@dataclass
class SFTConfig:
    assistant_only_loss: bool = True
    """Train only on assistant tokens (the paper's authors found masking matters)."""
    packing: Literal["none", "first_fit", "greedy"] = "none"
    """Several conversations per training sequence (documents never attend across boundaries):
    none (one per sequence), first_fit (first-fit decreasing: densest) or greedy (in data order,
    a new sequence when the next one does not fit). See posttrain/packing.py."""

    def __post_init__(self) -> None:
        require(self.packing in ("none", "first_fit", "greedy"), "sft.packing", "use none, first_fit or greedy")


@dataclass
class DPOConfig:
    beta: float = 0.1
    """KL strength (NeMo-Aligner's ref_policy_kl_penalty; the paper used 5.0)."""
    reference: Literal["online", "cached"] = "online"
    """Reference log-probabilities: online (a frozen copy runs beside the policy every step) or
    cached (computed once before training, stored beside the run keyed by data and reference
    checkpoint, reused on resume; no reference model in memory while training)."""

    def __post_init__(self) -> None:
        require(self.beta > 0, "dpo.beta", "must be > 0")
        require(self.reference in ("online", "cached"), "dpo.reference", "use online or cached")
