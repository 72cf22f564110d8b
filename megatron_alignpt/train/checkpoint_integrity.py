"""Is a checkpoint directory complete? Checked before anything is loaded from it.

A torch_dist checkpoint is complete when megatron's ``metadata.json`` and ``common.pt``, torch's
``.metadata`` (which records, for every tensor, the shard file, offset and length it was written
to), every shard file that ``.metadata`` names, at least as long as recorded, and our ``model.json``
and ``tokenizer.json`` are all present and readable. Loading a checkpoint that is not fails deep
inside torch with a bare ``EOFError`` or ``AttributeError``; checking first gives a message that
names what is missing.

Resuming takes the newest complete ``iter_*`` directory and says why when that is not the one
``latest.txt`` names (an interrupted save, a file lost since, an unreadable ``latest.txt``).
"""
from __future__ import annotations

import json
import re
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Optional

from data_prep.atomic import remove_stale_temps

MEGATRON_FILES = ("metadata.json", "common.pt", ".metadata")
_ITER_DIR = re.compile(r"^iter_(\d+)$")


class IncompleteCheckpoint(ValueError):
    """A checkpoint directory lacks files or holds truncated ones; the message lists them."""


def _side_files() -> tuple[str, str]:
    from megatron_alignpt.train.checkpoint import MODEL_META, TOKENIZER  # lazy: checkpoint imports this module

    return MODEL_META, TOKENIZER


def _json_problem(path: Path) -> Optional[str]:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        return f"{path.name} is not valid JSON ({err})"
    return None


def _shard_problems(ckpt: Path) -> list[str]:
    """Every shard file ``.metadata`` names must exist and reach the end of its last recorded tensor."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        metadata = FileSystemReader(str(ckpt)).read_metadata()
    except Exception as err:  # a truncated pickle raises EOFError, UnpicklingError, AttributeError, ...
        return [f".metadata is unreadable ({type(err).__name__}: {err})"]
    ends: dict[str, int] = defaultdict(int)
    for info in metadata.storage_data.values():
        ends[info.relative_path] = max(ends[info.relative_path], info.offset + info.length)
    problems = []
    for name, end in sorted(ends.items()):
        shard = ckpt / name
        if not shard.is_file():
            problems.append(f"{name} is missing")
        elif shard.stat().st_size < end:
            problems.append(f"{name} is truncated ({shard.stat().st_size} of {end} bytes)")
    return problems


def checkpoint_problems(ckpt: str | Path) -> list[str]:
    """What is missing or damaged in checkpoint directory ``ckpt`` (empty when it is complete)."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        return [f"{ckpt} is not a directory"]
    problems = []
    for name in MEGATRON_FILES + _side_files():
        if not (ckpt / name).is_file():
            problems.append(f"{name} is missing")
        elif name.endswith(".json") and (problem := _json_problem(ckpt / name)):
            problems.append(problem)
    common = ckpt / "common.pt"
    if common.is_file() and not zipfile.is_zipfile(common):  # torch.save writes a zip; a cut one has no directory
        problems.append("common.pt is truncated or corrupt")
    if (ckpt / ".metadata").is_file():
        problems.extend(_shard_problems(ckpt))
    return problems


def verify_checkpoint(ckpt: str | Path) -> Path:
    """``ckpt`` if it is complete, else IncompleteCheckpoint naming every missing or damaged file."""
    problems = checkpoint_problems(ckpt)
    if problems:
        raise IncompleteCheckpoint(f"checkpoint {ckpt} is incomplete: {'; '.join(problems)} "
                                   "(an interrupted save or a partial copy; resume its training stage, "
                                   "or point at an earlier iter_* directory)")
    return Path(ckpt)


def read_latest(root: str | Path) -> Optional[int]:
    """The iteration ``root/latest.txt`` names, None without one; a garbled one is an error naming it."""
    from megatron_alignpt.train.checkpoint import LATEST

    marker = Path(root) / LATEST
    if not marker.is_file():
        return None
    text = marker.read_text(errors="replace").strip()
    if not text.isdigit():
        raise IncompleteCheckpoint(f"{marker}: expected an iteration number, got {text[:40]!r}; "
                                   f"fix it or delete it to resume from the newest complete checkpoint")
    return int(text)


def _iteration_dirs(root: Path) -> list[tuple[int, Path]]:
    """``iter_*`` directories under ``root``, newest first."""
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _ITER_DIR.match(p.name))]
    return sorted(found, reverse=True)


def resume_checkpoint(root: str | Path, log=print) -> Optional[Path]:
    """The newest complete checkpoint under ``root`` to resume from, or None (start from the beginning).

    Also removes temporary save directories a killed run left there. Only the first rank logs and
    removes; every rank reaches the same answer from the same files.
    """
    from megatron_alignpt.runtime import is_rank0

    root = Path(root)
    if not root.is_dir():
        return None
    say = log if is_rank0() else (lambda message: None)
    if is_rank0():
        for stale in remove_stale_temps(root):
            say(f"removed {stale.name}, left in {root} by an interrupted save")
    try:
        latest = read_latest(root)
    except IncompleteCheckpoint:
        say(f"{root}/latest.txt does not hold an iteration number; ignoring it")
        latest = None
    skipped = []
    for iteration, path in _iteration_dirs(root):
        problems = checkpoint_problems(path)
        if not problems:
            if skipped or (latest is not None and latest != iteration):
                why = "; ".join(skipped) if skipped else f"latest.txt names iteration {latest}"
                say(f"resuming from {path.name}, the newest complete checkpoint ({why})")
            return path
        skipped.append(f"{path.name} is incomplete: {', '.join(problems)}")
    if skipped:
        say(f"no complete checkpoint under {root} ({'; '.join(skipped)}); starting from the beginning")
    return None
