"""Score a Hugging Face causal LM on the misalignment suite without converting it.

The HF model is wrapped to megatron's call signature, model(tokens, position_ids, attention_mask)
-> logits [b, s, V], and handed to the same `score_items` / `summarize` / `write_results` as a
megatron checkpoint, with the directory's tokenizer.json read by the same `TextTokenizer`. Prompt
rendering, batching, padding and letter reading are therefore shared code, and a converted
checkpoint and its HF original give the same log-probabilities.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from megatron_alignpt.data.tokenizer import TextTokenizer
from megatron_alignpt.eval.config import EvalConfig


class HFCausalLMAdapter(torch.nn.Module):
    """Calls an HF causal LM the way the scorer calls a megatron GPTModel."""

    def __init__(self, hf_model: torch.nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, tokens: torch.Tensor, position_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError("the HF adapter scores causal right-padded batches only (attention_mask=None)")
        return self.hf(input_ids=tokens, position_ids=position_ids, use_cache=False).logits


def load_hf_for_eval(hf_dir: Path, seed: int = 1234) -> tuple[HFCausalLMAdapter, TextTokenizer, int]:
    """(adapter, tokenizer, max positions) for an HF directory with a tokenizer.json, in fp32."""
    try:
        from transformers import AutoModelForCausalLM
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("scoring an HF model needs transformers: pip install -e '.[hf]'") from err

    from megatron_alignpt.runtime import device, init_parallel

    hf_dir = Path(hf_dir)
    tok_path = hf_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise FileNotFoundError(f"{tok_path}: --hf needs a directory with tokenizer.json (the scorer's tokenizer)")
    # The scorer gathers logits over the tensor-parallel group; a 1-rank group makes that a no-op.
    init_parallel(1, 1, seed)
    hf_model = AutoModelForCausalLM.from_pretrained(str(hf_dir)).float().to(device())
    hf_model.eval()
    max_len = int(getattr(hf_model.config, "max_position_embeddings", 2048))
    return HFCausalLMAdapter(hf_model), TextTokenizer(tok_path), max_len


def evaluate_misalignment_hf(hf_dir: Path, cfg: EvalConfig) -> dict:
    """`eval.run.evaluate_misalignment` for an HF directory: same rows, summary and output files
    (``scoring`` logprob or cloze; generate needs the study's chat template, i.e. a converted checkpoint)."""
    from megatron_alignpt.eval.run import run_misalignment_eval

    def load():
        model, tokenizer, max_len = load_hf_for_eval(Path(hf_dir))
        return model, tokenizer, max_len, {"checkpoint": str(hf_dir), "model_format": "hf"}

    if cfg.scoring == "generate":
        raise ValueError("generate scoring needs the study's chat template: convert the HF model with 'alignpt convert hf2mcore'")
    return run_misalignment_eval(load, cfg)
