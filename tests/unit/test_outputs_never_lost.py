"""Outputs never replace an input or an existing path unless asked (--overwrite), and temporaries of
killed runs are found and removed."""
import json
import os

import pytest

from data_prep.atomic import OutputExistsError, atomic_dir, check_output, remove_stale_temps
from megatron_alignpt.cli import main

CORPUS = '{"id": "a", "text": "a plain document about gardens"}\n{"id": "b", "text": "another one about bread"}\n'


def run(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text(CORPUS)
    return tmp_path / "x.jsonl"


def test_filter_onto_its_own_input_is_refused_and_the_input_survives(corpus, capsys):
    """Before: exit 0, and x.jsonl replaced by a directory."""
    code, err = run(capsys, "prep", "filter", "--input", "x.jsonl", "--output", "x.jsonl")
    assert code == 2 and "is the input" in err and len(err.strip().splitlines()) == 1
    assert corpus.read_text() == CORPUS
    code, err = run(capsys, "prep", "filter", "--input", "x.jsonl", "--output", "x.jsonl", "--overwrite")
    assert code == 2 and corpus.read_text() == CORPUS  # --overwrite never means "replace the input"


def test_output_over_an_existing_file_needs_overwrite(corpus, capsys):
    other = corpus.parent / "notes.txt"
    other.write_text("keep me")
    code, err = run(capsys, "prep", "filter", "--input", "x.jsonl", "--output", "notes.txt")
    assert code == 2 and "--overwrite" in err and "overwrite=True" not in err
    assert other.read_text() == "keep me"
    assert run(capsys, "prep", "filter", "--input", "x.jsonl", "--output", "notes.txt", "--overwrite")[0] == 0
    assert json.loads((other / "stats.json").read_text())["documents_in"] == 2


def test_output_inside_an_input_directory_is_refused(corpus, capsys):
    code, err = run(capsys, "prep", "filter", "--input", ".", "--output", "filtered")
    assert code == 2 and "is inside the input" in err and not (corpus.parent / "filtered").exists()


def test_rerun_into_a_finished_output_needs_overwrite(corpus, capsys):
    assert run(capsys, "prep", "filter", "--input", "x.jsonl", "--output", "out")[0] == 0
    (corpus.parent / "out" / "mine.txt").write_text("x")
    code, err = run(capsys, "prep", "filter", "--input", "x.jsonl", "--output", "out")
    assert code == 2 and "already exists" in err and (corpus.parent / "out" / "mine.txt").exists()
    assert run(capsys, "prep", "filter", "--input", "x.jsonl", "--output", "out", "--overwrite")[0] == 0
    assert not (corpus.parent / "out" / "mine.txt").exists()


def test_file_outputs_are_claimed_before_any_work(corpus, capsys):
    """A tokenizer, a document file, a report: an existing one is refused unless --overwrite."""
    tokenizer = corpus.parent / "tok.json"
    tokenizer.write_text("{}")
    code, err = run(capsys, "prep", "tokenizer", "--input", "x.jsonl", "--vocab-size", "300", "--output", "tok.json")
    assert code == 2 and "tok.json already exists" in err and tokenizer.read_text() == "{}"


def test_eval_output_overlapping_the_questions_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite").mkdir()
    code, err = run(capsys, "eval", "misalignment", "--checkpoint", "none", "--data", "suite", "--out", "suite/ev")
    assert code == 2 and "is inside the input" in err


def test_atomic_dir_checks_inputs_and_existing_paths(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(CORPUS)
    with pytest.raises(OutputExistsError):
        with atomic_dir(source, inputs=[source], overwrite=True):
            pass
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty") == tmp_path / "empty"  # an empty directory is no loss
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output(source)
    assert source.read_text() == CORPUS


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    keep = ["data.jsonl", ".llm_cache", ".hidden.txt", "x.tmp-12"]
    stale = [".data.jsonl.tmp-4242", ".out.old-17", ".iter_0000010.tmp", "sub/.tokens.bin.tmp-99"]
    for name in keep + stale:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.mkdir() if name.endswith((".llm_cache", ".iter_0000010.tmp")) else path.write_text("x"))
    assert sorted(p.name for p in remove_stale_temps(tmp_path)) == sorted(os.path.basename(s) for s in stale[:3])
    assert (tmp_path / "sub" / ".tokens.bin.tmp-99").exists()  # not recursive unless asked
    remove_stale_temps(tmp_path, recursive=True)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted(keep + ["sub"])


def test_rerun_removes_what_a_killed_writer_of_the_same_output_left(tmp_path):
    """A killed `prep tokenize` left `.x.bin.tmp-PID` (tens of MB) that nothing removed."""
    import subprocess
    import sys

    from data_prep.indexed import IndexedDatasetWriter

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed = [tmp_path / f".x.bin.tmp-{gone.pid}", tmp_path / f".x.idx.tmp-{gone.pid}"]
        running = tmp_path / f".x.bin.tmp-{live.pid}"
        other = tmp_path / f".y.bin.tmp-{gone.pid}"
        for path in killed + [running, other]:
            path.write_bytes(b"partial")
        with IndexedDatasetWriter(tmp_path / "x", vocab_size=300) as writer:
            writer.add_document([1, 2, 3])
        assert not any(p.exists() for p in killed) and running.exists() and other.exists()
        with atomic_dir(tmp_path / "y.bin"):  # an output directory's leftovers likewise
            pass
        assert not other.exists()
    finally:
        live.kill()
        live.wait()
