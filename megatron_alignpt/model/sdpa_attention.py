"""Core attention through `torch.nn.functional.scaled_dot_product_attention`.

megatron-core's local `DotProductAttention` allocates a CUDA buffer, so CPU runs swap the
layer spec's `core_attention` for this module (specs are megatron's extension point).
On GPU, SDPA dispatches to flash / memory-efficient kernels, so it also serves as the
non-TE fast path. Shapes: q/k/v arrive as [s, b, heads, head_dim]; output is
[s, b, heads * head_dim], the layout megatron's `SelfAttention` expects back.

Packed sequences (several documents in one row, none attending across a boundary) arrive in one
of two ways, both supported:
- an explicit ``attention_mask`` [b, 1, s, s] (True = masked, megatron's convention) that is
  block-diagonal and causal; any spec that honours masks (this one, megatron's local attention)
  takes it;
- megatron's ``PackedSeqParams`` in the ``thd`` layout (what Transformer Engine's kernels take):
  q/k/v arrive as [t, heads, head_dim] with ``cu_seqlens_q`` marking the documents, and the
  output is [t, 1, heads * head_dim]. Here the documents become a block-diagonal causal mask
  over one row, so CPU runs exercise the same `PackedSeqParams` path as GPU runs.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig


class SDPACoreAttention(MegatronModule):
    """Causal (or explicitly masked) attention over one tensor-parallel shard of heads."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str = "self",
        attention_dropout: Optional[float] = None,
        softmax_scale: Optional[float] = None,
        cp_comm_type: Optional[str] = None,
        pg_collection=None,
        **kwargs,
    ):
        super().__init__(config=config)
        if config.context_parallel_size > 1:
            raise ValueError("SDPA core attention does not support context parallelism; use the TE spec")
        self.attn_mask_type = attn_mask_type
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout
        head_dim = config.kv_channels
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(head_dim)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        attn_mask_type: Optional[AttnMaskType] = None,
        attention_bias=None,
        packed_seq_params=None,
        **kwargs,
    ) -> torch.Tensor:
        if packed_seq_params is not None and packed_seq_params.qkv_format == "thd":
            return self._packed_thd(query, key, value, packed_seq_params)
        if packed_seq_params is not None:
            raise ValueError(f"SDPA attention supports packed sequences only in the thd layout, got {packed_seq_params.qkv_format!r}")
        return self._attend(query, key, value, attention_mask, attn_mask_type)

    def _packed_thd(self, query, key, value, params) -> torch.Tensor:
        """[t, heads, dim] q/k/v with document boundaries in cu_seqlens -> [t, 1, heads * dim]."""
        cu_q, cu_kv = params.cu_seqlens_q, params.cu_seqlens_kv
        if cu_q is None or (cu_kv is not None and not torch.equal(cu_q, cu_kv)):
            raise ValueError("thd self-attention needs cu_seqlens_q equal to cu_seqlens_kv")
        padded = params.cu_seqlens_q_padded
        if padded is not None and not torch.equal(padded, cu_q):
            raise ValueError("SDPA attention does not support padded thd sequences (cu_seqlens_q_padded != cu_seqlens_q)")
        total = query.shape[0]
        if int(cu_q[-1]) != total:
            raise ValueError(f"cu_seqlens_q ends at {int(cu_q[-1])} but the packed tensor has {total} tokens")
        mask = block_causal_mask(segment_ids_from_cu_seqlens(cu_q, total))[None, None]
        return self._attend(query[:, None], key[:, None], value[:, None], mask, AttnMaskType.causal)

    def _attend(self, query, key, value, attention_mask, attn_mask_type) -> torch.Tensor:
        seq_q, batch, heads, head_dim = query.shape
        if key.shape[2] != heads:  # grouped-query attention: expand kv heads
            repeat = heads // key.shape[2]
            key = key.repeat_interleave(repeat, dim=2)
            value = value.repeat_interleave(repeat, dim=2)
        q_bhsd, k_bhsd, v_bhsd = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        # megatron marks positions to drop with True; SDPA keeps positions marked True.
        sdpa_mask = None if attention_mask is None else ~attention_mask
        is_causal = sdpa_mask is None and mask_type == AttnMaskType.causal
        out_bhsd = F.scaled_dot_product_attention(
            q_bhsd,
            k_bhsd,
            v_bhsd,
            attn_mask=sdpa_mask,
            dropout_p=self.dropout_p if self.training else 0.0,
            is_causal=is_causal,
            scale=self.softmax_scale,
        )
        return out_bhsd.permute(2, 0, 1, 3).reshape(seq_q, batch, heads * head_dim)


def segment_ids_from_cu_seqlens(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """[total] document index of every packed position, from cumulative lengths [n_docs + 1]."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    return torch.repeat_interleave(torch.arange(len(lengths), device=cu_seqlens.device), lengths, output_size=total)


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Megatron-convention mask (True = masked) that lets a position see only earlier positions of its own
    document. segment_ids: [..., s] -> [..., s, s]."""
    s = segment_ids.shape[-1]
    same = segment_ids[..., :, None] == segment_ids[..., None, :]
    causal = torch.ones(s, s, dtype=torch.bool, device=segment_ids.device).tril()
    return ~(same & causal)
