"""Replace removed documents by resampling retained ones, so a filtered corpus keeps its token budget.

The paper filters pretraining data and then draws extra copies of retained documents until the
filtered corpus is as large as the unfiltered one. Here the budget is matched per input file (so
every shard of a distributed run can do its part alone and the whole corpus matches too):

    deficit = size(removed documents of the file)
    draw retained documents of the same file uniformly at random, with replacement, until their
    total size reaches the deficit (so it is exceeded by less than one document)

Size is measured in tokens when a tokenizer is given (what training consumes), otherwise in UTF-8
bytes of the text. The draws depend only on ``seed`` and the file's name, so a rerun, or another
sharding of the same files, picks the same copies.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from data_prep.readers import Record, iter_records, to_document

MEASURES = ("bytes", "tokens")
_DRAW_CHUNK = 4096


@dataclass
class ResampleStats:
    """What resampling did to one file (or, summed, to a corpus); sizes are in ``measure`` units."""

    measure: str
    seed: int
    budget: int = 0
    """Size of the unfiltered input: retained + removed."""
    retained: int = 0
    removed: int = 0
    added: int = 0
    """Size of the copies drawn."""
    documents_retained: int = 0
    documents_removed: int = 0
    documents_added: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Size of the resampled corpus: retained + added."""
        return self.retained + self.added

    def add(self, other: "ResampleStats", name: str) -> None:
        for key in ("budget", "retained", "removed", "added", "documents_retained", "documents_removed", "documents_added"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.files.append({"file": name, **{k: v for k, v in other.to_dict().items() if k != "files"}})

    def to_dict(self) -> dict[str, Any]:
        ratio = self.total / self.budget if self.budget else 0.0
        return {**asdict(self), "total": self.total, "total_over_budget": ratio}


def file_seed(seed: int, name: str) -> int:
    """A 64-bit seed for one file: the same for the same (seed, file name) on every machine."""
    digest = hashlib.sha256(f"{seed}:{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def choose_copies(sizes: Sequence[int] | np.ndarray, deficit: int, seed: int) -> list[int]:
    """Indices of retained documents to copy (with repeats, in draw order) until their sizes reach ``deficit``.

    Documents of size 0 are never drawn. Returns ``[]`` when there is no deficit or nothing to draw.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    candidates = np.flatnonzero(sizes > 0)
    if deficit <= 0 or candidates.size == 0:
        return []
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    total = 0
    while total < deficit:
        draws = candidates[rng.integers(0, candidates.size, size=_DRAW_CHUNK)]
        cumulative = total + np.cumsum(sizes[draws])
        stop = int(np.searchsorted(cumulative, deficit))  # first draw whose running total reaches the deficit
        if stop < draws.size:
            chosen.extend(int(i) for i in draws[: stop + 1])
            return chosen
        chosen.extend(int(i) for i in draws)
        total = int(cumulative[-1])
    return chosen


def text_measure(tokenizer_path: str | Path | None) -> tuple[str, Callable[[list[str]], list[int]]]:
    """``("tokens", sizes_fn)`` with a tokenizer (no special tokens, no EOD), else ``("bytes", sizes_fn)``."""
    if tokenizer_path is None:
        return "bytes", lambda texts: [len(t.encode("utf-8")) for t in texts]
    from data_prep.tokenize import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    return "tokens", lambda texts: [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def _sizes(path: Path | None, text_field: str, measure: Callable[[list[str]], list[int]], batch: int = 1000) -> list[int]:
    if path is None or not path.exists():
        return []
    sizes: list[int] = []
    texts: list[str] = []
    for record in iter_records(path, allow_empty=True):  # every document of a file may have been removed
        texts.append(to_document(record, text_field=text_field).text)
        if len(texts) == batch:
            sizes.extend(measure(texts))
            texts = []
    if texts:
        sizes.extend(measure(texts))
    return sizes


def resample_file(kept: Path, removed: Path | None, seed: int, measure_name: str,
                  measure: Callable[[list[str]], list[int]], text_field: str = "text") -> tuple[Iterator[Record], ResampleStats]:
    """Rows of ``kept`` followed by the drawn copies (each with ``resample_copy`` = 1, 2, ...), and the stats.

    The rows are streamed: the retained file is read once to measure, once to copy from and once
    while yielding; only the sizes are held in memory. A file whose documents were all removed has no
    retained file: nothing can be drawn, and its deficit shows as ``budget - total`` in the stats.
    """
    kept_sizes = _sizes(kept, text_field, measure)
    removed_sizes = _sizes(removed, text_field, measure)
    copies = choose_copies(kept_sizes, sum(removed_sizes), file_seed(seed, kept.name))
    stats = ResampleStats(measure=measure_name, seed=seed, budget=sum(kept_sizes) + sum(removed_sizes),
                          retained=sum(kept_sizes), removed=sum(removed_sizes),
                          added=int(sum(kept_sizes[i] for i in copies)), documents_retained=len(kept_sizes),
                          documents_removed=len(removed_sizes), documents_added=len(copies))
    return (_resampled_rows(kept, copies) if kept.exists() else iter(())), stats


def _resampled_rows(kept: Path, copies: list[int]) -> Iterator[Record]:
    yield from iter_records(kept, allow_empty=True)
    if not copies:
        return
    wanted: dict[int, int] = {}
    for index in copies:
        wanted[index] = wanted.get(index, 0) + 1
    for index, record in enumerate(iter_records(kept, allow_empty=True)):
        for copy in range(1, wanted.get(index, 0) + 1):
            yield Record(record.source, record.line, {**record.data, "resample_copy": copy})


def filter_output_files(filter_dir: str | Path) -> list[Path]:
    """``kept/<name>`` for every file name in ``kept/`` or ``removed/`` (sorted), existing or not."""
    filter_dir = Path(filter_dir)
    names = {p.name for sub in ("kept", "removed") if (filter_dir / sub).is_dir()
             for p in (filter_dir / sub).iterdir() if p.is_file() and not p.name.startswith(".")}
    return [filter_dir / "kept" / name for name in sorted(names)]


def resample_filter_output(filter_dir: str | Path, seed: int = 0, tokenizer: str | Path | None = None,
                           text_field: str = "text", output_dir: str | Path | None = None) -> ResampleStats:
    """Resample a filter output (``kept/``, ``removed/``) into ``resampled/`` and write ``resample.json``.

    ``output_dir`` defaults to ``filter_dir/resampled``; each file is written atomically, the stats last.
    """
    import json

    from data_prep.atomic import atomic_path, atomic_write_json

    filter_dir = Path(filter_dir)
    kept_dir = filter_dir / "kept"
    if not kept_dir.is_dir():
        raise FileNotFoundError(f"{kept_dir}: not a filter output (expected kept/ and removed/ from 'alignpt prep filter')")
    out_dir = Path(output_dir) if output_dir is not None else filter_dir / "resampled"
    measure_name, measure = text_measure(tokenizer)
    total = ResampleStats(measure=measure_name, seed=seed)
    for kept in filter_output_files(filter_dir):
        rows, stats = resample_file(kept, filter_dir / "removed" / kept.name, seed, measure_name, measure, text_field)
        with atomic_path(out_dir / kept.name) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            for record in rows:
                handle.write(json.dumps(record.data, ensure_ascii=False) + "\n")
        total.add(stats, kept.name)
    atomic_write_json(filter_dir / "resample.json" if output_dir is None else out_dir / "resample.json", total.to_dict())
    return total
