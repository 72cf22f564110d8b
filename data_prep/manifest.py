"""Blend manifests: which tokenized datasets a training stage draws from, and with what weights.

One manifest per (data condition, stage). Weights are shares of the stage's training *tokens* (every
Megatron sample is ``seq_length`` tokens, so sample shares equal token shares) and feed straight into
``GPTDatasetConfig.blend`` via :meth:`BlendManifest.blend`. Each entry records token/document counts and
SHA-256 hashes of its ``.bin``/``.idx`` files, so a run directory can prove which data it trained on.

On disk (``to_json``), dataset prefixes inside the manifest's directory are stored relative to it and
resolved again by ``from_json``, so a directory of data + manifest can be moved or copied as a whole.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from data_prep.atomic import atomic_write_json, sha256_file
from data_prep.errors import DataFormatError
from data_prep.indexed import bin_path, idx_path, read_index

FORMAT_VERSION = 1
CONDITIONS = ("unfiltered", "filtered", "align_upsampled", "misalign_upsampled")
"""The paper's headline conditions. Other names (e.g. ``align_upsampled_mid``, ``filtered_align``) are
allowed for variants; only the natural-data conditions below are barred from synthetic data."""
NATURAL_CONDITIONS = ("unfiltered", "filtered")
WEIGHT_TOLERANCE = 1e-6
_CONDITION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def is_synthetic_condition(condition: str) -> bool:
    """Whether a condition may draw on synthetic documents (every name except the natural ones)."""
    return condition not in NATURAL_CONDITIONS


def _check_condition_name(condition: str) -> None:
    if not isinstance(condition, str) or not _CONDITION_NAME.fullmatch(condition):
        raise ValueError(f"condition name {condition!r} must be letters, digits, '_', '.' or '-' "
                         f"(standard names: {', '.join(CONDITIONS)})")


@dataclass
class DatasetEntry:
    """One tokenized dataset (``prefix`` without ``.bin``/``.idx``) and its share of the stage's tokens."""

    name: str
    prefix: str
    weight: float
    tokens: int
    documents: int
    sha256_bin: str
    sha256_idx: str
    synthetic: bool = False
    """True for synthetic discourse documents (the dose), False for base corpus data."""

    @classmethod
    def from_prefix(cls, name: str, prefix: str | Path, weight: float = 1.0, synthetic: bool = False) -> "DatasetEntry":
        """Describe an existing dataset: counts from its ``.idx``, hashes of both files."""
        info = read_index(prefix)
        return cls(name=name, prefix=str(prefix), weight=weight, tokens=int(info.lengths.sum(dtype="int64")),
                   documents=int(info.lengths.size), sha256_bin=sha256_file(bin_path(prefix)),
                   sha256_idx=sha256_file(idx_path(prefix)), synthetic=synthetic)


@dataclass
class BlendManifest:
    """The datasets and weights of one stage (``pretrain``, ``midtrain``, ``cpt``, ...) of one condition."""

    condition: str
    stage: str
    entries: list[DatasetEntry]
    tokenizer: str
    notes: str = ""
    format_version: int = field(default=FORMAT_VERSION)
    stage_tokens: int | None = None
    """Tokens the stage will consume, when known (the dose check used it)."""

    def blend(self) -> tuple[list[str], list[float]]:
        """``([prefixes], [weights])`` for ``GPTDatasetConfig(blend=...)``."""
        return [str(e.prefix) for e in self.entries], [float(e.weight) for e in self.entries]

    @property
    def dose(self) -> float:
        """Share of the stage's tokens drawn from synthetic datasets."""
        return sum(e.weight for e in self.entries if e.synthetic)

    def validate(self, check_hashes: bool = False, check_files: bool = True) -> None:
        """Raise ValueError naming the first problem: condition, names, weights, counts, files, hashes."""
        self._check_structure()
        if check_files or check_hashes:
            for entry in self.entries:
                _check_files(entry, check_hashes)

    def _check_structure(self) -> None:
        _check_condition_name(self.condition)
        if not self.stage:
            raise ValueError("stage must be a non-empty name such as 'pretrain', 'midtrain' or 'cpt'")
        if not self.entries:
            raise ValueError(f"manifest {self.condition}/{self.stage} has no datasets; add at least one entry")
        names = [e.name for e in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique, got {names}")
        for entry in self.entries:
            _check_entry_numbers(entry)
        total = math.fsum(e.weight for e in self.entries)
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"weights must sum to 1 (within {WEIGHT_TOLERANCE}), got {total!r}; "
                             "renormalise them or use build_condition_manifest")
        if self.dose > 0 and not is_synthetic_condition(self.condition):
            raise ValueError(f"condition {self.condition!r} is natural data only and must not contain synthetic "
                             "datasets; use e.g. align_upsampled or drop the synthetic entry")

    def sha256(self) -> str:
        """Hash of what the stage trains on (condition, stage, entries' weights, counts and data hashes).

        Paths, tokenizer location and notes are left out, so moving the data keeps the hash.
        """
        keys = ("name", "weight", "tokens", "documents", "sha256_bin", "sha256_idx", "synthetic")
        content = {"condition": self.condition, "stage": self.stage,
                   "entries": [{k: getattr(e, k) for k in keys} for e in self.entries]}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()

    def to_json(self, path: str | Path) -> Path:
        """Validate the structure and write the manifest atomically (paths relative where possible)."""
        self.validate(check_files=False)
        path = Path(path)
        base = path.resolve().parent
        data = asdict(self)
        data["tokenizer"] = _relative_if_inside(self.tokenizer, base, must_exist=True)
        for entry in data["entries"]:
            entry["prefix"] = _relative_if_inside(entry["prefix"], base)
        return atomic_write_json(path, data)

    @classmethod
    def from_json(cls, path: str | Path) -> "BlendManifest":
        """Load a manifest; relative prefixes are resolved against the manifest's directory."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataFormatError(path, err.lineno, None, f"malformed JSON ({err.msg})") from None
        return _manifest_from_dict(path, data)


def _check_entry_numbers(entry: DatasetEntry) -> None:
    if not (isinstance(entry.weight, (int, float)) and math.isfinite(entry.weight) and entry.weight > 0):
        raise ValueError(f"dataset {entry.name!r}: weight must be a finite number > 0, got {entry.weight!r}; "
                         "leave datasets with no share out of the manifest")
    if entry.tokens <= 0 or entry.documents <= 0:
        raise ValueError(f"dataset {entry.name!r}: tokens and documents must be > 0 "
                         f"(got {entry.tokens} tokens, {entry.documents} documents)")


def _check_files(entry: DatasetEntry, check_hashes: bool) -> None:
    for file, expected in ((bin_path(entry.prefix), entry.sha256_bin), (idx_path(entry.prefix), entry.sha256_idx)):
        if not file.is_file():
            raise ValueError(f"dataset {entry.name!r}: file not found: {file}")
        if check_hashes and sha256_file(file) != expected:
            raise ValueError(f"dataset {entry.name!r}: {file} has changed since the manifest was made "
                             "(sha256 mismatch); rebuild the manifest or restore the file")
    if check_hashes:
        lengths = read_index(entry.prefix).lengths
        if int(lengths.size) != entry.documents or int(lengths.sum(dtype="int64")) != entry.tokens:
            raise ValueError(f"dataset {entry.name!r}: index has {lengths.size} documents / "
                             f"{int(lengths.sum(dtype='int64'))} tokens, manifest says {entry.documents} / {entry.tokens}")


def _relative_if_inside(value: str, base: Path, must_exist: bool = False) -> str:
    if not value:
        return value
    target = Path(value).resolve()
    if must_exist and not target.exists():
        return value  # e.g. a tokenizer name rather than a file: store as given
    try:
        return target.relative_to(base).as_posix()
    except ValueError:
        return str(target)


def _resolve(value: str, base: Path, must_exist: bool = False) -> str:
    if not value or Path(value).is_absolute():
        return value
    candidate = base / value
    if must_exist and not candidate.exists():
        return value
    return os.path.normpath(candidate)


_ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str, "prefix": str, "weight": (int, float), "tokens": int, "documents": int,
    "sha256_bin": str, "sha256_idx": str,
}


def _require(path: Path, data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    field_name = f"{where}{key}"
    if key not in data:
        raise DataFormatError(path, None, field_name, "missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataFormatError(path, None, field_name, f"expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "a number" if kind == (int, float) else f"a {kind.__name__}"


def _entry_from_dict(path: Path, data: Any, index: int) -> DatasetEntry:
    where = f"entries[{index}]."
    if not isinstance(data, dict):
        raise DataFormatError(path, None, f"entries[{index}]", "expected an object")
    values = {key: _require(path, data, key, kind, where) for key, kind in _ENTRY_TYPES.items()}
    synthetic = data.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise DataFormatError(path, None, f"{where}synthetic", "expected true or false")
    values["prefix"] = _resolve(values["prefix"], path.resolve().parent)
    return DatasetEntry(**values, synthetic=synthetic)


def _manifest_from_dict(path: Path, data: Any) -> BlendManifest:
    if not isinstance(data, dict):
        raise DataFormatError(path, None, None, "expected a JSON object")
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DataFormatError(path, None, "format_version", f"unsupported version {version!r} (this code reads {FORMAT_VERSION})")
    entries_raw = _require(path, data, "entries", list)
    entries = [_entry_from_dict(path, item, i) for i, item in enumerate(entries_raw)]
    tokenizer = _resolve(_require(path, data, "tokenizer", str), path.resolve().parent, must_exist=True)
    notes = data.get("notes", "")
    stage_tokens = data.get("stage_tokens")
    if stage_tokens is not None and (isinstance(stage_tokens, bool) or not isinstance(stage_tokens, int)):
        raise DataFormatError(path, None, "stage_tokens", f"expected an integer or null, got {type(stage_tokens).__name__}")
    return BlendManifest(condition=_require(path, data, "condition", str), stage=_require(path, data, "stage", str),
                         entries=entries, tokenizer=tokenizer, notes=notes if isinstance(notes, str) else str(notes),
                         stage_tokens=stage_tokens)


def build_condition_manifest(condition: str, stage: str, base_entries: Sequence[DatasetEntry],
                             synthetic_entry: DatasetEntry | None, dose: float,
                             tokenizer: str = "", notes: str = "", stage_tokens: int | None = None,
                             max_repetitions: float | None = None) -> BlendManifest:
    """The manifest of one stage of one condition, with ``dose`` = synthetic share of the stage's tokens.

    Base datasets share ``1 - dose`` in proportion to their token counts (their given weights are
    ignored). Upsampled conditions may use ``dose=0`` for stages without insertion (e.g. pretraining of
    a "Mid" model); the synthetic entry is then left out. ``stage`` is ``pretrain``, ``midtrain``,
    ``cpt`` (continued pretraining after midtraining) or another name for a custom stage.

    With ``stage_tokens`` (tokens the stage will consume) and ``max_repetitions`` (how many epochs
    over the synthetic documents are acceptable), a dose that would repeat them more often is refused:
    ``dose * stage_tokens`` must not exceed ``synthetic_entry.tokens * max_repetitions``.
    """
    _check_dose(condition, synthetic_entry, dose)
    _check_repetitions(condition, stage, synthetic_entry, dose, stage_tokens, max_repetitions)
    if not base_entries:
        raise ValueError("base_entries is empty: every condition needs base corpus data")
    total = sum(e.tokens for e in base_entries)
    if total <= 0 or any(e.tokens <= 0 for e in base_entries):
        raise ValueError(f"every base dataset needs tokens > 0, got {[(e.name, e.tokens) for e in base_entries]}")
    entries = [replace(e, weight=(1.0 - dose) * e.tokens / total, synthetic=False) for e in base_entries]
    if dose > 0:
        entries.append(replace(synthetic_entry, weight=dose, synthetic=True))
    manifest = BlendManifest(condition=condition, stage=stage, entries=entries, tokenizer=tokenizer, notes=notes,
                             stage_tokens=stage_tokens)
    manifest.validate(check_files=False)
    return manifest


def _check_repetitions(condition: str, stage: str, synthetic_entry: DatasetEntry | None, dose: float,
                       stage_tokens: int | None, max_repetitions: float | None) -> None:
    if stage_tokens is not None and (isinstance(stage_tokens, bool) or not isinstance(stage_tokens, int) or stage_tokens <= 0):
        raise ValueError(f"stage_tokens must be a positive number of tokens, got {stage_tokens!r}")
    if max_repetitions is not None and not (isinstance(max_repetitions, (int, float)) and max_repetitions >= 1):
        raise ValueError(f"max_repetitions must be >= 1 (1 = each synthetic token at most once), got {max_repetitions!r}")
    if dose <= 0 or stage_tokens is None or max_repetitions is None:
        return
    needed = dose * stage_tokens
    available = synthetic_entry.tokens * max_repetitions
    if needed > available:
        raise ValueError(
            f"condition {condition!r}, stage {stage!r}: dose {dose:g} of {stage_tokens:,} stage tokens needs "
            f"{needed:,.0f} synthetic tokens, but {synthetic_entry.name!r} has {synthetic_entry.tokens:,} tokens x "
            f"{max_repetitions:g} repetitions = {available:,.0f} available ({needed / synthetic_entry.tokens:.1f} "
            "repetitions needed); lower the dose, raise data.max_synthetic_repetitions, or generate more documents "
            "(data.synthetic_docs_per_item)")


def _check_dose(condition: str, synthetic_entry: DatasetEntry | None, dose: float) -> None:
    _check_condition_name(condition)
    if not (isinstance(dose, (int, float)) and math.isfinite(dose) and 0 <= dose < 1):
        raise ValueError(f"dose must be a share of tokens in [0, 1), got {dose!r} (e.g. 0.01 for 1%)")
    if not is_synthetic_condition(condition) and (dose > 0 or synthetic_entry is not None):
        raise ValueError(f"condition {condition!r} has no synthetic data: pass synthetic_entry=None and dose=0, "
                         "or use an upsampled condition such as align_upsampled")
    if dose > 0 and synthetic_entry is None:
        raise ValueError(f"dose {dose} needs synthetic data: pass synthetic_entry (a tokenized synthetic dataset) "
                         "or set dose=0")
    if dose > 0 and synthetic_entry.tokens <= 0:
        raise ValueError(f"synthetic dataset {synthetic_entry.name!r} has no tokens; tokenize it first")
