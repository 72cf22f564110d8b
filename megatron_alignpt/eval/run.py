"""Evaluate a checkpoint on the misalignment suite and write summary.json + items.jsonl."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from data_prep.eval_suite import load_suite
from megatron_alignpt.data.tokenizer import TextTokenizer
from megatron_alignpt.eval.formats import parse_formats, parse_system_prompts
from megatron_alignpt.eval.misalignment import score_items, summarize, write_results
from megatron_alignpt.model.builder import build_gpt_model
from megatron_alignpt.model.config import ParallelConfig
from megatron_alignpt.provenance import code_version
from megatron_alignpt.runtime import init_parallel, is_rank0
from megatron_alignpt.train import checkpoint as ckpt


SCORING_METHODS = {
    "logprob": "next-token log-probability of the answer letters",
    "cloze": "log-probability of each option's text after the prompt, per character (also summed and per token)",
    "generate": "greedy reply in the chat template, answer letter parsed from it",
}


def load_model_for_eval(checkpoint: Path, tensor_parallel: int = 1, seed: int = 1234):
    """(model, tokenizer, model_config) from a self-contained checkpoint directory."""
    path = ckpt.resolve_checkpoint(checkpoint)
    model_cfg, tokenizer_path = ckpt.read_model_meta(path)
    init_parallel(tensor_parallel, 1, seed)
    tokenizer = TextTokenizer(tokenizer_path)
    model = build_gpt_model(model_cfg, ParallelConfig(tensor_parallel=tensor_parallel), tokenizer.vocab_size)
    ckpt.load_weights(path, model)
    model.eval()
    return model, tokenizer, model_cfg, path


def evaluate_misalignment(
    checkpoint: Path,
    data: str,
    out_dir: Path,
    formats: str = "default",
    system_prompts: str = "none",
    split: Optional[str] = None,
    tensor_parallel: int = 1,
    batch_size: int = 32,
    labels: Optional[dict] = None,
    scoring: str = "logprob",
    max_new_tokens: Optional[int] = None,
) -> dict:
    """``scoring``: ``logprob`` (base models: answer-letter log-probabilities), ``cloze`` (base models,
    small ones above all: each option's text scored as the continuation, `eval.cloze_scoring`) or
    ``generate`` (chat models: greedy reply in the chat template, letter parsed; adds non-match and
    normalised rates)."""

    def load():
        model, tokenizer, model_cfg, path = load_model_for_eval(checkpoint, tensor_parallel)
        return model, tokenizer, model_cfg.max_positions, {"checkpoint": str(path)}

    return run_misalignment_eval(load, data, out_dir, formats, system_prompts, split, batch_size, labels, scoring, max_new_tokens)


def run_misalignment_eval(
    load_model: Callable[[], tuple],
    data: str,
    out_dir: Path,
    formats: str = "default",
    system_prompts: str = "none",
    split: Optional[str] = None,
    batch_size: int = 32,
    labels: Optional[dict] = None,
    scoring: str = "logprob",
    max_new_tokens: Optional[int] = None,
) -> dict:
    """Shared by every model source: `load_model()` -> (model, tokenizer, max_len, source metadata).

    The suite and format specs are parsed before the model loads, so bad input fails fast.
    """
    if scoring not in SCORING_METHODS:
        raise ValueError(f"unknown scoring {scoring!r}; use one of {sorted(SCORING_METHODS)}")
    items = load_suite(data, split=split)
    fmts = parse_formats(formats)
    prompts = parse_system_prompts(system_prompts)
    model, tokenizer, max_len, source = load_model()
    if scoring == "generate":
        from megatron_alignpt.eval.chat_scoring import DEFAULT_MAX_NEW_TOKENS, score_chat_items

        max_new_tokens = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
        rows = score_chat_items(model, tokenizer, items, fmts, prompts, max_len, batch_size, max_new_tokens)
    elif scoring == "cloze":
        from megatron_alignpt.eval.cloze_scoring import score_cloze_items

        rows = score_cloze_items(model, tokenizer, items, fmts, prompts, max_len, batch_size)
    else:
        rows = score_items(model, tokenizer, items, fmts, prompts, max_len, batch_size)
    for row in rows:
        row["scoring"] = scoring
        row.update(labels or {})
    summary = summarize(rows)
    summary.update(
        **source,
        data=str(data),
        formats=[f.name for f in fmts],
        system_prompts={p.name: p.text for p in prompts},
        scoring=SCORING_METHODS[scoring],
        scoring_method=scoring,
        labels=labels or {},
        code=code_version(),
        **({"max_new_tokens": max_new_tokens} if scoring == "generate" else {}),
    )
    if is_rank0():
        write_results(Path(out_dir), rows, summary)
    return summary
