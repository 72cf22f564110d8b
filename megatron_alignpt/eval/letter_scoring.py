"""Log-probabilities of answer continuations (" A", " B") under a megatron GPTModel (base-model scoring).

When every continuation is one token (the usual case, e.g. GPT-NeoX's BPE), one forward pass per
prompt reads all of them from the next-token distribution. Otherwise each prompt+continuation is
scored as its own sequence and the continuation tokens' log-probabilities are summed.
Sequences are batched by length and right-padded; each row is read only at its own positions, so
padding never enters a causal context. Logits are gathered across tensor-parallel ranks before
the log-softmax, so scores do not depend on the TP size.

Only the next-token distribution at each row's last position is needed on the single-token path
(and by generation), so `last_position_logits` narrows the output layer's input to those positions:
the vocabulary projection then costs one position per row instead of the whole sequence (on the
tiny CPU model it was about 40% of the eval's time). Models without megatron's output layer (the
HF adapter) and sequence-parallel models keep the full projection.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np
import torch
from megatron.core import tensor_parallel

from megatron_alignpt.runtime import device


def _output_layer(model) -> Optional[torch.nn.Module]:
    """megatron's output ColumnParallelLinear of a GPTModel (through DDP / Float16 wrappers), or None."""
    seen = model
    for _ in range(4):
        layer = getattr(seen, "output_layer", None)
        if isinstance(layer, torch.nn.Module):
            return None if getattr(layer, "sequence_parallel", False) else layer
        seen = getattr(seen, "module", None)
        if seen is None:
            return None
    return None


@contextmanager
def last_position_logits(model, positions: torch.Tensor) -> Iterator[bool]:
    """Within the block, ``model(tokens[b, s], ...)`` returns logits [b, 1, V/tp] at ``positions[r]`` of each row r,
    or [b, k, V/tp] at ``positions[r, :]`` when ``positions`` is [b, k] (a continuation's span).

    Yields False (and changes nothing) when the model has no narrowable output layer; the caller then
    reads the full [b, s, V/tp] logits at ``positions``.
    """
    layer = _output_layer(model)
    if layer is None:
        yield False
        return
    picks = positions if positions.dim() == 2 else positions.unsqueeze(1)  # [b, k]

    def narrow(module, args, kwargs):
        hidden = args[0]  # [s, b, h]
        rows = torch.arange(hidden.shape[1], device=hidden.device)
        return (hidden[picks.to(hidden.device).T, rows.unsqueeze(0)], *args[1:]), kwargs  # [k, b, h]

    handle = layer.register_forward_pre_hook(narrow, with_kwargs=True)
    try:
        yield True
    finally:
        handle.remove()


def next_token_logits(model, tokens: torch.Tensor, lengths: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[b, V] logits of the token after each right-padded row's last real token (TP-gathered, tokenizer vocab)."""
    width = tokens.shape[1]
    positions = torch.arange(width, device=tokens.device).unsqueeze(0).expand(tokens.shape[0], -1)
    last = (lengths - 1).to(tokens.device)
    with last_position_logits(model, last) as narrowed:
        logits = tensor_parallel.gather_from_tensor_model_parallel_region(model(tokens, positions, None))[..., :vocab_size]
    if narrowed:
        return logits[:, 0]
    return logits[torch.arange(tokens.shape[0], device=logits.device), last]


def _right_padded(seqs: list[list[int]], rows: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(seqs[i]) for i in rows], dtype=torch.long)
    tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for r, i in enumerate(rows):
        tokens[r, : len(seqs[i])] = torch.tensor(seqs[i])
    return tokens.to(device()), lengths


def _next_token_logprobs(model, seqs: list[list[int]], pad_id: int, batch_size: int, candidates: list[int], vocab_size: int) -> np.ndarray:
    """[n, len(candidates)] log p(candidate | seq) from the next-token distribution after each sequence."""
    out = np.zeros((len(seqs), len(candidates)), dtype=np.float64)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    cand = torch.tensor(candidates, device=device())
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens, lengths = _right_padded(seqs, rows, pad_id)
        logits = next_token_logits(model, tokens, lengths, vocab_size)
        out[rows] = torch.log_softmax(logits.float(), dim=-1)[:, cand].double().cpu().numpy()
    return out


def _batched_logprobs(model, seqs: list[list[int]], pad_id: int, batch_size: int, reader, vocab_size: int) -> list:
    """Run `model` over right-padded batches; reader(i, logits_row[len(seq_i), V]) -> value for sequence i.

    Logits are cut to the tokenizer's vocabulary: the embedding's padding rows (to a multiple of 128)
    are not tokens and must not take probability mass.
    """
    out: list = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens, _ = _right_padded(seqs, rows, pad_id)
        positions = torch.arange(tokens.shape[1], device=device()).unsqueeze(0).expand(len(rows), -1)
        logits = tensor_parallel.gather_from_tensor_model_parallel_region(model(tokens, positions, None))[..., :vocab_size]
        for r, i in enumerate(rows):
            out[i] = reader(i, logits[r, : len(seqs[i])])
    return out


@torch.no_grad()
def continuation_logprobs(
    model, tokenizer, prompts: list[str], continuations: tuple[str, ...], max_len: int, batch_size: int = 32
) -> np.ndarray:
    """[n_prompts, n_continuations] log p(continuation | prompt)."""
    model.eval()
    prompt_ids = tokenizer.tokenize_batch(prompts)
    cont_ids = [tokenizer.tokenize(c) for c in continuations]
    if all(len(c) == 1 for c in cont_ids):
        seqs = [ids[-max_len:] for ids in prompt_ids]  # keep the end: the question and the cue
        return _next_token_logprobs(model, seqs, tokenizer.eod, batch_size, [c[0] for c in cont_ids], tokenizer.vocab_size)

    seqs, spans = [], []
    for ids in prompt_ids:
        for cont in cont_ids:
            full = (ids + cont)[-max_len:]
            seqs.append(full)
            spans.append(len(cont))

    def read_span(i, logits):
        n = spans[i]
        logp = torch.log_softmax(logits[-n - 1 : -1].float(), dim=-1)
        targets = torch.tensor(seqs[i][-n:], device=logp.device)
        return logp.gather(1, targets[:, None]).sum().item()

    scores = _batched_logprobs(model, seqs, tokenizer.eod, batch_size, read_span, tokenizer.vocab_size)
    return np.array(scores, dtype=np.float64).reshape(len(prompts), len(continuations))


@torch.no_grad()
def paired_continuation_logprobs(
    model, tokenizer, prompts: list[str], continuations: list[str], max_len: int, batch_size: int = 32
) -> list[tuple[float, int]]:
    """(log p(continuations[i] | prompts[i]) summed over its tokens, its number of tokens) for each i.

    Each prompt has its own continuation (cloze scoring: an option's text). A sequence longer than
    ``max_len`` keeps its end: the whole continuation and the end of the prompt. Only the continuation's
    span reaches the output layer (`last_position_logits` with [b, k] positions).
    """
    model.eval()
    seqs, spans = [], []
    for i, (p, c) in enumerate(zip(tokenizer.tokenize_batch(prompts), tokenizer.tokenize_batch(continuations))):
        if not c or len(c) >= max_len:  # a cut continuation would be scored on part of its tokens
            raise ValueError(f"continuation {i} has {len(c)} tokens; it must have 1 to {max_len - 1} "
                             f"(the model's length): {continuations[i][:80]!r}")
        full = (p + c)[-max_len:]
        seqs.append(full)
        spans.append(len(c))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens, lengths = _right_padded(seqs, rows, tokenizer.eod)
        k = max(spans[i] for i in rows)
        # positions len-1-k .. len-2 of each row predict its last k tokens (earlier ones clamp and go unread)
        picks = (lengths.unsqueeze(1) - 1 - k + torch.arange(k).unsqueeze(0)).clamp(min=0).to(tokens.device)
        positions = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0).expand(len(rows), -1)
        with last_position_logits(model, picks) as narrowed:
            logits = tensor_parallel.gather_from_tensor_model_parallel_region(model(tokens, positions, None))
        logits = logits[..., : tokenizer.vocab_size]
        if not narrowed:
            logits = logits[torch.arange(len(rows), device=logits.device).unsqueeze(1), picks]
        logp = torch.log_softmax(logits.float(), dim=-1)  # [b, k, V]
        for r, i in enumerate(rows):
            n = spans[i]
            targets = torch.tensor(seqs[i][-n:], device=logp.device)
            out[i] = (float(logp[r, k - n :].gather(1, targets[:, None]).sum().item()), n)
    return out
