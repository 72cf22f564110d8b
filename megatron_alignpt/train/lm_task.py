"""Next-token prediction over a blend manifest: the pretraining / midtraining / CPT task."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from data_prep.manifest import BlendManifest
from megatron_alignpt.data.blend import build_train_dataset
from megatron_alignpt.data.loader import default_collate
from megatron_alignpt.data.tokenizer import TextTokenizer
from megatron_alignpt.runtime import device


def masked_mean_loss(loss_mask: torch.Tensor, per_token_loss: torch.Tensor):
    """Mean loss over unmasked tokens; the schedule divides by the number of micro-batches.

    The logged value is a copy: megatron's schedule divides the returned loss in place, which
    would also scale a `detach()`ed view of it.
    """
    mask = loss_mask.float()
    loss = (per_token_loss.float() * mask).sum() / mask.sum().clamp(min=1.0)
    return loss, {"loss": loss.detach().clone()}


def to_device(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(device(), non_blocking=True) for k, v in batch.items()}


def context_parallel_slice(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This context-parallel rank's share of each sequence (megatron's load-balanced 2 x CP chunks);
    unchanged without context parallelism."""
    from megatron.core import parallel_state
    from megatron.core.utils import get_batch_on_this_cp_rank

    if not parallel_state.model_parallel_is_initialized() or parallel_state.get_context_parallel_world_size() == 1:
        return batch
    return get_batch_on_this_cp_rank(dict(batch))


class LMTask:
    """Builds the blended GPTDataset for a stage and the forward step over it."""

    def __init__(self, manifest_path: Path, tokenizer: TextTokenizer, seq_length: int, seed: int, cache_dir: Path):
        self.manifest = BlendManifest.from_json(manifest_path)
        self.tokenizer = tokenizer
        self.seq_length = seq_length
        self.seed = seed
        self.cache_dir = cache_dir

    def build_dataset(self, num_samples: int):
        return build_train_dataset(
            self.manifest, self.tokenizer, self.seq_length, num_samples, self.seed, self.cache_dir
        )

    collate = staticmethod(default_collate)

    @staticmethod
    def forward_step(data_iterator, model):
        """On every pipeline stage: the first stage embeds `tokens`, the last computes the loss
        against `labels`; stages in between ignore both and run on the received activations."""
        batch = context_parallel_slice(to_device(next(data_iterator)))
        per_token_loss = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
        return per_token_loss, partial(masked_mean_loss, batch["loss_mask"])

    def tokens_per_sample(self) -> int:
        return self.seq_length
