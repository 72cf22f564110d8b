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
