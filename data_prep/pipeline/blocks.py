"""datatrove pipeline blocks for our formats: read, blocklist-filter, resample, write JSONL, tokenize.

Work is sharded by input *file*: task ``rank`` of ``world_size`` takes files ``rank, rank + world_size, ...``
of the sorted input list, so every output file (named after its input, ``<stem>.jsonl``,
``<stem>.bin/.idx``) is written by exactly one task and a rerun of that task rewrites it whole. Files
are written under temporary names and renamed when the task's stream ends, so an interrupted task
leaves no half file; datatrove's completion markers make a rerun skip finished tasks.

Each block counts what it did (documents in/out, bytes, tokens, removals per category), hands the
task's totals to datatrove's ``stat_update`` and also writes ``<stats_dir>/<block>/<rank>.json`` so the counts survive
on any executor; :func:`data_prep.pipeline.runner.collect_stats` sums them into one JSON.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from data_prep.atomic import atomic_write_json, temp_sibling
from data_prep.readers import data_file_stem, iter_records, to_document, unique_input_files

ROW = "row"
"""``Document.metadata`` key holding the input record (all its fields), written back unchanged."""
STEM = "stem"
"""``Document.metadata`` key naming the input file the document came from (its stem)."""


def shard(items: list, rank: int, world_size: int) -> list:
    """The items of task ``rank``: every ``world_size``-th, starting at ``rank``."""
    return items[rank::world_size]


class _CountingStep(PipelineStep):
    """A block that keeps plain counters per task and saves them as JSON under ``stats_dir``."""

    block = "block"

    def __init__(self, stats_dir: str | Path | None = None) -> None:
        super().__init__()
        self.stats_dir = str(stats_dir) if stats_dir is not None else None
        self.counts: Counter[str] = Counter()

    def count(self, key: str, value: int = 1) -> None:
        """Add to a counter (cheap: datatrove's per-update statistics would cost more than filtering)."""
        self.counts[key] += value

    def save_counts(self, rank: int, extra: dict[str, Any] | None = None) -> None:
        """Hand the task's totals to datatrove's stats and write them to ``<stats_dir>/<block>/<rank>.json``."""
        for key, value in self.counts.items():
            self.stat_update(key, value=value, unit="task")
        if self.stats_dir is not None:
            data = {**dict(sorted(self.counts.items())), **(extra or {})}
            atomic_write_json(Path(self.stats_dir) / self.block / f"{rank:05d}.json", data)


class DocumentReader(_CountingStep):
    """Read JSON Lines (plain, .gz, .zst) and Parquet through :mod:`data_prep.readers`.

    A bad record raises DataFormatError naming file, line and field. Each Document carries the input
    record in ``metadata["row"]`` (with ``id`` filled in as ``<stem>:<line>`` when missing) and the
    input's stem in ``metadata["stem"]``.
    """

    name = "alignpt reader"
    type = "📖 - READER"
    block = "read"

    def __init__(self, inputs: list[str | Path], text_field: str = "text", id_field: str = "id",
                 stats_dir: str | Path | None = None) -> None:
        super().__init__(stats_dir)
        self.files = [str(f) for f in unique_input_files(list(inputs))]
        self.text_field = text_field
        self.id_field = id_field

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        for file in shard(self.files, rank, world_size):
            stem = data_file_stem(file)
            for record in iter_records(file):
                doc = to_document(record, text_field=self.text_field, id_field=self.id_field)
                self.count("documents")
                self.count("bytes", len(doc.text.encode("utf-8")))
                yield Document(text=doc.text, id=doc.id, metadata={ROW: {"id": doc.id, **record.data}, STEM: stem})
            self.count("files")
        self.save_counts(rank)


class JsonlRowWriter(_CountingStep):
    """Write each document's input record (plus ``filter_reason`` when set) to ``<folder>/<stem>.jsonl``.

    Usable as a pipeline block (passes documents on) and as a filter's exclusion writer
    (``write(doc, rank)`` inside ``with writer:``). Files appear at their final names on ``close()``.
    """

    name = "alignpt jsonl"
    type = "💽 - WRITER"

    def __init__(self, folder: str | Path, block: str = "write", stats_dir: str | Path | None = None) -> None:
        super().__init__(stats_dir)
        self.folder = str(folder)
        self.block = block
        self._open: dict[str, Any] = {}

    def write(self, doc: Document, rank: int = 0) -> None:
        stem = doc.metadata.get(STEM, f"{rank:05d}")
        handle = self._open.get(stem)
        if handle is None:
            final = Path(self.folder) / f"{stem}.jsonl"
            final.parent.mkdir(parents=True, exist_ok=True)
            handle = self._open[stem] = open(temp_sibling(final), "w", encoding="utf-8")
        row = dict(doc.metadata.get(ROW) or {"id": doc.id, "text": doc.text})
        if "filter_reason" in doc.metadata:
            row["filter_reason"] = doc.metadata["filter_reason"]
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.count("documents")
        self.count("bytes", len(doc.text.encode("utf-8")))

    def close(self, rank: int = 0) -> None:
        for stem, handle in self._open.items():
            handle.close()
            final = Path(self.folder) / f"{stem}.jsonl"
            os.replace(temp_sibling(final), final)
        self._open.clear()
        self.save_counts(rank)

    def abort(self) -> None:
        for stem, handle in self._open.items():
            handle.close()
            temp_sibling(Path(self.folder) / f"{stem}.jsonl").unlink(missing_ok=True)
        self._open.clear()

    def __enter__(self) -> "JsonlRowWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        try:
            for doc in data:
                self.write(doc, rank)
                yield doc
        except BaseException:
            self.abort()
            raise
        self.close(rank)


class BlocklistFilterStep(_CountingStep):
    """The SPEC section 5 blocklist as a datatrove filter: kept documents pass on, removed ones go to
    ``exclusion_writer`` (every one, with ``id`` and ``filter_reason`` = ``category:term``)."""

    name = "alignpt blocklist"
    type = "🔻 - FILTER"
    block = "filter"

    def __init__(self, exclusion_writer: JsonlRowWriter | None = None, blocklist_dir: str | Path | None = None,
                 stats_dir: str | Path | None = None) -> None:
        super().__init__(stats_dir)
        from data_prep.blocklist import Blocklist

        self.exclusion_writer = exclusion_writer
        self.blocklist = Blocklist.load(blocklist_dir)
        self.removed_per_category: Counter[str] = Counter()
        self.per_file: dict[str, Counter[str]] = {}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        writer = self.exclusion_writer
        try:
            for doc in data:
                size = len(doc.text.encode("utf-8"))
                self.count("documents_in")
                self.count("bytes_in", size)
                decision = self.blocklist.check(doc.text)
                in_file = self.per_file.setdefault(doc.metadata.get(STEM, ""), Counter())
                in_file["documents"] += 1
                if decision.keep:
                    self.count("documents_out")
                    self.count("bytes_out", size)
                    in_file["kept"] += 1
                    yield doc
                    continue
                in_file["removed"] += 1
                self.count("removed")
                self.count("bytes_removed", size)
                self.count(f"removed_{decision.category}")
                self.removed_per_category[decision.category] += 1
                doc.metadata["filter_reason"] = decision.reason
                if writer is not None:
                    writer.write(doc, rank)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close(rank)
        self.save_counts(rank, {"removed_per_category": dict(sorted(self.removed_per_category.items())),
                                "files": {stem: dict(counts) for stem, counts in sorted(self.per_file.items())}})


class ResampleStep(_CountingStep):
    """Reader of a filter output that refills each file's removed budget with copies of its retained
    documents (:mod:`data_prep.resample`); files are sharded across tasks like the inputs were."""

    name = "alignpt resample"
    type = "📖 - READER"
    block = "resample"

    def __init__(self, filter_dir: str | Path, seed: int = 0, tokenizer: str | Path | None = None,
                 text_field: str = "text", stats_dir: str | Path | None = None) -> None:
        super().__init__(stats_dir)
        self.filter_dir = str(filter_dir)
        self.seed = seed
        self.tokenizer = str(tokenizer) if tokenizer is not None else None
        self.text_field = text_field

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from data_prep.resample import ResampleStats, filter_output_files, resample_file, text_measure

        if data:
            yield from data
        files = filter_output_files(self.filter_dir)
        measure_name, measure = text_measure(self.tokenizer)
        total = ResampleStats(measure=measure_name, seed=self.seed)
        for kept in shard(files, rank, world_size):
            rows, stats = resample_file(kept, Path(self.filter_dir) / "removed" / kept.name, self.seed, measure_name,
                                        measure, self.text_field)
            stem = data_file_stem(kept)
            for record in rows:
                doc = to_document(record, text_field=self.text_field)
                self.count("documents_out")
                self.count("bytes_out", len(doc.text.encode("utf-8")))
                yield Document(text=doc.text, id=doc.id, metadata={ROW: record.data, STEM: stem})
            total.add(stats, kept.name)
        self.count("documents_added", total.documents_added)
        self.save_counts(rank, {"resample": total.to_dict()})


class IndexedTokenizerStep(_CountingStep):
    """Tokenize documents (batched ``encode_batch``, EOD appended) into ``<folder>/<stem>.bin/.idx``
    through :class:`data_prep.indexed.IndexedDatasetWriter`; documents pass on unchanged."""

    name = "alignpt tokenize"
    type = "🔢 - TOKENIZER"
    block = "tokenize"

    def __init__(self, folder: str | Path, tokenizer: str | Path, batch_size: int = 1000, append_eod: bool = True,
                 stats_dir: str | Path | None = None) -> None:
        super().__init__(stats_dir)
        self.folder = str(folder)
        self.tokenizer = str(tokenizer)
        self.batch_size = batch_size
        self.append_eod = append_eod

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from data_prep.tokenize import IndexedTextWriter

        writers: dict[str, IndexedTextWriter] = {}
        try:
            batch: list[Document] = []
            for doc in data:
                batch.append(doc)
                if len(batch) >= self.batch_size:
                    yield from self._flush(batch, writers)
                    batch = []
            yield from self._flush(batch, writers)
            for writer in writers.values():
                writer.finalize()
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        self.save_counts(rank)

    def _flush(self, batch: list[Document], writers: dict) -> Iterator[Document]:
        from data_prep.tokenize import IndexedTextWriter

        by_stem: dict[str, list[Document]] = {}
        for doc in batch:
            by_stem.setdefault(doc.metadata.get(STEM, "data"), []).append(doc)
        for stem, docs in by_stem.items():
            writer = writers.get(stem)
            if writer is None:
                writer = writers[stem] = IndexedTextWriter(Path(self.folder) / stem, self.tokenizer, append_eod=self.append_eod)
            before = writer.tokens
            skipped = writer.add_texts([d.text for d in docs])
            self.count("documents", len(docs) - skipped)
            self.count("tokens", writer.tokens - before)
        yield from batch
