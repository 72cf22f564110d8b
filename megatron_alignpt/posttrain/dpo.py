"""Direct Preference Optimization against a frozen reference copy of the starting model.

loss = -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))))
Chosen and rejected sequences of a pair travel in one micro-batch ([chosen..., rejected...]),
and sequence log-probabilities are sums of -per_token_loss from megatron's vocab-parallel
cross entropy, so the same code runs under tensor parallelism.

Reference log-probabilities (``dpo.reference``):
- ``online``: a frozen copy of the starting checkpoint runs beside the policy on every micro-batch
  (two models in memory, one extra forward per step);
- ``cached``: computed once before training, split over the data-parallel ranks, and stored as
  ``<cache_dir>/<key>.npy`` (+ ``<key>.json`` describing it), written atomically by global rank 0.
  The key hashes the preference file, the tokenizer, every file of the reference checkpoint, the
  sequence length and the pair layout, so a changed input never reuses stale values and a resumed
  (or repeated) run reuses them without loading the reference model at all. Rank 0 reads the cache
  and broadcasts it, so only rank 0 needs to see the cache directory.

Pairs longer than the sequence: the prompt keeps its end (the question and the assistant tag) and is
cut from the left, to no less than half the sequence when the replies need the room; then replies are
cut at the end. Both replies of a pair share the same prompt tokens.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from data_prep.atomic import atomic_path, atomic_write_json, sha256_file
from megatron_alignpt.data.tokenizer import TextTokenizer
from megatron_alignpt.posttrain.chat_format import read_preferences, render_prompt
from megatron_alignpt.posttrain.sequences import EpochShuffled, shift_and_pad
from megatron_alignpt.posttrain.config import DPOConfig
from megatron_alignpt.train.lm_task import to_device

CACHE_FORMAT = 1
REFERENCE_BATCH_PAIRS = 8
"""Pairs per forward pass while filling the reference cache (2 x this many sequences)."""


def sequence_logprobs(per_token_loss: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    return -(per_token_loss.float() * loss_mask).sum(dim=-1)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-pair DPO loss plus the implicit reward margin beta * (chosen - rejected log-ratio)."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin), margin


def fit_pair(prompt: list[int], chosen: list[int], rejected: list[int], seq_length: int) -> tuple[list[int], list[int], list[int]]:
    """Cut a pair to seq_length + 1 ids per side: the prompt from the left (down to half), then the replies."""
    budget = seq_length + 1
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest <= budget:
        return prompt, chosen, rejected
    keep_prompt = max(budget - longest, min(len(prompt), budget // 2))
    room = budget - keep_prompt
    return prompt[len(prompt) - keep_prompt :], chosen[:room], rejected[:room]


def _pair_sample(tokenizer, turns, chosen: str, rejected: str, seq_length: int) -> dict[str, torch.Tensor]:
    replies = [tokenizer.tokenize(text) + [tokenizer.eod] for text in (chosen, rejected)]
    prompt, *replies = fit_pair(render_prompt(tokenizer, turns), *replies, seq_length)
    out = {}
    for name, reply_ids in zip(("chosen", "rejected"), replies):
        ids = prompt + reply_ids
        mask = [0] * len(prompt) + [1] * len(reply_ids)
        for key, value in shift_and_pad(ids, mask, seq_length, tokenizer.eod).items():
            out[f"{name}_{key}"] = value
    return out


def collate_pairs(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack chosen sequences first, then rejected: [2 x micro_batch, seq] (and cached reference log-probs [2 x micro_batch])."""
    batch = {}
    for key in ("tokens", "labels", "loss_mask", "position_ids"):
        batch[key] = torch.stack([s[f"chosen_{key}"] for s in samples] + [s[f"rejected_{key}"] for s in samples])
    if "ref_logps" in samples[0]:
        ref = torch.stack([s["ref_logps"] for s in samples])
        batch["ref_logps"] = torch.cat([ref[:, 0], ref[:, 1]])
    return batch


def frozen_reference(model_builder: Callable, init_from: Path):
    from megatron_alignpt.train import checkpoint as ckpt

    reference = model_builder()
    ckpt.load_weights(ckpt.resolve_checkpoint(init_from), reference)
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


# ---------------------------------------------------------------- reference cache


def default_cache_dir() -> Path:
    """``$ALIGNPT_CACHE_DIR/dpo_reference``, else ``~/.cache/alignpt/dpo_reference``."""
    root = os.environ.get("ALIGNPT_CACHE_DIR") or Path.home() / ".cache" / "alignpt"
    return Path(root) / "dpo_reference"


def checkpoint_fingerprint(ckpt_dir: Path) -> str:
    """sha256 over every file of a checkpoint directory (relative paths and contents)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(ckpt_dir).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(ckpt_dir)).encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return h.hexdigest()


def reference_cache_key(data: Path, tokenizer_path: Path, reference_ckpt: Path, seq_length: int) -> tuple[str, dict]:
    """(hex key, what it hashes): the inputs that determine every cached value."""
    parts = {
        "format": CACHE_FORMAT,
        "data_sha256": sha256_file(data),
        "tokenizer_sha256": sha256_file(tokenizer_path),
        "reference_sha256": checkpoint_fingerprint(reference_ckpt),
        "seq_length": seq_length,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32], parts


def _read_cache(cache_dir: Path, key: str, n_pairs: int) -> Optional[np.ndarray]:
    values, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not (values.is_file() and meta.is_file()):
        return None
    array = np.load(values)
    if array.shape != (n_pairs, 2) or json.loads(meta.read_text()).get("n_pairs") != n_pairs:
        raise ValueError(f"{values}: holds {array.shape}, expected ({n_pairs}, 2); delete it to recompute")
    return array


def _write_cache(cache_dir: Path, key: str, array: np.ndarray, meta: dict) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_dir / f"{key}.npy") as tmp, tmp.open("wb") as f:
        np.save(f, array)
    atomic_write_json(cache_dir / f"{key}.json", meta)  # last: its presence marks a complete entry


def _broadcast_object(obj):
    if not torch.distributed.is_initialized():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def compute_reference_logprobs(reference, samples: list[dict[str, torch.Tensor]], batch_pairs: int = REFERENCE_BATCH_PAIRS) -> np.ndarray:
    """[n_pairs, 2] (chosen, rejected) sequence log-probabilities under ``reference``, pairs split over
    data-parallel ranks and summed back (every rank returns the full table)."""
    from megatron.core import parallel_state

    from megatron_alignpt.runtime import device

    dp_rank = parallel_state.get_data_parallel_rank() if parallel_state.model_parallel_is_initialized() else 0
    dp_size = parallel_state.get_data_parallel_world_size() if parallel_state.model_parallel_is_initialized() else 1
    table = torch.zeros(len(samples), 2, dtype=torch.float64, device=device())
    mine = list(range(dp_rank, len(samples), dp_size))
    for start in range(0, len(mine), batch_pairs):
        idx = mine[start : start + batch_pairs]
        batch = to_device(collate_pairs([samples[i] for i in idx]))
        logps = sequence_logprobs(reference(batch["tokens"], batch["position_ids"], None, labels=batch["labels"]), batch["loss_mask"])
        table[idx, 0] = logps[: len(idx)].double()
        table[idx, 1] = logps[len(idx) :].double()
    if dp_size > 1:
        torch.distributed.all_reduce(table, group=parallel_state.get_data_parallel_group())
    return table.cpu().numpy()


def cached_reference_logprobs(
    samples: list[dict[str, torch.Tensor]], data: Path, tokenizer: TextTokenizer, seq_length: int,
    model_builder: Callable, init_from: Path, cache_dir: Optional[Path] = None,
) -> tuple[np.ndarray, Path, bool]:
    """(table [n_pairs, 2], cache file, whether it was computed now): read the cache or fill it."""
    from megatron_alignpt.runtime import is_rank0
    from megatron_alignpt.train import checkpoint as ckpt

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    reference_ckpt = ckpt.resolve_checkpoint(init_from)
    found = None
    if is_rank0():
        key, parts = reference_cache_key(Path(data), tokenizer.path, reference_ckpt, seq_length)
        found = (key, parts, _read_cache(cache_dir, key, len(samples)))
    key, parts, table = _broadcast_object(found)
    path = cache_dir / f"{key}.npy"
    if table is not None:
        return table, path, False
    reference = frozen_reference(model_builder, init_from)
    table = compute_reference_logprobs(reference, samples)
    del reference
    if is_rank0():
        meta = {**parts, "n_pairs": len(samples), "data": str(data), "reference_checkpoint": str(reference_ckpt)}
        _write_cache(cache_dir, key, table, meta)
    return table, path, True


# ---------------------------------------------------------------- task


class DPOTask:
    def __init__(self, data: Path, tokenizer: TextTokenizer, seq_length: int, seed: int, cfg: DPOConfig, model_builder,
                 init_from: Path, cache_dir: Optional[Path] = None):
        from megatron_alignpt.runtime import is_rank0

        self.beta = cfg.beta
        self.seq_length = seq_length
        self.seed = seed
        self.samples = [_pair_sample(tokenizer, t, c, r, seq_length) for t, c, r in read_preferences(data)]
        if not self.samples:
            raise ValueError(f"{data}: no preference pairs")
        self.reference = None
        if cfg.reference == "online":
            self.reference = frozen_reference(model_builder, init_from)
            return
        table, path, computed = cached_reference_logprobs(self.samples, data, tokenizer, seq_length, model_builder, init_from, cache_dir)
        for sample, row in zip(self.samples, table):
            sample["ref_logps"] = torch.tensor(row, dtype=torch.float32)
        if is_rank0():
            print(f"[dpo] reference log-probabilities {'computed and cached in' if computed else 'read from'} {path}", flush=True)

    def build_dataset(self, num_samples: int):
        return EpochShuffled(self.samples, self.seed)

    collate = staticmethod(collate_pairs)

    def tokens_per_sample(self) -> int:
        return 2 * self.seq_length

    def forward_step(self, data_iterator, model):
        batch = to_device(next(data_iterator))
        if self.reference is None:
            ref_logps = batch["ref_logps"]
        else:
            with torch.no_grad():
                ref_loss = self.reference(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
            ref_logps = sequence_logprobs(ref_loss, batch["loss_mask"])
        per_token_loss = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
        return per_token_loss, partial(self._loss, batch["loss_mask"], ref_logps)

    def _loss(self, loss_mask, ref_logps, per_token_loss):
        logps = sequence_logprobs(per_token_loss, loss_mask)
        half = logps.shape[0] // 2
        losses, margins = dpo_loss(logps[:half], logps[half:], ref_logps[:half], ref_logps[half:], self.beta)
        loss = losses.mean()
        return loss, {
            "loss": loss.detach().clone(),  # the schedule divides the returned loss in place
            "reward_margin": margins.mean().detach(),
            "reward_accuracy": (margins > 0).float().mean().detach(),
        }
