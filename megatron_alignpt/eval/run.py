"""Evaluate a checkpoint on the misalignment suite and write summary.json + items.jsonl."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from data_prep.eval_suite import load_suite
from megatron_alignpt.eval.config import SCORING_METHODS, EvalConfig
from megatron_alignpt.data.tokenizer import TextTokenizer
from megatron_alignpt.eval.formats import parse_formats, parse_system_prompts
from megatron_alignpt.eval.misalignment import score_items, summarize, write_results
from megatron_alignpt.model.builder import build_gpt_model
from megatron_alignpt.model.config import ParallelConfig
from megatron_alignpt.provenance import code_version
from megatron_alignpt.runtime import init_parallel, is_rank0
from megatron_alignpt.train import checkpoint as ckpt


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


def evaluate_misalignment(checkpoint: Path, cfg: EvalConfig, tensor_parallel: int = 1) -> dict:
    """Score a Megatron checkpoint as ``cfg`` says (generate scoring adds non-match and normalised rates)."""

    def load():
        model, tokenizer, model_cfg, path = load_model_for_eval(checkpoint, tensor_parallel)
        return model, tokenizer, model_cfg.max_positions, {"checkpoint": str(path)}

    return run_misalignment_eval(load, cfg)


def run_misalignment_eval(load_model: Callable[[], tuple], cfg: EvalConfig) -> dict:
    """Shared by every model source: `load_model()` -> (model, tokenizer, max_len, source metadata).

    The suite and format specs are parsed before the model loads, so bad input fails fast.
    """
    data, scoring, batch_size, labels, max_new_tokens = cfg.data, cfg.scoring, cfg.batch_size, cfg.labels, cfg.max_new_tokens
    items = load_suite(data, split=cfg.split)
    fmts = parse_formats(cfg.formats)
    prompts = parse_system_prompts(cfg.system_prompts)
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
        write_results(cfg.out_dir, rows, summary)
    return summary
