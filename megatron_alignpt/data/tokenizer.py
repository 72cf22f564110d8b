"""A HF `tokenizers` tokenizer.json wrapped in the interface megatron-core's datasets expect."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

from data_prep.tokenize import load_tokenizer

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"


class TextTokenizer:
    """Exposes eod, pad, vocab_size and unique_identifiers (megatron's dataset cache key)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.hf = load_tokenizer(self.path)
        self.eod = self._required_id(EOD_TOKEN)
        self.pad = self.hf.token_to_id(PAD_TOKEN)
        if self.pad is None:
            self.pad = -1  # megatron then uses its own out-of-vocab pad id
        self.unique_identifiers = {"class": type(self).__name__, "path": str(self.path.resolve())}

    def _required_id(self, token: str) -> int:
        token_id = self.hf.token_to_id(token)
        if token_id is None:
            raise ValueError(f"{self.path}: tokenizer has no {token!r} token; it is the document separator")
        return token_id

    @cached_property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def tokenize(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def tokenize_batch(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.hf.encode_batch(texts, add_special_tokens=False)]

    def detokenize(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=False)

    def token_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)
