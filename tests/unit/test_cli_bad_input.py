"""Bad input through the CLI: one clear error naming file, line and field; exit 2; no output that looks complete."""
import json
import subprocess
import sys
from pathlib import Path

from data_prep.eval_suite import default_suite_path


def alignpt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "megatron_alignpt.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_malformed_jsonl_line(tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"id": "a", "text": "fine"}\n{"id": "b", text}\n')
    res = alignpt("prep", "filter", "--input", "corpus.jsonl", "--output", "out", cwd=tmp_path)
    assert res.returncode == 2
    assert "corpus.jsonl:2" in res.stderr and "malformed JSON" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_text_field(tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"id": "a", "text": "fine"}\n{"id": "b", "body": "no text"}\n')
    res = alignpt("prep", "filter", "--input", "corpus.jsonl", "--output", "out", cwd=tmp_path)
    assert res.returncode == 2
    assert "corpus.jsonl:2" in res.stderr and "'text'" in res.stderr
    assert not (tmp_path / "out").exists()


def test_eval_row_missing_choices(tmp_path, tiny_lm_data):
    rows = [json.loads(line) for line in default_suite_path().read_text().splitlines()[:3]]
    del rows[2]["choices"]
    (tmp_path / "suite.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = alignpt("eval", "misalignment", "--checkpoint", str(tmp_path / "no_ckpt"), "--data", "suite.jsonl", "--out", "ev", cwd=tmp_path)
    assert res.returncode == 2
    assert "suite.jsonl:3" in res.stderr and "'choices'" in res.stderr
    assert not (tmp_path / "ev" / "summary.json").exists()


def test_invalid_config_override_says_what_to_change(tmp_path):
    res = alignpt("study", "run", "--recipe", "tiny_cpu", "--dry-run", "--set", "model.num_attention_heads=5", cwd=tmp_path)
    assert res.returncode == 2
    assert "model.hidden_size" in res.stderr and "num_attention_heads=5" in res.stderr


def _cut_zst(path: Path, documents: int = 2000) -> None:
    """A .jsonl.zst written in three frames and cut inside the third (the first two decode cleanly)."""
    import zstandard

    data = "".join(json.dumps({"id": str(i), "text": f"a document about gardens, number {i}"}) + "\n" for i in range(documents)).encode()
    third = len(data) // 3 + 1
    frames = [zstandard.ZstdCompressor().compress(data[i:i + third]) for i in range(0, len(data), third)]
    path.write_bytes(frames[0] + frames[1] + frames[2][: len(frames[2]) // 2])


def test_truncated_zst_corpus_is_refused_with_no_output(tmp_path, tiny_lm_data):
    """Before: read as a complete 2,000-document file, exit 0, complete-looking kept/, removed/, stats.json."""
    _cut_zst(tmp_path / "corpus.jsonl.zst")
    res = alignpt("prep", "filter", "--input", "corpus.jsonl.zst", "--output", "out", cwd=tmp_path)
    assert res.returncode == 2 and "corpus.jsonl.zst: truncated zstd data" in res.stderr
    assert not (tmp_path / "out").exists()
    res = alignpt("prep", "tokenize", "--input", "corpus.jsonl.zst", "--tokenizer", str(tiny_lm_data["tokenizer"]),
                  "--output-prefix", "idx/corpus", cwd=tmp_path)
    assert res.returncode == 2 and "truncated zstd data" in res.stderr
    assert not (tmp_path / "idx").exists() or not any((tmp_path / "idx").iterdir())


def test_empty_corpus_is_refused(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("\n")
    res = alignpt("prep", "filter", "--input", "corpus.jsonl", "--output", "out", cwd=tmp_path)
    assert res.returncode == 2 and "corpus.jsonl: no records" in res.stderr
    assert not (tmp_path / "out").exists()


def test_non_utf8_input_names_the_line(tmp_path):
    (tmp_path / "corpus.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "fine too"}\n{"text": "caf\xe9"}\n')
    res = alignpt("prep", "filter", "--input", "corpus.jsonl", "--output", "out", cwd=tmp_path)
    assert res.returncode == 2 and "corpus.jsonl:3: not UTF-8" in res.stderr
