"""Autoregressive text generation with a megatron GPTModel (greedy, or temperature / top-p sampling).

Used by chat-model scoring (`eval.chat_scoring`) and lm-eval's ``generate_until``
(`eval.lm_eval_model`). The model is called exactly as the scorer calls it,
``model(tokens[b, s], position_ids[b, s], None) -> logits[b, s, V / tp]``, so an HF model behind
`convert.hf_eval.HFCausalLMAdapter` works too.

How it works:
- Prompts are sorted by length and generated in batches.
- **KV cache** (``kv_cache``; the default for megatron GPTModels whose prompts and replies fit in
  ``max_len``): megatron-core's `StaticInferenceContext` keeps every layer's keys and values, so each
  step runs the model over one new token per row. The batch is prefilled up to its shortest prompt;
  after that every row advances one position per step, taking its next *prompt* token while it still
  has one and the chosen token afterwards (megatron's static-batching scheme), so rows of different
  lengths share a batch without padding inside any context. Finished rows are dropped from the cache.
  A row whose prompt is longer than the batch's shortest costs one single-token step per extra prompt
  token, so cached batches also end where the prompt lengths spread by more than half of
  ``max_new_tokens`` (length-sorted prompts of a large eval rarely differ that much within a batch).
- Without the cache (models without megatron's attention, e.g. the HF adapter, or contexts that would
  outgrow ``max_len`` and must slide), every step re-runs the model over each active row's whole
  context (prompt + tokens so far), right-padded to the longest row, and reads row ``r``'s next-token
  logits at its own last position (`letter_scoring.next_token_logits`, which projects only that
  position onto the vocabulary). Attention is causal, so the padding after a row never enters its context.
- Both paths give the same greedy tokens (tests compare them); with sampling they draw from the same
  distributions but consume the seeded generator in a different order, so sampled texts differ.
- A row stops at the end-of-text token (the chat template's end of an assistant turn), at the
  first stop string in its decoded text (the text is cut before it), or after ``max_new_tokens``.
  Finished rows leave the batch. Contexts longer than ``max_len`` keep their last ``max_len`` tokens.
- Tensor parallelism: logits are gathered across the TP group before choosing a token, cut to the
  tokenizer's vocabulary (the embedding's padding rows are not tokens), and the chosen tokens are
  broadcast from the group's first rank, so every rank continues with the same tokens and runs the
  same number of steps (the collectives stay matched). Sampling uses a generator seeded from
  ``seed`` on every rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from megatron.core import parallel_state

from megatron_alignpt.eval.letter_scoring import next_token_logits
from megatron_alignpt.runtime import device

FINISH_EOD = "eod"
FINISH_STOP = "stop"
FINISH_LENGTH = "length"


@dataclass(frozen=True)
class Generation:
    """One generated continuation: its tokens (stop token excluded), text and why it ended."""

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str
    """``eod`` (end-of-text token), ``stop`` (a stop string; ``text`` ends before it) or ``length``."""


def _tp_world_size() -> int:
    if not parallel_state.model_parallel_is_initialized():
        return 1
    return parallel_state.get_tensor_model_parallel_world_size()


def _broadcast_from_tp_src(tokens: torch.Tensor) -> torch.Tensor:
    """Make every TP rank continue with the first rank's choice."""
    if _tp_world_size() > 1:
        torch.distributed.broadcast(
            tokens,
            src=parallel_state.get_tensor_model_parallel_src_rank(),
            group=parallel_state.get_tensor_model_parallel_group(),
        )
    return tokens


def _choose(logits: torch.Tensor, temperature: float, top_p: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Next token per row from [n, V] logits: argmax when temperature is 0, else top-p sampling."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least the top token)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, sorted_ids, sorted_probs)
    # sample on the CPU so the same seed gives the same draws on any device
    picks = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1)
    return picks.to(logits.device)


def _cut_at_stop(text: str, stop: Sequence[str]) -> Optional[str]:
    """``text`` up to the earliest stop string, or None when none occurs."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(hits)] if hits else None


def supports_kv_cache(model) -> bool:
    """Whether ``model`` is (a wrapper of) megatron's GPTModel, whose attention keeps a static KV cache."""
    from megatron.core.models.gpt import GPTModel

    inner = model
    for _ in range(4):
        if isinstance(inner, GPTModel):
            return not inner.config.sequence_parallel
        inner = getattr(inner, "module", None)
        if inner is None:
            return False
    return False


class _Rows:
    """Per-prompt progress shared by both decoding paths: generated tokens, stop checks, results."""

    def __init__(self, tokenizer, n: int, max_new_tokens: int, stop: Sequence[str], stop_at_eod: bool):
        self.tokenizer, self.max_new_tokens, self.stop, self.stop_at_eod = tokenizer, max_new_tokens, stop, stop_at_eod
        self.outs: list[list[int]] = [[] for _ in range(n)]
        self.results: list[Optional[Generation]] = [None] * n

    def take(self, i: int, tok: int) -> bool:
        """Row i chose ``tok``; True while it goes on."""
        if self.stop_at_eod and tok == self.tokenizer.eod:
            self.results[i] = Generation(tuple(self.outs[i]), self.tokenizer.detokenize(self.outs[i]), FINISH_EOD)
            return False
        self.outs[i].append(tok)
        text = self.tokenizer.detokenize(self.outs[i])
        cut = _cut_at_stop(text, self.stop) if self.stop else None
        if cut is not None:
            self.results[i] = Generation(tuple(self.outs[i]), cut, FINISH_STOP)
            return False
        if len(self.outs[i]) >= self.max_new_tokens:
            self.results[i] = Generation(tuple(self.outs[i]), text, FINISH_LENGTH)
            return False
        return True


def _pick(logits: torch.Tensor, vocab: int, temperature: float, top_p: float, generator) -> list[int]:
    return _broadcast_from_tp_src(_choose(logits[..., :vocab], temperature, top_p, generator).to(device())).tolist()


def _generate_uncached(model, prompts, rows: list[int], state: _Rows, max_len, temperature, top_p, generator) -> None:
    vocab = state.tokenizer.vocab_size
    active = list(rows)
    for _ in range(state.max_new_tokens):
        contexts = [(prompts[i] + state.outs[i]) for i in active]
        if max_len is not None:
            contexts = [c[-max_len:] for c in contexts]
        tokens = torch.full((len(active), max(len(c) for c in contexts)), state.tokenizer.eod, dtype=torch.long)
        for r, ctx in enumerate(contexts):
            tokens[r, : len(ctx)] = torch.tensor(ctx, dtype=torch.long)
        lengths = torch.tensor([len(c) for c in contexts])
        logits = next_token_logits(model, tokens.to(device()), lengths, vocab)
        picks = _pick(logits, vocab, temperature, top_p, generator)
        active = [i for i, tok in zip(active, picks) if state.take(i, tok)]
        if not active:
            return


def _cached_forward(model, tokens: torch.Tensor, start: int, context) -> torch.Tensor:
    """Run positions [start, start + s) of every row through the model with the KV cache; [b, V] next-token logits."""
    positions = torch.arange(start, start + tokens.shape[1], device=tokens.device).unsqueeze(0).expand(tokens.shape[0], -1)
    logits = model(tokens, positions, None, inference_context=context, runtime_gather_output=True)
    context.increment_sequence_len_offset(tokens.shape[1])
    return logits[:, -1]


def _keep_cache_rows(context, keep: list[int]) -> None:
    index = torch.tensor(keep, device=device())
    for layer, (keys, values) in list(context.key_value_memory_dict.items()):
        context.key_value_memory_dict[layer] = (keys.index_select(1, index), values.index_select(1, index))


def _generate_cached(model, prompts, rows: list[int], state: _Rows, temperature, top_p, generator) -> None:
    """Static-batch decoding with megatron's KV cache (see the module doc)."""
    from megatron.core.inference.contexts import StaticInferenceContext

    vocab = state.tokenizer.vocab_size
    lengths = [len(prompts[i]) for i in rows]
    start, total = min(lengths), max(lengths) + state.max_new_tokens
    context = StaticInferenceContext(len(rows), total)
    buf = torch.full((len(rows), total), state.tokenizer.eod, dtype=torch.long)
    for r, i in enumerate(rows):
        buf[r, : lengths[r]] = torch.tensor(prompts[i], dtype=torch.long)
    buf = buf.to(device())
    logits = _cached_forward(model, buf[:, :start], 0, context)
    active = list(range(len(rows)))  # positions in `rows`, in cache order
    for t in range(start, total):
        generating = [k for k, r in enumerate(active) if lengths[r] <= t]
        next_tokens = buf[active, t].clone()
        if generating:
            picks = _pick(logits[generating], vocab, temperature, top_p, generator)
            keep = set(range(len(active)))
            for k, tok in zip(generating, picks):
                next_tokens[k] = tok
                if not state.take(rows[active[k]], tok):
                    keep.discard(k)
            if len(keep) < len(active):
                kept = sorted(keep)
                if not kept:
                    return
                _keep_cache_rows(context, kept)
                active, next_tokens, logits = [active[k] for k in kept], next_tokens[kept], logits[kept]
        buf[active, t] = next_tokens
        logits = _cached_forward(model, next_tokens[:, None], t, context)


def _batches(order: list[int], prompts, batch_size: int, spread: Optional[int]) -> list[list[int]]:
    """Length-sorted prompt indices in batches of at most batch_size, and of prompt lengths within ``spread``."""
    batches: list[list[int]] = []
    for i in order:
        if not batches or len(batches[-1]) == batch_size or (
            spread is not None and len(prompts[i]) - len(prompts[batches[-1][0]]) > spread
        ):
            batches.append([])
        batches[-1].append(i)
    return batches


@torch.no_grad()
def generate_ids(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int = 32,
    max_len: Optional[int] = None,
    stop: Sequence[str] = (),
    stop_at_eod: bool = True,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    kv_cache: Optional[bool] = None,
) -> list[Generation]:
    """Continue each prompt (token ids); one `Generation` per prompt, in input order.

    ``kv_cache``: None uses megatron's KV cache when the model supports it (`supports_kv_cache`) and a
    batch's prompts plus ``max_new_tokens`` fit in ``max_len``; True requires it; False never uses it.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start empty prompts with the end-of-text token)")
    cacheable = supports_kv_cache(model)
    if kv_cache and not cacheable:
        raise ValueError("kv_cache=True needs a megatron GPTModel without sequence parallelism")
    if max_new_tokens == 0:
        return [Generation((), "", FINISH_LENGTH) for _ in prompts]
    model.eval()
    generator = torch.Generator().manual_seed(seed) if temperature > 0.0 else None
    state = _Rows(tokenizer, len(prompts), max_new_tokens, stop, stop_at_eod)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for rows in _batches(order, prompts, batch_size, max(1, max_new_tokens // 2) if cacheable and kv_cache is not False else None):
        fits = max_len is None or max(len(prompts[i]) for i in rows) + max_new_tokens <= max_len
        if kv_cache and not fits:
            raise ValueError(f"kv_cache=True: a prompt of {max(len(prompts[i]) for i in rows)} tokens plus "
                             f"max_new_tokens={max_new_tokens} exceeds max_len={max_len}")
        if cacheable and fits and kv_cache is not False:
            _generate_cached(model, prompts, rows, state, temperature, top_p, generator)
        else:
            _generate_uncached(model, prompts, rows, state, max_len, temperature, top_p, generator)
    return state.results  # type: ignore[return-value]


def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 32,
    max_len: Optional[int] = None,
    stop: Sequence[str] = (),
    **kwargs,
) -> list[Generation]:
    """`generate_ids` for text prompts (tokenized without special tokens; an empty prompt starts at EOD)."""
    ids = [p or [tokenizer.eod] for p in tokenizer.tokenize_batch(prompts)]
    return generate_ids(model, tokenizer, ids, max_new_tokens=max_new_tokens, max_len=max_len, stop=stop, **kwargs)
