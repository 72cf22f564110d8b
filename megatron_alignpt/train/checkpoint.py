"""torch_dist checkpoints through megatron.core.dist_checkpointing.

Layout of a stage's checkpoint root:
    checkpoints/iter_0000100/     dist checkpoint (model, optimizer, scheduler, train state)
                                  + model.json and tokenizer.json, so the directory is self-contained
    checkpoints/latest.txt        the newest complete iteration
Model weights are saved under megatron's global parameter keys (layers numbered across pipeline
stages), so a checkpoint written with one TP/PP/virtual-pipeline layout loads into any other:
a pipeline rank saves and loads only its own stages' layers. With virtual pipeline stages each
model chunk sits under `model0`, `model1`, ... (megatron-LM's convention), otherwise under `model`.
The optimizer is megatron's; with the distributed optimizer its state is stored in the sharding
format `parallel.distributed_optimizer_checkpoint` names (fully_reshardable by default: every
parameter's fp32 copy and Adam moments in the parameter's own shape, so the checkpoint reloads at any
TP/PP/DP). The format is recorded as the checkpoint's content metadata and read back on load, so a
run resumes a checkpoint in whatever format it was written.
Each checkpoint is written under a temporary name and renamed when complete, so a crash
mid-save never leaves a directory that looks finished; `latest.txt` is replaced atomically.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch.distributed as dist
from megatron.core import dist_checkpointing

from data_prep.atomic import atomic_write_json, atomic_write_text
from megatron_alignpt.config_base import to_dict
from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.runtime import barrier, is_rank0
from megatron_alignpt.train.run_dir import CHECKPOINTS, LATEST  # noqa: F401 (LATEST: also imported from here)
MODEL_META = "model.json"
TOKENIZER = "tokenizer.json"


@dataclass
class TrainState:
    iteration: int = 0
    consumed_samples: int = 0


def iteration_dir(root: Path, iteration: int) -> Path:
    return root / f"iter_{iteration:07d}"


def latest_checkpoint(root: Path) -> Optional[Path]:
    """The newest complete checkpoint under `root`, or None."""
    from megatron_alignpt.train.checkpoint_integrity import read_latest

    marker = root / LATEST
    if not marker.is_file():
        return None
    path = iteration_dir(root, read_latest(root))
    if not path.is_dir():
        raise FileNotFoundError(f"{marker} names {path.name}, which does not exist; remove {marker} to start over")
    return path


def resolve_checkpoint(path: Path) -> Path:
    """Accept a checkpoint dir, a checkpoint root (with latest.txt) or a stage dir (with checkpoints/)."""
    from megatron_alignpt.train.checkpoint_integrity import verify_checkpoint

    path = Path(path)
    if (path / MODEL_META).is_file():
        return verify_checkpoint(path)
    for root in (path, path / CHECKPOINTS):
        found = latest_checkpoint(root) if root.is_dir() else None
        if found is not None:
            return verify_checkpoint(found)
    raise FileNotFoundError(f"no checkpoint found at {path} (expected {MODEL_META}, {LATEST} or checkpoints/{LATEST})")


def read_model_meta(ckpt: Path) -> tuple[ModelConfig, Path]:
    """The model config and tokenizer saved beside a checkpoint."""
    from megatron_alignpt.config_base import from_dict

    meta = json.loads((ckpt / MODEL_META).read_text())
    return from_dict(ModelConfig, meta["model"], where=str(ckpt / MODEL_META)), ckpt / TOKENIZER


def _chunks(model) -> list:
    return list(model) if isinstance(model, (list, tuple)) else [model]


def sharding_metadata(parallel: ParallelConfig) -> dict:
    """megatron's `sharded_state_dict` metadata for this layout, saved as the checkpoint's content metadata."""
    return {
        "distrib_optim_sharding_type": parallel.distributed_optimizer_checkpoint,
        "distributed_optimizer": parallel.distributed_optimizer,
        # one optimizer (no chained_N. prefix on its keys) and plain, not singleton, local shards
        "chained_optim_avoid_prefix": True,
        "singleton_local_shards": False,
    }


def _model_sharded_state(model, metadata: Optional[dict] = None) -> dict:
    chunks = _chunks(model)
    if len(chunks) == 1:
        return {"model": chunks[0].sharded_state_dict(metadata=metadata)}
    return {f"model{i}": chunk.sharded_state_dict(metadata=metadata) for i, chunk in enumerate(chunks)}


def _load_model_state(model, loaded: dict) -> None:
    chunks = _chunks(model)
    if len(chunks) == 1:
        chunks[0].load_state_dict(loaded["model"])
        return
    for i, chunk in enumerate(chunks):
        chunk.load_state_dict(loaded[f"model{i}"])


def _sharded_state(model, optimizer, scheduler, state: TrainState, is_loading: bool, metadata: dict) -> dict:
    sd = _model_sharded_state(model, metadata)
    model_sd = dict(sd)
    sd["train_state"] = {"iteration": state.iteration, "consumed_samples": state.consumed_samples}
    if optimizer is not None:
        sd["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=is_loading, metadata=metadata)
    if scheduler is not None:
        sd["scheduler"] = scheduler.state_dict()
    return sd


def save_checkpoint(
    root: Path, model, optimizer, scheduler, state: TrainState, model_cfg: ModelConfig, tokenizer_path: Path,
    parallel: Optional[ParallelConfig] = None,
) -> Path:
    """Save `model` (one module or this rank's list of chunks), optimizer, scheduler and train state."""
    metadata = sharding_metadata(parallel or ParallelConfig())
    final = iteration_dir(root, state.iteration)
    tmp = root / f".{final.name}.tmp"
    if is_rank0():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    sharded = _sharded_state(model, optimizer, scheduler, state, is_loading=False, metadata=metadata)
    dist_checkpointing.save(sharded, str(tmp), content_metadata=metadata)
    barrier()
    if is_rank0():
        atomic_write_json(tmp / MODEL_META, {"model": to_dict(model_cfg), "iteration": state.iteration})
        shutil.copyfile(tokenizer_path, tmp / TOKENIZER)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        atomic_write_text(root / LATEST, f"{state.iteration}\n")
    barrier()
    return final


def saved_metadata(ckpt: Path) -> dict:
    """The content metadata a checkpoint was saved with (empty for checkpoints written without any)."""
    return dist_checkpointing.load_content_metadata(str(ckpt)) or {}


def load_checkpoint(ckpt: Path, model, optimizer=None, scheduler=None, parallel: Optional[ParallelConfig] = None) -> TrainState:
    """Load into `model` (one module or a list of chunks) and optimizer/scheduler when given;
    resharding to this run's TP/PP/DP layout happens here."""
    parallel = parallel or ParallelConfig()
    metadata = {**sharding_metadata(parallel), **saved_metadata(ckpt)}
    if optimizer is not None and metadata["distributed_optimizer"] != parallel.distributed_optimizer:
        raise ValueError(
            f"{ckpt} holds {'distributed' if metadata['distributed_optimizer'] else 'unsharded'} optimizer state and "
            f"this run sets parallel.distributed_optimizer={str(parallel.distributed_optimizer).lower()}; resume with "
            "the setting it was saved with, or start a new stage from it (init_from) to change it")
    template = _sharded_state(model, optimizer, scheduler, TrainState(), is_loading=True, metadata=metadata)
    loaded = dist_checkpointing.load(template, str(ckpt))
    _load_model_state(model, loaded)
    if optimizer is not None:
        optimizer.load_state_dict(loaded["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(loaded["scheduler"])
    ts = loaded["train_state"]
    return TrainState(iteration=int(ts["iteration"]), consumed_samples=int(ts["consumed_samples"]))


def load_weights(ckpt: Path, model) -> None:
    """Weights only (one module or a list of chunks): the start of a new stage (fresh optimizer,
    refreshed LR), at any parallel layout."""
    loaded = dist_checkpointing.load(_model_sharded_state(model), str(ckpt))
    _load_model_state(model, loaded)
