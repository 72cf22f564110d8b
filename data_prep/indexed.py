"""A small writer and reader for Megatron's tokenized ``.bin`` / ``.idx`` datasets (no torch needed).

Format (the same as GPT-NeoX's and Megatron-Core's ``IndexedDataset``), all little-endian:

``.bin``  the token ids of all documents, concatenated, in the dataset dtype.
``.idx``  magic ``MMIDIDX\\x00\\x00`` (9 bytes) | uint64 version = 1 | uint8 dtype code |
          uint64 sequence_count | uint64 document_count (= documents + 1) |
          int32[sequence_count] lengths | int64[sequence_count] byte offsets into ``.bin`` |
          int64[document_count] document indices ``0, 1, ..., sequence_count``.

Every document is one sequence. Vocabularies under 65,500 ids are stored as uint16 (code 8), larger
ones as int32 (code 4), like Megatron's ``optimal_dtype``. Both files are written under temporary names
and renamed at ``finalize()`` (``.idx`` last), so a prefix never exists half-written.
"""
from __future__ import annotations

import os
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from data_prep.atomic import remove_abandoned_temps, temp_sibling

INDEX_MAGIC = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
UINT16_VOCAB_LIMIT = 65500
DTYPE_CODES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}
_CODE_OF_DTYPE = {np.dtype(v): k for k, v in DTYPE_CODES.items()}
_HEADER = struct.Struct("<9sQBQQ")


def bin_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.bin")


def idx_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.idx")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits comfortably (vocab < 65,500), else int32."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(np.uint16 if vocab_size < UINT16_VOCAB_LIMIT else np.int32)


class IndexedDatasetWriter:
    """Append documents (token id sequences) and ``finalize()`` into ``<prefix>.bin/.idx``.

    Use as a context manager: the dataset is finalized when the block ends normally and the temporary
    files are removed if it raises.
    """

    def __init__(self, prefix: str | Path, vocab_size: int) -> None:
        self.prefix = Path(prefix)
        self.vocab_size = vocab_size
        self.dtype = dtype_for_vocab(vocab_size)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        for final in (bin_path(prefix), idx_path(prefix)):  # what a killed earlier run left (large .bin parts)
            remove_abandoned_temps(final)
        self._tmp_bin = temp_sibling(bin_path(prefix))
        self._tmp_idx = temp_sibling(idx_path(prefix))
        self._bin = open(self._tmp_bin, "wb")
        self._lengths = array("q")
        self.tokens = 0
        self.finalized = False

    @property
    def documents(self) -> int:
        return len(self._lengths)

    def add_document(self, token_ids: Iterable[int] | np.ndarray) -> None:
        """Append one document. Empty documents are refused: Megatron's sample index loops on them."""
        ids = np.asarray(token_ids if isinstance(token_ids, np.ndarray) else list(token_ids))
        self._check_ids(ids)
        self._bin.write(ids.astype(self.dtype, copy=False).tobytes(order="C"))
        self._lengths.append(int(ids.size))
        self.tokens += int(ids.size)

    def add_documents(self, flat_ids: np.ndarray, lengths: np.ndarray | list[int]) -> None:
        """Append several documents at once: ``flat_ids`` holds them back to back, ``lengths`` their sizes.

        One range check and one write for the whole batch (what a tokenizer's batch output needs).
        """
        flat_ids = np.asarray(flat_ids)
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.ndim != 1 or (lengths.size and int(lengths.min()) <= 0) or int(lengths.sum()) != flat_ids.size:
            raise ValueError(f"{self.prefix}: document {self.documents}: lengths must be positive and sum to the "
                             f"{flat_ids.size} ids given (empty documents cannot be sampled by Megatron)")
        if flat_ids.size == 0:
            return
        self._check_ids(flat_ids)
        self._bin.write(flat_ids.astype(self.dtype, copy=False).tobytes(order="C"))
        self._lengths.extend(lengths.tolist())
        self.tokens += int(flat_ids.size)

    def _check_ids(self, ids: np.ndarray) -> None:
        where = f"{self.prefix}: document {self.documents}"
        if self.finalized:
            raise RuntimeError(f"{self.prefix}: writer already finalized")
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"{where}: expected a non-empty 1-D sequence of token ids, got shape {ids.shape} "
                             "(drop empty documents before writing: Megatron cannot sample from them)")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{where}: token ids must be integers, got dtype {ids.dtype}")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(f"{where}: token id out of range [0, {self.vocab_size}): min {low}, max {high}")

    def finalize(self) -> Path:
        """Write the index and move both files onto ``<prefix>.bin`` / ``<prefix>.idx``; returns the prefix."""
        if self.documents == 0:
            self.abort()
            raise ValueError(f"{self.prefix}: no documents were added; an empty dataset cannot be trained on")
        self._bin.close()
        _write_index(self._tmp_idx, self.dtype, np.frombuffer(self._lengths, dtype=np.int64))
        os.replace(self._tmp_bin, bin_path(self.prefix))
        os.replace(self._tmp_idx, idx_path(self.prefix))  # last: the .idx marks a complete dataset
        self.finalized = True
        return self.prefix

    def abort(self) -> None:
        """Close and delete the temporary files (nothing appears at the prefix)."""
        self._bin.close()
        for tmp in (self._tmp_bin, self._tmp_idx):
            tmp.unlink(missing_ok=True)

    def __enter__(self) -> "IndexedDatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()


def _write_index(path: Path, dtype: np.dtype, lengths: np.ndarray) -> None:
    count = int(lengths.size)
    pointers = np.zeros(count, dtype=np.int64)
    np.cumsum(lengths[:-1] * dtype.itemsize, out=pointers[1:])
    with open(path, "wb") as handle:
        handle.write(_HEADER.pack(INDEX_MAGIC, INDEX_VERSION, _CODE_OF_DTYPE[dtype], count, count + 1))
        handle.write(lengths.astype("<i4").tobytes())
        handle.write(pointers.astype("<i8").tobytes())
        handle.write(np.arange(count + 1, dtype="<i8").tobytes())


@dataclass
class IndexInfo:
    """The parsed ``.idx`` file."""

    dtype: np.dtype
    lengths: np.ndarray
    pointers: np.ndarray
    document_indices: np.ndarray


def read_index(prefix: str | Path) -> IndexInfo:
    """Parse ``<prefix>.idx`` with numpy only (checks magic, version and dtype code)."""
    path = idx_path(prefix)
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise ValueError(f"{path}: too short for an index header ({len(data)} bytes)")
    magic, version, code, sequences, documents = _HEADER.unpack_from(data)
    if magic != INDEX_MAGIC or version != INDEX_VERSION or code not in DTYPE_CODES:
        raise ValueError(f"{path}: not a Megatron index (magic {magic!r}, version {version}, dtype code {code})")
    offset = _HEADER.size
    lengths = np.frombuffer(data, dtype="<i4", count=sequences, offset=offset)
    pointers = np.frombuffer(data, dtype="<i8", count=sequences, offset=offset + 4 * sequences)
    doc_idx = np.frombuffer(data, dtype="<i8", count=documents, offset=offset + 12 * sequences)
    return IndexInfo(np.dtype(DTYPE_CODES[code]), lengths, pointers, doc_idx)


def read_indexed_lengths(prefix: str | Path) -> np.ndarray:
    """Tokens per sequence (int32), read from ``<prefix>.idx``."""
    return read_index(prefix).lengths


def count_tokens(prefix: str | Path) -> int:
    """Total number of tokens in the dataset."""
    return int(read_indexed_lengths(prefix).sum(dtype=np.int64))


def read_indexed_document(prefix: str | Path, index: int) -> np.ndarray:
    """Token ids of sequence ``index`` (memory-mapped read of ``<prefix>.bin``)."""
    info = read_index(prefix)
    tokens = np.memmap(bin_path(prefix), dtype=info.dtype, mode="r")
    start = int(info.pointers[index]) // info.dtype.itemsize
    return np.array(tokens[start:start + int(info.lengths[index])])


def merge_indexed(prefixes: Iterable[str | Path], out_prefix: str | Path, chunk_bytes: int = 1 << 24) -> Path:
    """Concatenate datasets of one dtype into ``<out_prefix>.bin/.idx`` (documents in the given order).

    Used to join the per-shard datasets of a distributed tokenize step into one training dataset.
    """
    prefixes = [Path(p) for p in prefixes]
    if not prefixes:
        raise ValueError("merge_indexed needs at least one dataset prefix")
    infos = [read_index(p) for p in prefixes]
    dtypes = {info.dtype for info in infos}
    if len(dtypes) != 1:
        raise ValueError(f"cannot merge datasets of different dtypes {sorted(str(d) for d in dtypes)}: {prefixes}")
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp_bin, tmp_idx = temp_sibling(bin_path(out_prefix)), temp_sibling(idx_path(out_prefix))
    try:
        with open(tmp_bin, "wb") as out:
            for prefix in prefixes:
                with open(bin_path(prefix), "rb") as handle:
                    for chunk in iter(lambda: handle.read(chunk_bytes), b""):
                        out.write(chunk)
        lengths = np.concatenate([info.lengths.astype(np.int64) for info in infos])
        _write_index(tmp_idx, infos[0].dtype, lengths)
        os.replace(tmp_bin, bin_path(out_prefix))
        os.replace(tmp_idx, idx_path(out_prefix))
    except BaseException:
        tmp_bin.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
        raise
    return out_prefix
