"""Write files and directories so that readers never see a half-written result.

Everything is written under a temporary name in the destination's own directory (same filesystem, so
the final ``os.replace``/``rename`` is atomic) and only moved onto the final name when the writer
finished without an exception. An interrupted step therefore leaves either the old state or nothing.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

# Names of the temporaries below (``.name.tmp-PID``, ``.name.old-PID``) and of checkpoint saves
# (``.iter_0000100.tmp``): what a killed run leaves behind, and what `remove_stale_temps` deletes.
_TEMP_NAME = re.compile(r"^\..+\.(tmp|old)-\d+$|^\.iter_\d+\.tmp$")


class OutputExistsError(FileExistsError):
    """An output path already holds something, and the caller did not ask to replace it."""


def temp_sibling(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp-{os.getpid()}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of the temporary names the writers here (and checkpoint saves) use."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temps(directory: str | Path, recursive: bool = False) -> list[Path]:
    """Delete temporaries that a killed run left in ``directory`` (and below it, if ``recursive``).

    Only call it where no other process can be writing (a locked study or stage directory):
    the names carry a PID, but a PID says nothing about processes on other hosts.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in sorted(directory.rglob(".*") if recursive else directory.glob(".*")):
        if is_temp_name(entry.name) and os.path.lexists(entry):
            _remove(entry)
            removed.append(entry)
    return removed


def pid_running(pid: int) -> bool:
    """Whether a process with this PID runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_temps(final: str | Path) -> list[Path]:
    """Delete the temporaries of earlier writers of ``final`` whose process is gone (killed runs), so
    large outputs (datasets, filter directories) leave no hidden leftovers behind reruns. A writer
    still running on this machine keeps its file."""
    final = Path(final)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(?:tmp|old)-(\d+)$")
    removed = []
    if final.parent.is_dir():
        for entry in final.parent.glob(f".{glob.escape(final.name)}.*"):
            match = pattern.match(entry.name)
            if match and int(match.group(1)) != os.getpid() and not pid_running(int(match.group(1))):
                _remove(entry)
                removed.append(entry)
    return removed


def check_output(final: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False) -> Path:
    """Refuse an output path that would destroy or swallow data, before any work starts.

    Always refused: an output that is one of ``inputs``, contains one, or lies inside one (it would
    replace the input, or be read back as input next time). Refused unless ``overwrite``: an output
    that exists, other than an empty directory.
    """
    final = Path(final)
    target = final.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if target == source or source.is_relative_to(target) or target.is_relative_to(source):
            how = "is" if target == source else ("contains" if source.is_relative_to(target) else "is inside")
            raise OutputExistsError(f"output {final} {how} the input {item}; choose an output outside the inputs")
    exists = os.path.lexists(final) and not (final.is_dir() and not any(final.iterdir()))
    if exists and not overwrite:
        raise OutputExistsError(f"{final} already exists; choose another output, or pass --overwrite to replace it")
    return final


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp file path beside ``final``; rename it onto ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    _remove(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON so equal objects give byte-identical files.

    NaN and infinities are refused: Python would write them as bare ``NaN``, which is not JSON,
    and a result that is NaN is a failure to report, not a number to store.
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False)
    except ValueError as err:
        raise ValueError(f"{path}: not written: {err} (a NaN or infinite value)") from None
    return atomic_write_text(path, text + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a temp directory beside ``final``; move it onto ``final`` only if the block succeeds.

    ``final`` is checked by `check_output` first: one of ``inputs`` (or overlapping one) is always
    refused, and an existing path other than an empty directory unless ``overwrite=True``, in which
    case it is replaced whole once the new content is complete.
    """
    final = check_output(final, inputs, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temps(final)
    tmp = temp_sibling(final)
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        _swap_in(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp``; an old ``final`` is moved aside first and deleted after."""
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        _remove(old)
        os.replace(final, old)
    os.replace(tmp, final)
    _remove(old)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (works on multi-GB ``.bin`` files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
