"""Apply the blocklist to JSONL/Parquet inputs, keeping every removed document with its reason.

The filter itself is the datatrove stage of :mod:`data_prep.pipeline` (``filter_stage``); this module runs it
for ``prep filter`` (:func:`run_filter`) and the study (:func:`filter_files`) and sums its counts.

Layout of ``output_dir`` (``run_filter`` creates it atomically: it only appears once everything, stats included, is done):

    kept/<input-stem>.jsonl      documents that passed, all fields kept (an ``id`` is added if missing)
    removed/<input-stem>.jsonl   flagged documents, all fields kept, plus ``id`` and ``filter_reason``
    stats.json                   counts, bytes, flag rate, removals per category and per input file
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_prep.atomic import atomic_dir, atomic_write_json
from data_prep.readers import data_file_stem, unique_input_files


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


def filter_files(inputs: list[Path] | Path, output_dir: Path, work_dir: Path | None = None,
                 execution=None, blocklist_dir: Path | None = None, text_field: str = "text") -> FilterStats:
    """Split every input document into ``output_dir/kept`` and ``output_dir/removed`` (resumable).

    Runs the filter stage of :mod:`data_prep.pipeline` (one task per input file at most) on ``execution``
    (default: local, one worker), with its scratch in ``work_dir`` (default ``output_dir/pipeline``): a rerun
    with the same inputs skips the files already done, one with other inputs or blocklist starts over.
    ``stats.json`` is written last, once every task is done.
    """
    from data_prep.blocklist import DEFAULT_DIRECTORY
    from data_prep.pipeline.runner import Execution, filter_stage
    from data_prep.pipeline.steps import file_print, run_stage, start_or_resume, step_counts

    output_dir = Path(output_dir)
    work_dir = Path(work_dir) if work_dir is not None else output_dir / "pipeline"
    files = unique_input_files(inputs)
    execution = (execution or Execution()).for_items(len(files))
    blocklist = Path(blocklist_dir) if blocklist_dir is not None else DEFAULT_DIRECTORY
    settings = {"step": "filter", "inputs": [file_print(f) for f in files], "text_field": text_field,
                "blocklist": sorted(file_print(f)[1:] + [f.name] for f in blocklist.rglob("*") if f.is_file()),
                "tasks": execution.tasks}
    start_or_resume(work_dir, settings, outputs=[output_dir / "kept", output_dir / "removed", output_dir / "stats.json"])
    run_stage("filter", filter_stage(files, output_dir, work_dir / "stats", blocklist_dir, text_field), work_dir, execution)
    stats = filter_stats(files, step_counts(work_dir).get("filter", {}))
    atomic_write_json(output_dir / "stats.json", stats.to_dict())
    return stats


def filter_stats(files: list[Path], counts: dict[str, Any]) -> FilterStats:
    """:class:`FilterStats` from the filter block's summed counts (``data_prep.pipeline.runner.collect_stats``)."""
    per_file = counts.get("files", {})
    rows = [FileStats(input=str(f), **{k: per_file.get(data_file_stem(f), {}).get(k, 0) for k in ("documents", "kept", "removed")})
            for f in files]
    return FilterStats(documents_in=counts.get("documents_in", 0), kept=counts.get("documents_out", 0),
                       removed=counts.get("removed", 0), bytes_in=counts.get("bytes_in", 0),
                       bytes_kept=counts.get("bytes_out", 0), bytes_removed=counts.get("bytes_removed", 0),
                       removed_per_category=dict(sorted(counts.get("removed_per_category", {}).items())), files=rows)


def run_filter(inputs: list[Path] | Path, output_dir: Path, blocklist_dir: Path | None = None,
               text_field: str = "text", overwrite: bool = False, execution=None) -> FilterStats:
    """``prep filter``: :func:`filter_files` into a directory that appears only when complete.

    Raises DataFormatError (file, line, field) on a bad record or an input file without records;
    ``output_dir`` is then not created. An existing ``output_dir`` (other than an empty directory) is
    refused unless ``overwrite=True``, and one that is, holds or lies inside an input always is.
    """
    files = unique_input_files(inputs)
    given = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    with atomic_dir(Path(output_dir), overwrite=overwrite, inputs=given + files) as tmp:
        stats = filter_files(files, tmp, tmp / ".pipeline", execution, blocklist_dir, text_field)
        shutil.rmtree(tmp / ".pipeline")
    return stats
