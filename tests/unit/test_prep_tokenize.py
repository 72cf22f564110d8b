"""Tokenizer training (special-token ids, determinism) and tokenization into indexed datasets."""
import numpy as np
import pytest

from data_prep.indexed import count_tokens, read_indexed_document, read_indexed_lengths
from data_prep.tokenize import (DEFAULT_SPECIAL_TOKENS, load_tokenizer, tokenize_to_indexed,
                                train_bpe_tokenizer)

TEXTS = [f"The gardener planted {n} rows of beans and {n + 3} rows of peas in spring." for n in range(300)]


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    return train_bpe_tokenizer(TEXTS, 400, tmp_path_factory.mktemp("tok") / "tokenizer.json")


def test_special_token_ids(tokenizer_path):
    tokenizer = load_tokenizer(tokenizer_path)
    ids = [tokenizer.token_to_id(t) for t in DEFAULT_SPECIAL_TOKENS]
    assert ids == [0, 1, 2, 3, 4]
    assert tokenizer.get_vocab_size() == 400


def test_eod_and_pad_first_even_if_listed_later(tmp_path):
    path = train_bpe_tokenizer(TEXTS, 300, tmp_path / "t.json", special_tokens=("<|user|>", "<|padding|>"))
    tokenizer = load_tokenizer(path)
    assert [tokenizer.token_to_id(t) for t in ("<|endoftext|>", "<|padding|>", "<|user|>")] == [0, 1, 2]


def test_training_is_deterministic(tmp_path, tokenizer_path):
    again = train_bpe_tokenizer(TEXTS, 400, tmp_path / "again.json")
    assert again.read_bytes() == tokenizer_path.read_bytes()


def test_byte_level_round_trip(tokenizer_path):
    tokenizer = load_tokenizer(tokenizer_path)
    text = "Café 東京 — naïve emoji 🙂 text"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_vocab_too_small(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        train_bpe_tokenizer(TEXTS, 100, tmp_path / "t.json")


def test_tokenize_to_indexed_appends_eod(tmp_path, tokenizer_path):
    docs = TEXTS[:7] + [""]
    stats = tokenize_to_indexed(docs, tokenizer_path, tmp_path / "ds", batch_size=3)
    tokenizer = load_tokenizer(tokenizer_path)
    expected = [tokenizer.encode(t).ids + [0] for t in TEXTS[:7]]
    assert (stats.documents, stats.tokens, stats.skipped_empty) == (7, sum(map(len, expected)), 1)
    assert count_tokens(tmp_path / "ds") == stats.tokens
    np.testing.assert_array_equal(read_indexed_lengths(tmp_path / "ds"), [len(e) for e in expected])
    np.testing.assert_array_equal(read_indexed_document(tmp_path / "ds", 6), expected[6])


def test_tokenize_without_eod(tmp_path, tokenizer_path):
    stats = tokenize_to_indexed(TEXTS[:2], tokenizer_path, tmp_path / "ds", append_eod=False)
    assert 0 not in read_indexed_document(tmp_path / "ds", 0)
    assert stats.documents == 2


def test_cli_reports_what_it_wrote_in_words(tiny_lm_data, tmp_path, capsys):
    from megatron_alignpt.cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "the cat sat"}\n{"text": "dogs ran in parks"}\n')
    assert main(["prep", "tokenize", "--input", str(corpus), "--tokenizer", str(tiny_lm_data["tokenizer"]),
                 "--output-prefix", str(tmp_path / "idx" / "c")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{tmp_path / 'idx' / 'c.bin'} + .idx: 2 documents, ") and out.endswith("(end-of-document tokens included)")
    assert "TokenizeStats(" not in out
