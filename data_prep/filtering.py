"""Apply the blocklist to JSONL/Parquet inputs, keeping every removed document with its reason.

Layout of ``output_dir`` (created atomically: it only appears once everything, stats included, is done):

    kept/<input-stem>.jsonl      documents that passed, all fields kept (an ``id`` is added if missing)
    removed/<input-stem>.jsonl   flagged documents, all fields kept, plus ``id`` and ``filter_reason``
    stats.json                   counts, bytes, flag rate, removals per category and per input file
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from data_prep.atomic import atomic_dir, atomic_write_json
from data_prep.blocklist import Blocklist
from data_prep.readers import data_file_stem, iter_records, to_document, unique_input_files


@dataclass
class FileStats:
    """Counts for one input file."""

    input: str
    documents: int = 0
    kept: int = 0
    removed: int = 0


@dataclass
class FilterStats:
    """What :func:`run_filter` did; written to ``stats.json``. Bytes are UTF-8 bytes of the text field."""

    documents_in: int = 0
    kept: int = 0
    removed: int = 0
    bytes_in: int = 0
    bytes_kept: int = 0
    bytes_removed: int = 0
    removed_per_category: dict[str, int] = field(default_factory=dict)
    files: list[FileStats] = field(default_factory=list)

    @property
    def flag_rate(self) -> float:
        """Share of input documents removed (SPEC target: under 10%)."""
        return self.removed / self.documents_in if self.documents_in else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flag_rate": self.flag_rate}


def _write_row(handle: IO[str], row: dict[str, Any]) -> None:
    handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _filter_file(path: Path, out_dir: Path, blocklist: Blocklist, text_field: str,
                 stats: FilterStats, progress: bool) -> None:
    """Filter one input file into ``out_dir/kept`` and ``out_dir/removed``, updating ``stats``."""
    stem = data_file_stem(path)
    file_stats = FileStats(input=str(path))
    categories: Counter[str] = Counter(stats.removed_per_category)
    with open(out_dir / "kept" / f"{stem}.jsonl", "w", encoding="utf-8") as kept, \
            open(out_dir / "removed" / f"{stem}.jsonl", "w", encoding="utf-8") as removed:
        for record in tqdm(iter_records(path), desc=path.name, unit="doc", disable=not progress):
            doc = to_document(record, text_field=text_field)
            decision = blocklist.check(doc.text)
            row = {"id": doc.id, **record.data}
            size = len(doc.text.encode("utf-8"))
            file_stats.documents += 1
            stats.bytes_in += size
            if decision.keep:
                _write_row(kept, row)
                file_stats.kept += 1
                stats.bytes_kept += size
            else:
                _write_row(removed, {**row, "filter_reason": decision.reason})
                file_stats.removed += 1
                stats.bytes_removed += size
                categories[decision.category] += 1
    stats.documents_in += file_stats.documents
    stats.kept += file_stats.kept
    stats.removed += file_stats.removed
    stats.removed_per_category = dict(sorted(categories.items()))
    stats.files.append(file_stats)


def run_filter(inputs: list[Path] | Path, output_dir: Path, blocklist: Blocklist | None = None,
               text_field: str = "text", overwrite: bool = False, progress: bool = False) -> FilterStats:
    """Split every input document into kept/removed by the blocklist (default: packaged lists).

    Raises DataFormatError (file, line, field) on a bad record or an input file without records;
    ``output_dir`` is then not created. An existing ``output_dir`` (other than an empty directory) is
    refused unless ``overwrite=True``, and one that is, holds or lies inside an input always is.
    """
    blocklist = blocklist or Blocklist.load()
    files = unique_input_files(inputs)
    stats = FilterStats()
    given = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    with atomic_dir(Path(output_dir), overwrite=overwrite, inputs=given + files) as tmp:
        (tmp / "kept").mkdir()
        (tmp / "removed").mkdir()
        for path in files:
            _filter_file(path, tmp, blocklist, text_field, stats, progress)
        atomic_write_json(tmp / "stats.json", stats.to_dict())
    return stats
