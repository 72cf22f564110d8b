"""Sequence packing for SFT: several conversations in one training sequence, none attending across a boundary.

    from megatron_alignpt.posttrain.packing import pack_documents
    samples = pack_documents([(ids, loss_mask), ...], seq_length=2048, pad_id=eod, algorithm="first_fit")

A conversation rendered to ``ids`` (starting with its BOS) occupies ``len(ids) - 1`` positions of a
packed row: its inputs ``ids[:-1]`` and labels ``ids[1:]``, exactly what it would train on alone, so
packing changes the batch layout and nothing else. Each packed sample carries

- ``tokens`` / ``labels`` / ``loss_mask`` [s]: the conversations back to back, then padding (no loss);
- ``position_ids`` [s]: restarting at 0 for every conversation (and for the padding tail);
- ``segment_ids`` [s]: 0, 1, ... per conversation, the padding tail its own segment.

From ``segment_ids`` the forward step builds what the attention implementation takes (`model_inputs`):
- ``mask``: a block-diagonal causal ``attention_mask`` [b, 1, s, s] (True = masked, megatron's
  convention) passed through megatron's GPTModel to the core attention; used with the SDPA spec (CPU
  and GPU) and megatron's local spec, which honour explicit masks;
- ``thd``: megatron's `PackedSeqParams` (qkv_format ``thd``, ``cu_seqlens`` over the micro-batch's rows
  flattened into one [1, b*s] row), the layout Transformer Engine's fused attention takes; megatron then
  also restarts rotary positions at every ``cu_seqlens`` boundary. The SDPA spec implements ``thd`` too
  (`model.sdpa_attention`), which is how CPU tests cover this path; with the TE spec it runs only on GPU
  and is not exercised by the CPU test suite.

Rotary embeddings are relative, so in the ``mask`` form the absolute rotary positions (megatron's GPTModel
derives them from the row, not from ``position_ids``) give the same attention scores within a
conversation as restarted ones; the tests check that each packed conversation's logits equal its logits
alone.

Packing algorithms (`SFTConfig.packing`):
- ``first_fit``: first-fit decreasing: longest conversations first, each into the first row with room
  (a max-segment-tree finds that row in O(log rows)); the densest packing, order not preserved.
- ``greedy``: next-fit in data order: fill the current row, start a new one when the next conversation
  does not fit; keeps the data order, slightly less dense.
Conversations longer than the sequence are truncated (as without packing) and fill a row alone.
Rows are built once; every epoch reshuffles the rows (`sequences.EpochShuffled`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

ALGORITHMS = ("first_fit", "greedy")
FORM_MASK = "mask"
FORM_THD = "thd"


def positions_used(num_ids: int, seq_length: int) -> int:
    """Positions a conversation of ``num_ids`` tokens (BOS included) takes in a row of ``seq_length``."""
    return max(min(num_ids, seq_length + 1) - 1, 0)


class _MaxTree:
    """Remaining room per row in a segment tree: the leftmost row with room >= n in O(log rows)."""

    def __init__(self, rows: int, capacity: int):
        self.size = 1
        while self.size < rows:
            self.size *= 2
        self.tree = [0] * (2 * self.size)
        for i in range(rows):
            self.tree[self.size + i] = capacity
        for i in range(self.size - 1, 0, -1):
            self.tree[i] = max(self.tree[2 * i], self.tree[2 * i + 1])

    def first_with_room(self, need: int) -> int:
        node = 1
        while node < self.size:
            node = 2 * node if self.tree[2 * node] >= need else 2 * node + 1
        return node - self.size

    def take(self, row: int, amount: int) -> None:
        node = self.size + row
        self.tree[node] -= amount
        node //= 2
        while node:
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])
            node //= 2


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into rows of at most ``capacity``: longest first, first row with room."""
    _check_lengths(lengths, capacity)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    tree = _MaxTree(max(len(lengths), 1), capacity)
    rows: list[list[int]] = []
    for i in order:
        row = tree.first_with_room(lengths[i])
        if row == len(rows):
            rows.append([])
        rows[row].append(i)
        tree.take(row, lengths[i])
    return rows


def greedy_in_order(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices grouped in data order: a new row whenever the next length does not fit (next-fit)."""
    _check_lengths(lengths, capacity)
    rows: list[list[int]] = []
    room = 0
    for i, n in enumerate(lengths):
        if not rows or n > room:
            rows.append([])
            room = capacity
        rows[-1].append(i)
        room -= n
    return rows


def _check_lengths(lengths: Sequence[int], capacity: int) -> None:
    if capacity < 1:
        raise ValueError(f"row capacity must be >= 1, got {capacity}")
    bad = next((i for i, n in enumerate(lengths) if not 0 < n <= capacity), None)
    if bad is not None:
        raise ValueError(f"item {bad} has length {lengths[bad]}; packing needs 0 < length <= {capacity}")


@dataclass(frozen=True)
class PackingStats:
    conversations: int
    rows: int
    fill: float
    """Share of row positions holding conversation tokens (the rest is padding)."""


def pack_documents(
    docs: Sequence[tuple[list[int], list[int]]], seq_length: int, pad_id: int, algorithm: str = "first_fit"
) -> tuple[list[dict[str, torch.Tensor]], PackingStats]:
    """(ids, loss mask) per conversation -> packed samples (see module doc) and packing statistics."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown packing algorithm {algorithm!r}; use one of {ALGORITHMS}")
    kept = [(ids[: seq_length + 1], mask[: seq_length + 1]) for ids, mask in docs if positions_used(len(ids), seq_length) > 0]
    lengths = [len(ids) - 1 for ids, _ in kept]
    rows = (first_fit_decreasing if algorithm == "first_fit" else greedy_in_order)(lengths, seq_length)
    samples = [_pack_row([kept[i] for i in row], seq_length, pad_id) for row in rows]
    fill = sum(lengths) / max(len(rows) * seq_length, 1)
    return samples, PackingStats(conversations=len(kept), rows=len(rows), fill=fill)


def _pack_row(docs: list[tuple[list[int], list[int]]], seq_length: int, pad_id: int) -> dict[str, torch.Tensor]:
    tokens, labels, loss, positions, segments = [], [], [], [], []
    for seg, (ids, mask) in enumerate(docs):
        n = len(ids) - 1
        tokens += ids[:-1]
        labels += ids[1:]
        loss += mask[1:]
        positions += range(n)
        segments += [seg] * n
    pad = seq_length - len(tokens)
    return {
        "tokens": torch.tensor(tokens + [pad_id] * pad, dtype=torch.long),
        "labels": torch.tensor(labels + [pad_id] * pad, dtype=torch.long),
        "loss_mask": torch.tensor(loss + [0] * pad, dtype=torch.float),
        "position_ids": torch.tensor(positions + list(range(pad)), dtype=torch.long),
        "segment_ids": torch.tensor(segments + [len(docs)] * pad, dtype=torch.long),
    }


def cu_seqlens_from_segments(segment_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """[b, s] segment ids -> (int32 cumulative lengths of every segment of the rows laid end to end, max length)."""
    b, s = segment_ids.shape
    flat = segment_ids.reshape(-1)
    starts = torch.ones_like(flat, dtype=torch.bool)
    starts[1:] = flat[1:] != flat[:-1]
    starts[::s] = True  # every row starts a segment, even if ids repeat across rows
    bounds = torch.nonzero(starts).flatten()
    cu = torch.cat([bounds, torch.tensor([b * s], device=bounds.device)]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


def attention_form(model) -> str:
    """``mask`` when the model's core attention honours explicit masks (SDPA, megatron local), else ``thd`` (TE)."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    from megatron_alignpt.model.sdpa_attention import SDPACoreAttention

    for module in model.modules():
        if isinstance(module, (SDPACoreAttention, DotProductAttention)):
            return FORM_MASK
    return FORM_THD


def check_packed_layout(form: str, micro_batch_size: int) -> None:
    """Refuse parallel layouts packing does not implement, naming the setting to change."""
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        return
    if parallel_state.get_context_parallel_world_size() > 1:
        raise ValueError("sft.packing with context parallelism is not implemented (the thd batch would need "
                         "splitting per context-parallel rank); use parallel.context_parallel=1 or sft.packing=none")
    if form == FORM_THD and micro_batch_size > 1 and parallel_state.get_pipeline_model_parallel_world_size() > 1:
        raise ValueError("packed SFT in the thd layout under pipeline parallelism sends [b*s, 1, h] activations; "
                         "use schedule.micro_batch_size=1 (rows are already packed) or pipeline_parallel=1")


@dataclass
class ModelInputs:
    """Arguments for ``model(tokens, position_ids, attention_mask, labels=..., packed_seq_params=...)``."""

    tokens: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: Optional[torch.Tensor]
    labels: torch.Tensor
    loss_mask: torch.Tensor
    packed_seq_params: object = None

    def run(self, model) -> torch.Tensor:
        """Per-token loss, shaped like ``loss_mask``."""
        kwargs = {"packed_seq_params": self.packed_seq_params} if self.packed_seq_params is not None else {}
        return model(self.tokens, self.position_ids, self.attention_mask, labels=self.labels, **kwargs)


def model_inputs(batch: dict[str, torch.Tensor], form: str) -> ModelInputs:
    """A packed micro-batch (with ``segment_ids``) as inputs for the given attention form."""
    from megatron_alignpt.model.sdpa_attention import block_causal_mask

    if form == FORM_MASK:
        mask = block_causal_mask(batch["segment_ids"])[:, None]
        return ModelInputs(batch["tokens"], batch["position_ids"], mask, batch["labels"], batch["loss_mask"])
    if form != FORM_THD:
        raise ValueError(f"unknown packed attention form {form!r}; use {FORM_MASK} or {FORM_THD}")
    from megatron.core.packed_seq_params import PackedSeqParams

    cu, longest = cu_seqlens_from_segments(batch["segment_ids"])
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=longest, max_seqlen_kv=longest)
    flat = {k: batch[k].reshape(1, -1) for k in ("tokens", "position_ids", "labels", "loss_mask")}
    return ModelInputs(flat["tokens"], flat["position_ids"], None, flat["labels"], flat["loss_mask"], params)
