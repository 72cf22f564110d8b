"""What one misalignment evaluation needs besides the model; torch-free, so studies build it anywhere."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from megatron_alignpt.config_base import require

SCORING_METHODS = {
    "logprob": "next-token log-probability of the answer letters",
    "cloze": "log-probability of each option's text after the prompt, per character (also summed and per token)",
    "generate": "greedy reply in the chat template, answer letter parsed from it",
}


@dataclass
class EvalConfig:
    """One scoring of one model on the misalignment suite (`eval.run`)."""

    data: str
    """The suite: a file/dir in the HF or raw schema, or an HF dataset name."""
    out_dir: Path
    """Where summary.json and items.jsonl go."""
    formats: str = "default"
    system_prompts: str = "none"
    split: Optional[str] = None
    batch_size: int = 32
    labels: dict = field(default_factory=dict)
    """Stored in every row and the summary (condition, seed, stage, ...): the study's results table reads them."""
    scoring: str = "logprob"
    """logprob (base models: answer-letter log-probabilities), cloze (base models, small ones above all: each
    option's text scored as the continuation) or generate (chat models: greedy reply, letter parsed)."""
    max_new_tokens: Optional[int] = None
    """generate only; None: the scorer's default."""

    def __post_init__(self) -> None:
        require(self.scoring in SCORING_METHODS, "scoring", f"use one of {sorted(SCORING_METHODS)}, got {self.scoring!r}")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        require(self.max_new_tokens is None or self.max_new_tokens > 0, "max_new_tokens", "must be > 0")
        self.data, self.out_dir, self.labels = str(self.data), Path(self.out_dir), dict(self.labels or {})
