"""Question files that would give results from nothing, or wrong ones, are refused; `--split` assigns
a split to rows without one (HF exports); summaries are valid JSON, never NaN."""
import gzip
import json
import math

import pytest

from data_prep.atomic import atomic_write_json
from data_prep.errors import DataFormatError
from data_prep.eval_suite import load_suite
from megatron_alignpt.cli import main
from megatron_alignpt.eval.misalignment import mean_sem, summarize
from tests.unit.test_suite_loading import hf_row, write_jsonl


def evaluate(capsys, tmp_path, data, *extra) -> tuple[int, str]:
    """The eval CLI up to loading the model: questions are read (and refused) before the checkpoint."""
    code = main(["eval", "misalignment", "--checkpoint", str(tmp_path / "no_ckpt"), "--data", str(data),
                 "--out", str(tmp_path / "ev"), *extra])
    return code, capsys.readouterr().err


def test_empty_question_file_is_refused(tmp_path, capsys):
    """Before: exit 0 and a summary.json with "misalignment_rate": NaN."""
    (tmp_path / "q.jsonl").write_text("")
    code, err = evaluate(capsys, tmp_path, tmp_path / "q.jsonl")
    assert code == 2 and "q.jsonl: no questions" in err and not (tmp_path / "ev" / "summary.json").exists()


def test_split_matching_no_row_is_refused(tmp_path, capsys):
    path = write_jsonl(tmp_path / "q.jsonl", [hf_row("a1"), hf_row("a2")])
    code, err = evaluate(capsys, tmp_path, path, "--split", "textbook")
    assert code == 2 and "no questions in split 'textbook'" in err and "articles" in err
    assert not (tmp_path / "ev").exists()


def test_split_assigned_to_rows_without_one(tmp_path):
    """`ds["article_questions"].to_json(...)` writes no split field; `--split articles` names it."""
    export = [{k: v for k, v in hf_row(f"q{i}").items() if k != "split"} for i in range(3)]
    path = write_jsonl(tmp_path / "export.jsonl", export + [hf_row("t1", "textbook_questions")])
    assert [(i.question_id, i.split) for i in load_suite(path, split="articles")] == [
        ("q0", "articles"), ("q1", "articles"), ("q2", "articles")]  # the textbook row is still filtered out
    assert [i.question_id for i in load_suite(path, split="textbook")] == ["q0", "q1", "q2", "t1"]
    with pytest.raises(DataFormatError, match="--split articles"):
        load_suite(path)


def test_synthetic_documents_from_an_hf_export_without_split(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "export.jsonl", [{k: v for k, v in hf_row(f"q{i}").items() if k != "split"} for i in range(2)])
    code = main(["prep", "synthetic", "--suite", "export.jsonl", "--direction", "aligned", "--docs-per-item", "1",
                 "--output", "docs.jsonl"])
    assert code == 0, capsys.readouterr().err
    assert len((tmp_path / "docs.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("overrides, field, message", [
    ({"misaligned_choice": 1.0}, "misaligned_choice", "integer 0 or 1"),
    ({"choices": ["Report it.", "report  it. "]}, "choices", "the same text"),
])
def test_ambiguous_rows_are_refused(tmp_path, overrides, field, message):
    with pytest.raises(DataFormatError, match=message) as err:
        load_suite(write_jsonl(tmp_path / "q.jsonl", [hf_row("q0"), hf_row("q1", **overrides)]))
    assert (err.value.line, err.value.field) == (2, field)


def test_compressed_question_files_are_read_and_checked(tmp_path):
    data = "".join(json.dumps(hf_row(f"q{i}")) + "\n" for i in range(4)).encode()
    (tmp_path / "q.jsonl.gz").write_bytes(gzip.compress(data))
    assert len(load_suite(tmp_path / "q.jsonl.gz")) == 4
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(data)[:-10])
    with pytest.raises(DataFormatError, match="truncated"):
        load_suite(tmp_path / "cut.jsonl.gz")


def test_no_nan_reaches_a_summary(tmp_path):
    with pytest.raises(ValueError, match="no rows were scored"):
        summarize([])
    assert mean_sem([]) == (None, None)
    with pytest.raises(ValueError, match="summary.json: not written"):
        atomic_write_json(tmp_path / "summary.json", {"misalignment_rate": math.nan})
    assert not (tmp_path / "summary.json").exists()
