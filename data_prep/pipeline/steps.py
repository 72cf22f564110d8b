"""Resumable data steps on datatrove: each runs one pipeline stage over the input files and, for tokenizing,
merges the per-file shards into one Megatron dataset.

A step keeps its scratch in a ``work_dir``:

    settings.json                 what the outputs are made from (inputs with size and mtime, tokenizer hash,
                                  seed, tasks); a rerun with other settings starts over, one with the same resumes
    logs/<stage>/                 datatrove logs and completion markers (a rerun skips completed tasks)
    stats/<block>/<rank>.json     per-task counts of every block (see data_prep.pipeline.blocks)
    shards/<stem>.bin/.idx        tokenize steps: one dataset per input file, until merged
    merged.json                   tokenize steps: the merged dataset's shards, documents and tokens

Shards are merged in input-file order (the order ``data_prep.readers.iter_documents`` reads a corpus), so
the merged dataset holds the same documents in the same order as tokenizing the corpus in one process. The
shards are deleted once merged (at corpus scale they are as large as the merged dataset); ``merged.json``
keeps their token counts. Outputs are written under temporary names and renamed when complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from data_prep.atomic import atomic_write_json, sha256_file
from data_prep.pipeline.runner import Execution, collect_stats, incomplete_tasks, make_executor


class StagePending(RuntimeError):
    """The stage's tasks were submitted (Slurm) but have not all finished; run the step again later."""


def file_print(path: Path) -> list:
    """``[path, bytes, mtime_ns]``: enough to notice an input replaced in place."""
    stat = Path(path).stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def start_or_resume(work_dir: Path, settings: dict[str, Any], outputs: Iterable[Path] = ()) -> None:
    """Resume ``work_dir`` if it was made with ``settings``; otherwise delete it and ``outputs`` and start over."""
    settings = json.loads(json.dumps(settings, default=str))
    record = Path(work_dir) / "settings.json"
    if record.is_file() and json.loads(record.read_text(encoding="utf-8")) == settings:
        return
    for path in [Path(work_dir), *map(Path, outputs)]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    atomic_write_json(record, settings)


@contextlib.contextmanager
def console_to(path: Path) -> Iterator[None]:
    """Send this process's standard error (file descriptor 2, which local worker processes inherit) to ``path``
    while datatrove runs, so a step prints nothing but its result or one error line; ``ALIGNPT_DEBUG=1`` keeps
    the console. datatrove's own per-task logs (``logs/<stage>/logs/``) hold everything either way."""
    if os.environ.get("ALIGNPT_DEBUG"):
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved_fd, saved_stream = os.dup(2), sys.stderr
    try:
        with open(path, "a", encoding="utf-8") as sink:
            os.dup2(sink.fileno(), 2)
            sys.stderr = sink  # what datatrove's logger writes to in this process
            yield
    finally:
        from datatrove.utils.logging import setup_default_logger

        sys.stderr = saved_stream
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        setup_default_logger()  # datatrove's logger back on the console, off the closed file


def run_stage(name: str, pipeline: list, work_dir: Path, execution: Execution) -> None:
    """Run the tasks of one stage not yet completed; raises StagePending if some are still out (Slurm, unless
    ``execution.wait_s``: then it waits for the array job and fails if it ended with tasks unfinished)."""
    logging_dir = Path(work_dir) / "logs" / name
    with console_to(logging_dir / "console.log"):
        executor = make_executor(execution, logging_dir, pipeline)
        executor.run()
    missing = incomplete_tasks(logging_dir, execution.tasks)
    job_id = getattr(executor, "job_id", None)
    if missing and execution.executor == "slurm" and execution.wait_s and job_id not in (None, -1):
        missing = wait_for_slurm_tasks(logging_dir, execution.tasks, str(job_id), execution.wait_s)
        if missing:
            raise RuntimeError(f"{logging_dir}: Slurm job {job_id} ended with {len(missing)} of {execution.tasks} "
                               f"tasks unfinished (first: {missing[0]}); see {logging_dir / 'slurm_logs'}. "
                               "Run the step again to resubmit only those")
    if missing:
        raise StagePending(f"{logging_dir}: {len(missing)} of {execution.tasks} tasks not finished "
                           f"({execution.executor} executor); run the step again once they are done")


def slurm_job_alive(job_id: str, squeue: str = "squeue") -> bool:
    """Whether Slurm still lists ``job_id`` (an array job: any of its tasks) as queued or running."""
    import subprocess

    try:
        res = subprocess.run([squeue, "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True, timeout=120)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return True  # cannot tell: keep waiting rather than fail a job that may be running
    if res.returncode != 0:  # an id Slurm no longer knows (purged) reads as an error
        return False
    return bool(res.stdout.split())


def wait_for_slurm_tasks(logging_dir: Path, tasks: int, job_id: str, poll_s: float,
                         alive=slurm_job_alive, sleep=None) -> list[int]:
    """Poll the completion markers until every task is done or the job has left the queue; the tasks still
    missing then (empty: all done). One last look after the job is gone: markers land before a task exits."""
    import time

    sleep = sleep or time.sleep
    while True:
        missing = incomplete_tasks(logging_dir, tasks)
        if not missing:
            return []
        if not alive(job_id):
            return incomplete_tasks(logging_dir, tasks)
        sleep(poll_s)


def _merged(work_dir: Path, prefix: Path) -> bool:
    """Whether the step's dataset was merged; a merge whose output has since gone is redone from scratch."""
    from data_prep.indexed import idx_path

    record = Path(work_dir) / "merged.json"
    if record.is_file() and not idx_path(prefix).is_file():
        shutil.rmtree(Path(work_dir) / "logs", ignore_errors=True)
        record.unlink()
    return record.is_file()


def merge_shards(work_dir: Path, stems: list[str], prefix: Path) -> dict[str, Any]:
    """Join ``work_dir/shards/<stem>`` (in ``stems`` order; missing ones skipped) into ``prefix``; returns the
    record written to ``merged.json``. Idempotent: a merge already done is only read back."""
    from data_prep.indexed import bin_path, idx_path, merge_indexed, read_index

    record_path = Path(work_dir) / "merged.json"
    if record_path.is_file() and idx_path(prefix).is_file():
        return json.loads(record_path.read_text(encoding="utf-8"))
    shard_dir = Path(work_dir) / "shards"
    shards = [shard_dir / stem for stem in stems if idx_path(shard_dir / stem).is_file()]
    if not shards:
        raise ValueError(f"{prefix}: no documents to tokenize (every input file was empty or removed)")
    rows = []
    for shard in shards:
        lengths = read_index(shard).lengths
        rows.append({"shard": shard.name, "documents": int(lengths.size), "tokens": int(lengths.sum(dtype="int64"))})
    if len(shards) == 1:  # the same bytes: a rename instead of a copy
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        os.replace(bin_path(shards[0]), bin_path(prefix))
        os.replace(idx_path(shards[0]), idx_path(prefix))  # last: the .idx marks a complete dataset
    else:
        merge_indexed(shards, prefix)
    record = {"prefix": str(prefix), "documents": sum(r["documents"] for r in rows),
              "tokens": sum(r["tokens"] for r in rows), "shards": rows}
    atomic_write_json(record_path, record)
    shutil.rmtree(shard_dir, ignore_errors=True)
    return record


def tokenize_files(inputs: list[Path] | Path, tokenizer: Path, prefix: Path, work_dir: Path,
                   execution: Execution = Execution(), text_field: str = "text") -> dict[str, Any]:
    """Tokenize a corpus (files or directories) into one ``<prefix>.bin/.idx``, one task per input file at most.

    The same documents in the same order as ``data_prep.tokenize.tokenize_to_indexed`` over
    ``iter_documents(inputs)``. Returns the merge record (documents, tokens, per-shard counts)."""
    from data_prep.indexed import bin_path, idx_path
    from data_prep.pipeline.blocks import DocumentReader, IndexedTokenizerStep
    from data_prep.readers import data_file_stem, unique_input_files

    files = unique_input_files(inputs)
    execution = execution.for_items(len(files))
    stats = Path(work_dir) / "stats"
    start_or_resume(work_dir, {"step": "tokenize", "inputs": [file_print(f) for f in files], "text_field": text_field,
                               "tokenizer": sha256_file(tokenizer), "tasks": execution.tasks},
                    outputs=[bin_path(prefix), idx_path(prefix)])
    pipeline = [DocumentReader(files, text_field=text_field, stats_dir=stats),
                IndexedTokenizerStep(Path(work_dir) / "shards", tokenizer, stats_dir=stats)]
    if not _merged(work_dir, prefix):
        run_stage("tokenize", pipeline, work_dir, execution)
    return merge_shards(work_dir, [data_file_stem(f) for f in files], prefix)


def resample_and_tokenize(filter_dir: Path, tokenizer: Path, seed: int, prefix: Path, work_dir: Path,
                          execution: Execution = Execution(), text_field: str = "text") -> dict[str, Any]:
    """Refill each filtered file's removed token budget with copies of its retained documents
    (``filter_dir/resampled/``, ``filter_dir/resample.json``, as ``data_prep.resample.resample_filter_output``
    writes them) and tokenize the result into one ``<prefix>.bin/.idx``, in one pass per file."""
    from data_prep.indexed import bin_path, idx_path
    from data_prep.pipeline.blocks import IndexedTokenizerStep, JsonlRowWriter, ResampleStep
    from data_prep.readers import data_file_stem
    from data_prep.resample import filter_output_files

    filter_dir = Path(filter_dir)
    files = filter_output_files(filter_dir)
    if not files:
        raise FileNotFoundError(f"{filter_dir}: not a filter output (no files in kept/ or removed/)")
    execution = execution.for_items(len(files))
    stats = Path(work_dir) / "stats"
    inputs = [file_print(p) for sub in ("kept", "removed") for p in sorted((filter_dir / sub).glob("*.jsonl"))]
    start_or_resume(work_dir, {"step": "resample", "inputs": inputs, "seed": seed, "text_field": text_field,
                               "tokenizer": sha256_file(tokenizer), "tasks": execution.tasks},
                    outputs=[filter_dir / "resampled", filter_dir / "resample.json", bin_path(prefix), idx_path(prefix)])
    pipeline = [ResampleStep(filter_dir, seed=seed, tokenizer=tokenizer, text_field=text_field, stats_dir=stats),
                JsonlRowWriter(filter_dir / "resampled", block="write_resampled", stats_dir=stats),
                IndexedTokenizerStep(Path(work_dir) / "shards", tokenizer, stats_dir=stats)]
    if not _merged(work_dir, prefix):
        run_stage("resample", pipeline, work_dir, execution)
    atomic_write_json(filter_dir / "resample.json", resample_report(stats / "resample", seed))
    return merge_shards(work_dir, [data_file_stem(f) for f in files], prefix)


def resample_report(stats_dir: Path, seed: int) -> dict[str, Any]:
    """The per-task resample stats summed into one report, files in name order (``resample.json``)."""
    from data_prep.resample import ResampleStats

    files = []
    measure = "bytes"
    for part in sorted(Path(stats_dir).glob("*.json")):
        report = json.loads(part.read_text(encoding="utf-8"))["resample"]
        measure = report["measure"]
        files += report["files"]
    total = ResampleStats(measure=measure, seed=seed)
    fields = ("budget", "retained", "removed", "added", "documents_retained", "documents_removed", "documents_added")
    for row in sorted(files, key=lambda r: r["file"]):
        total.add(ResampleStats(measure=measure, seed=seed, **{k: row[k] for k in fields}), row["file"])
    return total.to_dict()


def step_counts(work_dir: Path) -> dict[str, Any]:
    """Summed per-block counts of a step (``collect_stats`` over ``work_dir/stats``)."""
    return collect_stats(Path(work_dir) / "stats")["blocks"]
