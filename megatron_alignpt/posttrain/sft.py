"""Supervised fine-tuning on chat data: loss on assistant tokens only (switchable), optional sequence packing.

With ``sft.packing`` = ``first_fit`` or ``greedy`` several conversations share one training sequence,
each attending only to itself (block-diagonal causal attention, positions restarting per conversation;
see `posttrain.packing`). The loss is the mean over the micro-batch's trained tokens either way, so a
batch of conversations gives the same loss packed or not.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

from megatron_alignpt.data.loader import default_collate
from megatron_alignpt.data.tokenizer import TextTokenizer
from megatron_alignpt.posttrain.chat_format import read_conversations, render_turns
from megatron_alignpt.posttrain.packing import attention_form, check_packed_layout, model_inputs, pack_documents
from megatron_alignpt.posttrain.sequences import EpochShuffled, shift_and_pad
from megatron_alignpt.runtime import is_rank0
from megatron_alignpt.posttrain.config import SFTConfig
from megatron_alignpt.train.lm_task import LMTask, masked_mean_loss, to_device


class SFTTask:
    def __init__(self, data: Path, tokenizer: TextTokenizer, seq_length: int, seed: int, cfg: SFTConfig):
        self.tokenizer = tokenizer
        self.seq_length = seq_length
        self.seed = seed
        self.packed = cfg.packing != "none"
        self._form: Optional[str] = None
        rendered = [render_turns(tokenizer, turns, cfg.assistant_only_loss) for turns in read_conversations(data)]
        if self.packed:
            self.samples, self.packing_stats = pack_documents(rendered, seq_length, tokenizer.eod, cfg.packing)
            if is_rank0():
                s = self.packing_stats
                print(f"[sft] packed {s.conversations} conversations into {s.rows} sequences of {seq_length} "
                      f"tokens ({cfg.packing}, {100 * s.fill:.1f}% filled)", flush=True)
        else:
            self.samples = [shift_and_pad(ids, mask, seq_length, tokenizer.eod) for ids, mask in rendered]
        if not any(float(s["loss_mask"].sum()) > 0 for s in self.samples):
            raise ValueError(f"{data}: no trainable tokens after truncation to seq_length={seq_length}")

    def build_dataset(self, num_samples: int):
        return EpochShuffled(self.samples, self.seed)

    collate = staticmethod(default_collate)

    def forward_step(self, data_iterator, model):
        if not self.packed:
            return LMTask.forward_step(data_iterator, model)
        batch = to_device(next(data_iterator))
        if self._form is None:
            self._form = attention_form(model)
            check_packed_layout(self._form, batch["tokens"].shape[0])
        inputs = model_inputs(batch, self._form)
        return inputs.run(model), partial(masked_mean_loss, inputs.loss_mask)

    def tokens_per_sample(self) -> int:
        return self.seq_length
