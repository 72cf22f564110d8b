"""The layout of a training stage's directory, named once; torch-free, so status and analysis read it anywhere.

    <stage dir>/config.json          the resolved StageConfig (with provenance.json: `provenance.write_provenance`)
    <stage dir>/metrics.jsonl        one line per logged step
    <stage dir>/checkpoints/         checkpoint root: iter_NNNNNNN/ + latest.txt (the newest complete one)
"""
from __future__ import annotations

from pathlib import Path

CHECKPOINTS = "checkpoints"
LATEST = "latest.txt"
METRICS = "metrics.jsonl"


def checkpoint_root(stage_dir: Path) -> Path:
    return Path(stage_dir) / CHECKPOINTS


def latest_checkpoint_file(stage_dir: Path) -> Path:
    return checkpoint_root(stage_dir) / LATEST


def metrics_file(stage_dir: Path) -> Path:
    return Path(stage_dir) / METRICS


def saved_iterations(stage_dir: Path) -> list[int]:
    """Iterations with a kept checkpoint, in order (checkpoints are written under a temporary name and renamed,
    so every ``iter_NNNNNNN`` directory is complete)."""
    root = checkpoint_root(stage_dir)
    found = (p.name[len("iter_"):] for p in root.glob("iter_*") if p.is_dir()) if root.is_dir() else ()
    return sorted(int(n) for n in found if n.isdigit())
