"""Train a byte-level BPE tokenizer and tokenize documents into Megatron ``.bin/.idx`` datasets.

The tokenizer follows GPT-NeoX's design (byte-level pre-tokenizer and decoder, no normalizer, so any
UTF-8 text round-trips) with ``<|endoftext|>`` = id 0 and ``<|padding|>`` = id 1, plus the chat
markers used by post-training. Training is deterministic for the same texts in the same order.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm import tqdm

from data_prep.atomic import atomic_path
from data_prep.errors import DataFormatError
from data_prep.indexed import IndexedDatasetWriter

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
DEFAULT_SPECIAL_TOKENS = (EOD_TOKEN, PAD_TOKEN, "<|system|>", "<|user|>", "<|assistant|>")
_BYTE_ALPHABET = 256


def _ordered_specials(special_tokens: Iterable[str]) -> list[str]:
    """EOD and PAD first (ids 0 and 1, as in GPT-NeoX), then the others in the given order."""
    rest = [t for t in special_tokens if t not in (EOD_TOKEN, PAD_TOKEN)]
    return [EOD_TOKEN, PAD_TOKEN] + list(dict.fromkeys(rest))


def _empty_byte_level_bpe() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, out_path: Path,
                        special_tokens: Iterable[str] = DEFAULT_SPECIAL_TOKENS) -> Path:
    """Train on ``texts`` and save ``tokenizer.json``-format output to ``out_path`` (atomically)."""
    specials = _ordered_specials(special_tokens)
    minimum = _BYTE_ALPHABET + len(specials)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} is too small: byte-level BPE needs at least {minimum} "
                         f"(256 bytes + {len(specials)} special tokens)")
    tokenizer = _empty_byte_level_bpe()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        tokenizer.save(str(tmp))
    return out_path


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizer.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for non-JSON or unknown content
        raise DataFormatError(path, None, None, f"not a readable tokenizer.json ({err})") from None


@dataclass
class TokenizeStats:
    """Documents written, tokens written (EOD included) and empty input texts skipped."""

    documents: int
    tokens: int
    skipped_empty: int = 0


def _batches(docs: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for doc in docs:
        batch.append(doc if isinstance(doc, str) else doc.text)  # also accepts readers.Document
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _eod_id(tokenizer: Tokenizer) -> int:
    eod = tokenizer.token_to_id(EOD_TOKEN)
    if eod is None:
        raise ValueError(f"tokenizer has no {EOD_TOKEN} token; train one with train_bpe_tokenizer or pass append_eod=False")
    return eod


class IndexedTextWriter:
    """Tokenize texts in batches straight into a ``<prefix>.bin/.idx`` dataset (one EOD id after each).

    Each batch is encoded with ``encode_batch`` and written as one array, so the per-document cost
    beyond tokenizing is a few list operations. Empty texts are skipped and counted.
    """

    def __init__(self, prefix: str | Path, tokenizer: str | Path | Tokenizer, append_eod: bool = True) -> None:
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)
        self.eod = _eod_id(self.tokenizer) if append_eod else None
        self.writer = IndexedDatasetWriter(prefix, self.tokenizer.get_vocab_size())
        self.skipped_empty = 0

    @property
    def tokens(self) -> int:
        return self.writer.tokens

    @property
    def documents(self) -> int:
        return self.writer.documents

    def add_texts(self, texts: list[str]) -> int:
        """Tokenize and append ``texts``; returns how many were skipped as empty."""
        nonempty = [t for t in texts if t]
        skipped = len(texts) - len(nonempty)
        self.skipped_empty += skipped
        if not nonempty:
            return skipped
        encodings = self.tokenizer.encode_batch(nonempty, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        if self.eod is not None:
            for row in ids:
                row.append(self.eod)
        lengths = [len(row) for row in ids]
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=sum(lengths))
        if 0 in lengths:  # only without EOD: a text of zero tokens cannot be a Megatron document
            keep = [i for i, n in enumerate(lengths) if n]
            self.skipped_empty += len(lengths) - len(keep)
            skipped += len(lengths) - len(keep)
            lengths = [lengths[i] for i in keep]
        self.writer.add_documents(flat, lengths)
        return skipped

    def finalize(self) -> Path:
        return self.writer.finalize()

    def abort(self) -> None:
        self.writer.abort()

    def __enter__(self) -> "IndexedTextWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()


def tokenize_to_indexed(docs: Iterable[str], tokenizer_path: str | Path, prefix: str | Path,
                        append_eod: bool = True, batch_size: int = 1000, progress: bool = False) -> TokenizeStats:
    """Tokenize each document (``encode_batch``, one EOD id after each) into ``<prefix>.bin/.idx``.

    Empty texts are skipped (and counted): Megatron cannot sample from zero-length documents.
    """
    with IndexedTextWriter(prefix, tokenizer_path, append_eod=append_eod) as writer:
        for batch in tqdm(_batches(docs, batch_size), desc=f"tokenize {Path(prefix).name}", unit="batch",
                          disable=not progress):
            writer.add_texts(batch)
        stats = TokenizeStats(documents=writer.documents, tokens=writer.tokens, skipped_empty=writer.skipped_empty)
    return stats
